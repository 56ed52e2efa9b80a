// Channel surgery: BN folding, channel selection against the zeroed original,
// channel plans (default plan = today's models, JSON round trip, checkpoint
// round trip of a pruned model, errors naming the layer).
#include <catch2/catch.hpp>
#include <compressor/io/checkpoint.hpp>
#include <compressor/models.hpp>
#include <compressor/nn.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "surgery/surgery_test_util.hpp"

using namespace compressor;
using namespace compressor::models;
using compressor::testing::bit_equal;
using compressor::testing::random_tensor;
using compressor::testing::randomize_batchnorms;
using compressor::testing::rel_to_max;

namespace {

std::filesystem::path temp_path(const std::string& name) {
  const auto dir = std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "surgery_tmp";
  std::filesystem::create_directories(dir);
  return dir / name;
}

nn::WeightedLayer& weighted(nn::Module& m, const std::string& path) {
  return nn::require_capability<nn::WeightedLayer>(*m.find(path), "a layer with weights", path);
}
nn::Normalization& norm(nn::Module& m, const std::string& path) {
  return nn::require_capability<nn::Normalization>(*m.find(path), "a normalisation", path);
}

/// Zeroes the output channels `drop` of the layer at path (weights, bias).
void zero_outputs(nn::Module& m, const std::string& path, const std::vector<std::int64_t>& drop) {
  auto& w = weighted(m, path);
  const std::int64_t per = w.weight().numel() / w.out_channels();
  for (const auto c : drop) {
    std::fill_n(w.weight().data() + c * per, per, 0.f);
    if (w.has_bias()) w.bias().data()[c] = 0.f;
  }
}
/// Zeroes gamma and beta of channels `drop` of the normalisation at path.
void zero_norm(nn::Module& m, const std::string& path, const std::vector<std::int64_t>& drop) {
  auto& n = norm(m, path);
  for (const auto c : drop) n.weight().data()[c] = n.bias().data()[c] = 0.f;
}

std::vector<std::int64_t> complement(std::int64_t n, const std::vector<std::int64_t>& drop) {
  std::vector<std::int64_t> keep;
  for (std::int64_t i = 0; i < n; ++i)
    if (std::find(drop.begin(), drop.end(), i) == drop.end()) keep.push_back(i);
  return keep;
}

/// Zeroes a conv's dropped outputs and its BN's gamma/beta in `zeroed`, and
/// removes them (conv outputs, BN channels, the consumers' inputs) in `pruned`.
void drop_channels(nn::Module& zeroed, nn::Module& pruned, const std::vector<std::string>& convs,
                   const std::vector<std::string>& bns, const std::vector<std::string>& consumers,
                   const std::vector<std::int64_t>& drop) {
  const std::int64_t n = weighted(pruned, convs.front()).out_channels();
  const auto keep = complement(n, drop);
  for (const auto& c : convs) {
    zero_outputs(zeroed, c, drop);
    nn::select_output_channels(pruned, c, keep);
  }
  for (const auto& b : bns) {
    zero_norm(zeroed, b, drop);
    nn::select_channels(pruned, b, keep);
  }
  for (const auto& c : consumers) nn::select_input_channels(pruned, c, keep);
}

}  // namespace

