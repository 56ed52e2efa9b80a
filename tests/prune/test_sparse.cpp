// Sparse deploy-time layers: equal to the masked dense layers (fp32 within
// rounding) over conv geometries and a Linear; finalizing a pruned model;
// the sparse file (much smaller at 90%) saves and loads; reports count the
// sparsity both ways.
#include <catch2/catch.hpp>
#include <compressor/models.hpp>
#include <compressor/nn.hpp>
#include <compressor/prune/finalize.hpp>
#include <compressor/prune/report.hpp>
#include <compressor/prune/unstructured.hpp>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>

#include "prune/prune_test_util.hpp"
#include "surgery/surgery_test_util.hpp"

using namespace compressor;
using compressor::testing::random_tensor;
using compressor::testing::randomize_batchnorms;
using compressor::testing::rel_to_max;
using compressor::testing::temp_path;

namespace {

/// Prunes the single layer of `holder` (child "0") to sparsity s and checks
/// its sparse version against it on x.
void check_sparse_layer(nn::Sequential& holder, double s, const Tensor<float>& x) {
  prune::prune_unstructured(holder, {.sparsity = s});
  auto& dense = *nn::as<nn::WeightedLayer>(holder.child("0"));
  auto sparse = prune::make_sparse(dense);
  const Tensor<float> want(holder.child("0").forward(x));
  const Tensor<float> got(sparse->forward(x));
  CHECK(rel_to_max(got, want) < 1e-5);
  const auto copy = sparse->clone();  // a copy repacks and computes the same
  CHECK(compressor::testing::bit_equal(copy->forward(x), got));
  CHECK(nn::as<prune::SparseLayer>(*sparse)->nnz() ==
        dense.weight().numel() - std::llround(s * double(dense.weight().numel())));
}

}  // namespace

TEST_CASE("sparse layers equal the masked dense layers", "[prune][sparse]") {
  nn::init::manual_seed(1);
  Rng rng(1);
  struct Case {
    std::int64_t in, out, k, stride, pad, hw;
    bool bias;
  };
  for (const Case c : {Case{16, 32, 3, 1, 1, 9, false}, Case{5, 7, 3, 2, 1, 11, true},
                       Case{24, 40, 1, 1, 0, 6, false}, Case{8, 16, 1, 2, 0, 7, false},
                       Case{3, 10, 7, 2, 3, 17, false}}) {
    for (const double s : {0.0, 0.5, 0.9, 0.99}) {
      INFO("conv " << c.in << "->" << c.out << " k" << c.k << " s" << c.stride << " sparsity "
                   << s);
      nn::Sequential holder;
      holder.emplace<nn::Conv2d>(c.in, c.out, c.k, c.stride, c.pad, c.bias);
      holder.eval();
      check_sparse_layer(holder, s, random_tensor(Shape{2, c.hw, c.hw + 1, c.in}, rng));
    }
  }
  for (const double s : {0.0, 0.8, 0.95}) {
    nn::Sequential holder;
    holder.emplace<nn::Linear>(37, 11);
    check_sparse_layer(holder, s, random_tensor(Shape{5, 37}, rng));
  }
  // Deploy-time only: no backward.
  nn::Linear lin(4, 3);
  auto sp = prune::make_sparse(lin);
  (void)sp->forward(random_tensor(Shape{2, 4}, rng));
  CHECK_THROWS_WITH(sp->backward(random_tensor(Shape{2, 3}, rng)),
                    Catch::Contains("SparseLinear is a deploy-time layer without backward"));
}