TEST_CASE("folding BatchNorms keeps eval outputs (CifarCnn, ResNet18, EfRegressor)",
          "[surgery][fold]") {
  Rng rng(11);
  nn::init::manual_seed(5);
  std::vector<std::unique_ptr<nn::Module>> models;
  models.push_back(std::make_unique<CifarCnn>());
  ResNetOptions ro;
  ro.width = 0.25;
  ro.num_classes = 10;
  models.push_back(std::make_unique<ResNet18>(ro));
  models.push_back(std::make_unique<EfRegressor>(EfRegressorOptions{.width = 0.125}));
  const std::vector<std::size_t> bn_count{4, 20, 20};
  for (std::size_t k = 0; k < models.size(); ++k) {
    auto& m = *models[k];
    INFO(m.type_name());
    randomize_batchnorms(m, rng);
    m.eval();
    const bool clip = m.type_name() == "EfRegressor";
    const Tensor<float> x = random_tensor(clip ? Shape{2, 2, 32, 32, 3} : Shape{4, 32, 32, 3}, rng);
    const Tensor<float> ref(m.forward(x));
    const auto points_before = m.quantization_points();

    auto folded = m.clone();
    const auto names = nn::fold_batchnorms(*folded);
    CHECK(names.size() == bn_count[k]);
    folded->visit([](const std::string& name, nn::Module& l) {
      INFO(name);
      CHECK(nn::as<nn::Normalization>(l) == nullptr);
    });
    for (const auto& bn : names) CHECK(folded->find(bn)->type_name() == "Identity");
    CHECK(
        weighted(*folded, clip ? "backbone.conv1" : (k == 0 ? "features.0" : "conv1")).has_bias());
    CHECK(folded->quantization_points().size() == points_before.size());
    const double err = rel_to_max(folded->forward(x), ref);
    INFO("max |diff| / max |y| = " << err);
    CHECK(err <= 1e-5);
    CHECK(nn::fold_batchnorms(*folded).empty());  // nothing left to fold
  }
}

TEST_CASE("fold_batchnorm checks its arguments", "[surgery][fold]") {
  CifarCnn net;
  CHECK_THROWS_WITH(nn::fold_batchnorm(net, "features.0", "features.5"),
                    Catch::Contains("'features.5' into 'features.0': the BatchNorm has 128 "
                                    "channels but the layer has 64 output channels"));
  CHECK_THROWS_WITH(nn::fold_batchnorm(net, "features.2", "features.1"),
                    Catch::Contains("'features.2' (ReLU) is not a layer with weights"));
  CHECK_THROWS_WITH(nn::fold_batchnorm(net, "features.0", "nothing"),
                    Catch::Contains("no module named 'nothing'"));
}

TEST_CASE("removing channels equals zeroing their weights and BN gamma and beta",
          "[surgery][channels]") {
  Rng rng(12);
  nn::init::manual_seed(6);
  SECTION("CifarCnn: consecutive convs, and the last conv into fc") {
    CifarCnn zeroed;
    randomize_batchnorms(zeroed, rng);
    auto pruned = zeroed.clone();
    drop_channels(zeroed, *pruned, {"features.0"}, {"features.1"}, {"features.4"}, {0, 7, 33, 63});
    drop_channels(zeroed, *pruned, {"features.12"}, {"features.13"}, {"fc"}, {1, 2, 500});
    CHECK(weighted(*pruned, "features.0").out_channels() == 60);
    CHECK(weighted(*pruned, "fc").in_channels() == 509);
    const Tensor<float> x = random_tensor(Shape{3, 32, 32, 3}, rng);
    for (const bool training : {true, false}) {
      INFO((training ? "train" : "eval"));
      zeroed.train(training);
      pruned->train(training);
      const Tensor<float> ref(zeroed.forward(x));
      // Summation over fewer channels changes the GEMM's blocking: equal up
      // to float rounding, not bit for bit.
      CHECK(rel_to_max(pruned->forward(x), ref) <= 1e-5);
    }
    CHECK(pruned->num_parameters() ==
          zeroed.num_parameters() - 4 * (27 + 2 + 128 * 9) - 3 * (256 * 9 + 2 + 10));
  }
  SECTION("EfRegressor: a residual group into the mean+max+min head, and a block's inner width") {
    EfRegressor zeroed(
        EfRegressorOptions{.width = 0.125, .pool = nn::TemporalPoolMode::mean_max_min});
    randomize_batchnorms(zeroed, rng);
    auto pruned = zeroed.clone();
    const std::string l = "backbone.layer4.";
    const std::vector<std::int64_t> drop{2, 9, 60};
    // The residual group of layer4: both blocks' outputs and the downsample.
    drop_channels(zeroed, *pruned, {l + "0.conv2", l + "0.downsample.0", l + "1.conv2"},
                  {l + "0.bn2", l + "0.downsample.1", l + "1.bn2"}, {l + "1.conv1"}, drop);
    // The head reads [mean | max | min] of the 64 features: 3 columns each.
    std::vector<std::int64_t> cols;
    const auto keep = complement(64, drop);
    for (int part = 0; part < 3; ++part)
      for (const auto c : keep) cols.push_back(part * 64 + c);
    nn::select_input_channels(*pruned, "head", cols);
    // layer1.1's inner width.
    drop_channels(zeroed, *pruned, {"backbone.layer1.1.conv1"}, {"backbone.layer1.1.bn1"},
                  {"backbone.layer1.1.conv2"}, {0, 5});
    const Tensor<float> x = random_tensor(Shape{2, 3, 32, 32, 3}, rng);
    for (const bool training : {true, false}) {
      zeroed.train(training);
      pruned->train(training);
      const Tensor<float> ref(zeroed.forward(x));
      CHECK(rel_to_max(pruned->forward(x), ref) <= 1e-5);
    }
    auto& trunk = dynamic_cast<ResNet18&>(static_cast<EfRegressor&>(*pruned).backbone());
    CHECK(trunk.num_features() == 61);

    // The pruned model saves with its plan and reloads in one call.
    const auto path = temp_path("pruned_ef.safetensors");
    io::save_checkpoint(*pruned, path);
    auto reloaded = io::load_model<EfRegressor>(path);
    const nn::ChannelPlan plan = static_cast<EfRegressor&>(*pruned).channel_plan();
    CHECK(reloaded->channel_plan().to_json() == plan.to_json());
    CHECK(*plan.find("backbone.layer4.1.conv2") == 61);
    CHECK(*plan.find("backbone.layer1.1.conv1") == 6);
    reloaded->eval();
    pruned->eval();
    CHECK(bit_equal(reloaded->forward(x), pruned->forward(x)));
    // A default model cannot take the pruned checkpoint: the error names the
    // tensor, both shapes and the way out.
    EfRegressor dense(
        EfRegressorOptions{.width = 0.125, .pool = nn::TemporalPoolMode::mean_max_min});
    CHECK_THROWS_WITH(io::load_checkpoint(dense, path),
                      Catch::Contains("backbone.layer1.1.conv1.weight' has shape (6, 8, 3, 3), "
                                      "expected (8, 8, 3, 3)") &&
                          Catch::Contains("io::load_model"));
  }
  SECTION("selection errors") {
    nn::Conv2d conv(4, 6, 3);
    const std::vector<std::int64_t> bad{0, 6}, twice{1, 1}, none{};
    CHECK_THROWS_WITH(conv.select_output_channels(bad), Catch::Contains("channel 6 out of range"));
    CHECK_THROWS_WITH(conv.select_input_channels(twice), Catch::Contains("selected twice"));
    CHECK_THROWS_WITH(conv.select_output_channels(none), Catch::Contains("no channels"));
  }
}

TEST_CASE("the default plans build today's models", "[surgery][plan]") {
  auto same_state = [](nn::Module& a, nn::Module& b) {
    auto pa = a.named_parameters(), pb = b.named_parameters();
    REQUIRE(pa.size() == pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i) {
      CHECK(pa[i].name == pb[i].name);
      CHECK(pa[i].value->shape() == pb[i].value->shape());
    }
    CHECK(a.named_buffers().size() == b.named_buffers().size());
  };
  CifarCnn c1, c2(CifarCnn::default_plan());
  same_state(c1, c2);
  CHECK(c2.num_parameters() == 1557066);
  ResNet18 r1, r2(ResNet18::uniform_plan({}));
  same_state(r1, r2);
  CHECK(r2.num_parameters() == 11689512);
  EfRegressor e1, e2(EfRegressor::uniform_plan());
  same_state(e1, e2);
  // A model's plan is its construction plan.
  CHECK(c1.channel_plan().to_json() == CifarCnn::default_plan().to_json());
  ResNetOptions ro;
  ro.width = 0.5;
  ResNet18 half(ro);
  CHECK(ResNet18(half.channel_plan()).num_parameters() == half.num_parameters());
}