TEST_CASE("a 90%-sparse ResNet18 finalizes, saves small and loads back", "[prune][sparse][io]") {
  nn::init::manual_seed(2);
  Rng rng(2);
  models::ResNet18 net({.num_classes = 10, .width = 0.25});
  randomize_batchnorms(net, rng);
  prune::UnstructuredOptions o{.sparsity = 0.9};
  o.layers.exclude = {"conv1", "fc"};
  const auto masks = prune::prune_unstructured(net, o);
  net.eval();
  const auto x = random_tensor(Shape{1, 32, 32, 3}, rng);
  const Tensor<float> masked_out(net.forward(x));
  const auto dense_path = temp_path("resnet_masked.safetensors");
  const auto dense_bytes = prune::saved_size(net, dense_path);

  // Sparsity both ways, measured on the model.
  const Shape in{1, 32, 32, 3};
  const auto before = prune::report(net, in);
  std::vector<std::string> pruned_layers;
  for (const auto& m : masks.layers()) pruned_layers.push_back(m.layer);
  CHECK(prune::sparsity_over(before, pruned_layers) == Approx(masks.sparsity()).epsilon(1e-12));
  CHECK(before.model_sparsity() < masks.sparsity());
  CHECK(before.model_sparsity() > 0.8);

  auto deploy = net.clone();
  const auto ds =
      prune::finalize_sparse(*deploy, masks, in, {.policy = prune::SparsePolicy::always});
  REQUIRE(ds.size() == masks.layers().size());
  CHECK(prune::sparse_layer_names(*deploy).size() == ds.size());
  CHECK(deploy->find("conv1")->type_name() == "Conv2d");
  CHECK(deploy->find("layer1.0.conv1")->type_name() == "SparseConv2d");
  const Tensor<float> sparse_out(deploy->forward(x));
  CHECK(rel_to_max(sparse_out, masked_out) < 1e-5);
  // The sparse layers still count as layers with output channels: the
  // plan lists them as before, and layer4.1.conv2 gives the feature width.
  auto& sparse_net = dynamic_cast<models::ResNet18&>(*deploy);
  CHECK(deploy->find("layer4.1.conv2")->type_name() == "SparseConv2d");
  CHECK(sparse_net.num_features() == net.num_features());
  CHECK(sparse_net.channel_plan().to_json() == net.channel_plan().to_json());

  // The report sees the same parameters, nonzeros and MACs.
  const auto after = prune::report(*deploy, in);
  CHECK(after.parameters == before.parameters);
  CHECK(after.nonzero_parameters == before.nonzero_parameters);
  CHECK(after.macs == before.macs);
  CHECK(after.nonzero_macs == before.nonzero_macs);

  const auto path = temp_path("resnet_sparse.safetensors");
  prune::save_sparse_model(*deploy, path);
  const auto sparse_bytes = static_cast<std::int64_t>(std::filesystem::file_size(path));
  INFO("dense " << dense_bytes << " bytes, sparse " << sparse_bytes);
  CHECK(sparse_bytes < dense_bytes / 3);
  auto loaded = prune::load_sparse_model<models::ResNet18>(path);
  loaded->eval();
  CHECK(compressor::testing::bit_equal(loaded->forward(x), sparse_out));
  // A dense checkpoint has no sparse-layer list.
  CHECK_THROWS_WITH(prune::load_sparse_model<models::ResNet18>(dense_path),
                    Catch::Contains("compressor.sparse_layers") && Catch::Contains("missing"));
}

TEST_CASE("a deploy model with folded BatchNorms saves sparse and loads back",
          "[prune][sparse][io]") {
  nn::init::manual_seed(5);
  Rng rng(5);
  models::EfRegressor net({.width = 0.125, .pool = nn::TemporalPoolMode::mean_max_min});
  randomize_batchnorms(net, rng);
  prune::UnstructuredOptions o{.sparsity = 0.8};
  o.layers.exclude = {"backbone.conv1", "head"};
  const auto masks = prune::prune_unstructured(net, o);
  // The deploy model as quant::fp32_deploy_model() makes it.
  auto deploy = net.clone();
  deploy->eval();
  const auto folded = nn::fold_batchnorms(*deploy);
  REQUIRE(folded.size() == 20);  // 17 conv BNs + 3 downsample BNs
  const Shape in{1, 2, 24, 24, 3};
  prune::finalize_sparse(*deploy, masks, in, {.policy = prune::SparsePolicy::always});
  const auto x = random_tensor(in, rng);
  const Tensor<float> want(deploy->forward(x));
  const auto path = temp_path("ef_deploy_sparse.safetensors");
  prune::save_sparse_model(*deploy, path);
  auto loaded = prune::load_sparse_model<models::EfRegressor>(path);
  loaded->eval();
  CHECK(compressor::testing::bit_equal(loaded->forward(x), want));
  CHECK(loaded->find("backbone.bn1")->type_name() == "Identity");

  // A bad fold mark: named, with the file.
  const std::string sparse_key(prune::kSparseLayersKey), key(prune::kBatchnormsFoldedKey);
  auto dense = net.clone();
  dense->eval();
  nn::fold_batchnorms(*dense);
  for (const std::string bad : {"false", "1", ""}) {
    INFO("mark '" << bad << "'");
    const auto bad_path = temp_path("ef_bad_mark.safetensors");
    io::save_checkpoint(*dense, bad_path, {{sparse_key, "[]"}, {key, bad}});
    CHECK_THROWS_WITH(prune::load_sparse_model<models::EfRegressor>(bad_path),
                      Catch::Contains(bad_path.filename().string()) && Catch::Contains(key));
  }
  // Without the mark, the folded file does not fit the model's BatchNorms.
  const auto unmarked = temp_path("ef_unmarked.safetensors");
  io::save_checkpoint(*dense, unmarked, {{sparse_key, "[]"}});
  CHECK_THROWS_WITH(prune::load_sparse_model<models::EfRegressor>(unmarked),
                    Catch::Contains("bn1"));
}