TEST_CASE("channel plans round-trip through JSON and checkpoints", "[surgery][plan]") {
  nn::ChannelPlan p = CifarCnn::default_plan(5);
  p.set("features.0", 40);
  p.set("features.8", 200);
  const auto back = nn::ChannelPlan::from_json(p.to_json(), "test");
  CHECK(back.to_json() == p.to_json());
  CHECK(back.option_int("num_classes", 0) == 5);
  CifarCnn net(back);
  CHECK(weighted(net, "features.0").out_channels() == 40);
  CHECK(weighted(net, "features.4").in_channels() == 40);
  CHECK(weighted(net, "features.12").in_channels() == 200);
  Rng rng(13);
  for (auto& p2 : net.named_parameters())
    for (auto& v : p2.value->flat()) v = static_cast<float>(rng.uniform(-0.2, 0.2));
  const auto path = temp_path("plan_cnn.safetensors");
  io::save_checkpoint(net, path);
  auto loaded = io::load_model<CifarCnn>(path);
  CHECK(loaded->num_classes() == 5);
  const Tensor<float> x = random_tensor(Shape{2, 32, 32, 3}, rng);
  net.eval();
  loaded->eval();
  CHECK(bit_equal(loaded->forward(x), net.forward(x)));
  // Another model type from the same file: the plan says which model it is.
  CHECK_THROWS_WITH(
      io::load_model<ResNet18>(path),
      Catch::Contains(path.string() + ": channel plan is for model 'CifarCnn', not 'ResNet'"));
}

TEST_CASE("bad channel plans give errors naming the layer", "[surgery][plan]") {
  auto plan = CifarCnn::default_plan();
  plan.set("features.3", 10);  // a max pool: not a layer with weights
  CHECK_THROWS_WITH(CifarCnn(plan),
                    Catch::Contains("layer 'features.3' is not a layer with weights"));
  plan = CifarCnn::default_plan();
  plan.set("fc", 11);
  CHECK_THROWS_WITH(CifarCnn(plan), Catch::Contains("layer 'fc' has 11 output channels, but the "
                                                    "number of classes fixes it to 10"));
  auto rp = ResNet18::uniform_plan({});
  rp.set("layer2.0.downsample.0", 100);
  CHECK_THROWS_WITH(ResNet18(rp), Catch::Contains("'layer2.0.downsample.0' has 100 output "
                                                  "channels, but the residual add with "
                                                  "layer2.0.conv2 fixes it to 128"));
  rp = ResNet18::uniform_plan({});
  rp.channels.erase(rp.channels.begin());
  CHECK_THROWS_WITH(ResNet18(rp), Catch::Contains("no channel count for layer 'conv1'"));
  const std::string good = CifarCnn::default_plan().to_json();
  auto replace_all = [](std::string s, const std::string& a, const std::string& b) {
    s.replace(s.find(a), a.size(), b);
    return s;
  };
  CHECK_THROWS_WITH(
      nn::ChannelPlan::from_json(replace_all(good, "\"version\":1", "\"version\":2"), "f.json"),
      Catch::Contains("f.json: channel plan: \"version\" must be 1"));
  CHECK_THROWS_WITH(
      nn::ChannelPlan::from_json(replace_all(good, "\"features.0\":64", "\"features.0\":-3"), "f"),
      Catch::Contains("layer 'features.0' must have a positive integer channel count"));
  CHECK_THROWS_WITH(nn::ChannelPlan::from_json("{\"format\":", "f"),
                    Catch::Contains("not valid JSON"));
  // A checkpoint without a plan cannot be rebuilt from one.
  nn::Sequential s;
  s.emplace<nn::Linear>(2, 2);
  const auto path = temp_path("no_plan.safetensors");
  io::save_checkpoint(s, path);
  CHECK_THROWS_WITH(io::load_model<CifarCnn>(path), Catch::Contains("no channel plan"));
}