TEST_CASE("finalize: measured and rule-based choices, bad input", "[prune][sparse]") {
  nn::init::manual_seed(3);
  Rng rng(3);
  models::CifarCnn cnn;
  prune::UnstructuredOptions o{.sparsity = 0.8, .scope = prune::Scope::per_layer};
  o.layers.include = {"features.4", "features.8"};
  const auto masks = prune::prune_unstructured(cnn, o);
  cnn.eval();
  const auto x = random_tensor(Shape{1, 16, 16, 3}, rng);
  const Tensor<float> want(cnn.forward(x));
  {
    auto m = cnn.clone();
    const auto ds = prune::finalize_sparse(*m, masks, Shape{1, 16, 16, 3}, {.repeats = 2});
    REQUIRE(ds.size() == 2);
    for (const auto& d : ds) {
      CHECK(d.dense_ms > 0);
      CHECK(d.sparse_ms > 0);
      CHECK(d.sparsity == Approx(0.8).margin(1e-3));
      CHECK(d.sparse == (d.dense_ms >= 1.1 * d.sparse_ms));  // the default min_speedup
    }
    CHECK(rel_to_max(m->forward(x), want) < 1e-5);  // whatever was chosen
  }
  for (const double min_speedup : {1e-9, 1e9}) {  // sparse always pays / never pays
    INFO("min_speedup " << min_speedup);
    auto m = cnn.clone();
    const auto ds = prune::finalize_sparse(*m, masks, Shape{1, 16, 16, 3},
                                           {.repeats = 1, .min_speedup = min_speedup});
    for (const auto& d : ds) CHECK(d.sparse == (min_speedup < 1));
    CHECK(prune::sparse_layer_names(*m).size() == (min_speedup < 1 ? 2u : 0u));
    CHECK(rel_to_max(m->forward(x), want) < 1e-5);
  }
  for (const double bad : {0.0, -1.0, std::numeric_limits<double>::quiet_NaN()}) {
    auto m = cnn.clone();
    CHECK_THROWS_WITH(prune::finalize_sparse(*m, masks, Shape{1, 16, 16, 3}, {.min_speedup = bad}),
                      Catch::Contains("FinalizeOptions::min_speedup must be a positive number"));
  }
  {
    auto m = cnn.clone();
    const auto ds =
        prune::finalize_sparse(*m, masks, Shape{1, 16, 16, 3},
                               {.policy = prune::SparsePolicy::min_sparsity, .min_sparsity = 0.9});
    for (const auto& d : ds) CHECK_FALSE(d.sparse);
    CHECK(prune::sparse_layer_names(*m).empty());
  }
  // Weights that do not hold the masks.
  prune::weight_parameter(cnn, "features.4").value->fill(1.f);
  CHECK_THROWS_WITH(prune::finalize_sparse(cnn, masks, Shape{1, 16, 16, 3}),
                    Catch::Contains("do not hold the masks"));
}
