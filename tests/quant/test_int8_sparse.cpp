// Sparse int8 deploy layers (issue 14): the sparse int8 conv / linear op
// equals the dense int8 op bit for bit on every ISA path (both weight grids,
// every conv geometry kind, uint8 and float outputs); a pruned, PTQ'd
// CifarCnn with its masked layers on the sparse kernel computes exactly what
// the dense int8 model computes, under each finalize policy; the int8 file
// stores the sparse layers sparse (smaller at 90%), loads them back sparse,
// and rejects inconsistent sparse data naming the file and the tensor.
#include <catch2/catch.hpp>
#include <compressor/kernels/conv_u8s8.hpp>
#include <compressor/kernels/isa.hpp>
#include <compressor/kernels/sparse_conv_u8s8.hpp>
#include <compressor/models.hpp>
#include <compressor/prune/finalize_int8.hpp>
#include <compressor/prune/unstructured.hpp>
#include <compressor/quant/int8_io.hpp>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/io_test_util.hpp"
#include "quant/quant_test_util.hpp"
#include "quant/raw_file.hpp"
#include "surgery/surgery_test_util.hpp"

using namespace compressor;
namespace k = compressor::kernels;
using compressor::testing::bit_equal;
using compressor::testing::RawFile;

namespace {

/// A clean directory for one test's files (io_test_util.hpp's, in a folder of this file's own).
std::filesystem::path sparse_dir(const std::string& name) {
  return compressor::testing::io_test_dir("int8_sparse_files/" + name);
}

struct ConvCase {
  std::int64_t in, out, k, stride, pad, hw;
  bool bias;
};

/// Random int8 weights on `grid` (both ends included) pruned to `sparsity`,
/// scales and a bias of a layer.
quant::QuantizedWeights random_weights(const ConvCase& c, k::WeightGrid grid, double sparsity,
                                       Rng& rng) {
  quant::QuantizedWeights q;
  q.weight = Tensor<std::int8_t>(Shape{c.out, c.k, c.k, c.in});
  const int qmax = k::weight_qmax(grid);
  for (auto& v : q.weight.flat()) {
    const auto r = static_cast<int>(rng.below(static_cast<std::uint64_t>(2 * qmax + 3)));
    // r in [0, 2 qmax + 2]: the two extra draws land on the grid's ends.
    v = rng.uniform() < sparsity
            ? 0
            : static_cast<std::int8_t>(r > 2 * qmax ? (r % 2 ? qmax : -qmax) : r - qmax);
  }
  for (std::int64_t o = 0; o < c.out; ++o)
    q.scales.push_back(static_cast<float>(rng.uniform(0.5, 2.0) * 0.01));
  if (c.bias)
    for (std::int64_t o = 0; o < c.out; ++o)
      q.bias.push_back(static_cast<std::int32_t>(rng.below(4001)) - 2000);
  q.stride = c.stride;
  q.padding = c.pad;
  q.grid = grid;
  return q;
}

}  // namespace

TEST_CASE("sparse int8 conv and linear equal the dense int8 ones bit for bit on every path",
          "[quant][prune][sparse][isa]") {
  Rng rng(11);
  const ConvCase cases[] = {
      {16, 24, 3, 1, 1, 9, false},  // im2col
      {5, 7, 3, 2, 1, 11, true},    // strided, odd channel counts
      {24, 40, 1, 1, 0, 6, true},   // pointwise: the input itself
      {8, 16, 1, 2, 0, 7, false},   // 1x1 strided (the dense op's indirect rows)
      {3, 10, 7, 2, 3, 13, false},  // a stem
      {37, 11, 1, 1, 0, 1, true},   // a linear layer's (N, 1, 1, K)
  };
  for (const auto grid : {k::WeightGrid::narrow, k::WeightGrid::full})
    for (const ConvCase& c : cases)
      for (const double s : {0.0, 0.5, 0.9, 1.0}) {
        const quant::QuantizedWeights q = random_weights(c, grid, s, rng);
        const k::ConvU8S8 dense(q.weight.view(), q.scales, q.bias, q.stride, q.padding, grid);
        const k::SparseConvU8S8 sparse(q.weight.view(), q.scales, q.bias, q.stride, q.padding,
                                       grid);
        Tensor<std::uint8_t> x(Shape{3, c.hw, c.hw + 2, c.in});
        for (auto& v : x.flat()) v = static_cast<std::uint8_t>(rng.below(256));
        const Shape ys = dense.output_shape(x.shape());
        REQUIRE(sparse.output_shape(x.shape()) == ys);
        for (const std::int32_t zx : {0, 131, 255})
          for (const bool relu : {false, true}) {
            const k::QuantParams in{0.02f, zx}, out{0.05f, 97};
            // The reference: the dense op on the scalar path.
            Tensor<std::uint8_t> want(ys);
            Tensor<float> want_f(ys);
            {
              const k::ScopedKernelPath on(k::Path::scalar);
              k::ConvScratch cs;
              dense.forward(std::as_const(x).view(), in, want.view(), out, relu, cs);
              dense.forward(std::as_const(x).view(), in, want_f.view(), relu, cs);
            }
            for (const k::Path p : k::supported_paths()) {
              INFO("path " << k::path_name(p) << ", grid " << k::weight_grid_name(grid) << ", conv "
                           << c.in << "->" << c.out << " k" << c.k << " s" << c.stride
                           << ", sparsity " << s << ", zx " << zx << ", relu " << relu);
              const k::ScopedKernelPath on(p);
              k::ConvScratch cs;
              k::SparseConvScratch ss;
              Tensor<std::uint8_t> got_d(ys, std::uint8_t{7}), got_s(ys, std::uint8_t{7});
              dense.forward(std::as_const(x).view(), in, got_d.view(), out, relu, cs);
              sparse.forward(std::as_const(x).view(), in, got_s.view(), out, relu, ss);
              CHECK(std::memcmp(got_d.data(), want.data(), static_cast<std::size_t>(ys.numel())) ==
                    0);
              CHECK(std::memcmp(got_s.data(), want.data(), static_cast<std::size_t>(ys.numel())) ==
                    0);
              Tensor<float> got_f(ys, 7.f);
              sparse.forward(std::as_const(x).view(), in, got_f.view(), relu, ss);
              CHECK(bit_equal(got_f, want_f));
            }
          }
      }
}

TEST_CASE("Int8Conv / Int8Linear switch kernels without changing a bit", "[quant][prune][sparse]") {
  Rng rng(12);
  const ConvCase c{12, 20, 3, 1, 1, 8, true};
  const quant::QuantizedWeights q = random_weights(c, k::WeightGrid::full, 0.9, rng);
  quant::Int8Conv op("conv", q, {0.05f, 10}, true);
  Tensor<std::uint8_t> x(Shape{2, 8, 9, 12});
  for (auto& v : x.flat()) v = static_cast<std::uint8_t>(rng.below(256));
  const quant::QView xv{std::as_const(x).view(), {0.03f, 128}};
  const Tensor<std::uint8_t> want(op.forward(xv, nullptr).data);
  const std::int64_t dense_bytes = op.weight_bytes();
  op.set_sparse(q, true);
  REQUIRE(op.sparse());
  CHECK(op.last_input_shape() == x.shape());
  const Tensor<std::uint8_t> got(op.forward(xv, nullptr).data);
  REQUIRE(got.shape() == want.shape());
  CHECK(std::memcmp(got.data(), want.data(), static_cast<std::size_t>(got.numel())) == 0);
  CHECK(op.weight_bytes() < dense_bytes);
  op.set_sparse(q, false);
  CHECK_FALSE(op.sparse());
  CHECK(op.weight_bytes() == dense_bytes);

  // With the 2x2 max pool after it: one pass on either kernel, or apart.
  quant::Int8Conv pooled("conv", q, {0.05f, 10}, true);
  pooled.fuse_max_pool2();
  const Tensor<std::uint8_t> want_pooled(pooled.forward(xv, nullptr).data);
  REQUIRE(want_pooled.shape() == Shape{2, 4, 4, 20});
  pooled.set_sparse(q, true);
  const Tensor<std::uint8_t> one_pass(pooled.forward(xv, nullptr).data);
  pooled.set_max_pool2_one_pass(false);
  const Tensor<std::uint8_t> apart(pooled.forward(xv, nullptr).data);
  for (const Tensor<std::uint8_t>* t : {&one_pass, &apart}) {
    REQUIRE(t->shape() == want_pooled.shape());
    CHECK(std::memcmp(t->data(), want_pooled.data(), static_cast<std::size_t>(t->numel())) == 0);
  }

  const ConvCase l{37, 11, 1, 1, 0, 1, true};
  const quant::QuantizedWeights ql = random_weights(l, k::WeightGrid::narrow, 0.8, rng);
  quant::Int8Linear lin("fc", ql, {0.05f, 3}, false);
  Tensor<std::uint8_t> xl(Shape{5, 37});
  for (auto& v : xl.flat()) v = static_cast<std::uint8_t>(rng.below(256));
  const quant::QView xlv{std::as_const(xl).view(), {0.03f, 0}};
  const Tensor<std::uint8_t> want_l(lin.forward(xlv, nullptr).data);
  lin.set_sparse(ql, true);
  const Tensor<std::uint8_t> got_l(lin.forward(xlv, nullptr).data);
  CHECK(std::memcmp(got_l.data(), want_l.data(), static_cast<std::size_t>(got_l.numel())) == 0);
  CHECK_THROWS_AS(lin.forward({std::as_const(x).view(), {0.03f, 0}}, nullptr), ShapeError);
}

namespace {

/// A quarter-width CifarCnn pruned to 90% (stem dense), with the masks.
struct PrunedCnn {
  std::unique_ptr<models::CifarCnn> net;
  prune::MaskSet masks;
  explicit PrunedCnn(std::uint64_t seed, double sparsity = 0.9) {
    nn::init::manual_seed(seed);
    net = std::make_unique<models::CifarCnn>(compressor::testing::narrow_cifar_plan(4));
    Rng rng(seed);
    compressor::testing::randomize_batchnorms(*net, rng);
    prune::UnstructuredOptions o{.sparsity = sparsity, .scope = prune::Scope::per_layer};
    o.layers.exclude = {"features.0"};
    masks = prune::prune_unstructured(*net, o);
  }
  models::CifarCnn& model() { return *net; }
};

const Shape kCnnInput{2, 32, 32, 3};

/// p's model PTQ'd (calibration seed `seed`) twice, one copy with every
/// masked layer on the sparse kernel; both saved in dir, with their sizes.
struct DenseAndSparseFiles {
  quant::Int8Model dense, sparse;
  std::filesystem::path dense_path, sparse_path;
  std::uintmax_t dense_bytes = 0, sparse_bytes = 0;

  DenseAndSparseFiles(PrunedCnn& p, const std::filesystem::path& dir, std::uint64_t seed)
      : dense(compressor::testing::ptq_int8(p.model(), kCnnInput, 1, seed)),
        sparse(compressor::testing::ptq_int8(p.model(), kCnnInput, 1, seed)),
        dense_path(dir / "dense.safetensors"),
        sparse_path(dir / "sparse.safetensors") {
    (void)prune::finalize_sparse(sparse, p.masks, kCnnInput,
                                 {.policy = prune::SparsePolicy::always});
    quant::save_int8_model(dense, p.model().channel_plan(), dense_path);
    quant::save_int8_model(sparse, p.model().channel_plan(), sparse_path);
    dense_bytes = std::filesystem::file_size(dense_path);
    sparse_bytes = std::filesystem::file_size(sparse_path);
  }
};

}  // namespace

TEST_CASE("a pruned, PTQ'd CifarCnn on sparse int8 layers equals the dense int8 model",
          "[quant][prune][sparse]") {
  PrunedCnn p(21);
  const auto x = compressor::testing::RandomBatches(kCnnInput, 1, 99).batch(0);
  for (const auto grid : {k::WeightGrid::full, k::WeightGrid::narrow}) {
    INFO("grid " << k::weight_grid_name(grid));
    quant::Int8Model dense = compressor::testing::ptq_int8(p.model(), kCnnInput, 2, 5, grid);
    quant::Int8Model sparse = compressor::testing::ptq_int8(p.model(), kCnnInput, 2, 5, grid);
    const auto ds = prune::finalize_sparse(sparse, p.masks, Shape{1, 32, 32, 3},
                                           {.policy = prune::SparsePolicy::always});
    REQUIRE(ds.size() == p.masks.layers().size());
    for (const auto& d : ds) {
      CHECK(d.sparse);
      CHECK(d.sparsity >= 0.9 - 1e-3);  // the mask's, and what quantization zeroed
    }
    CHECK(sparse.sparse_layers().size() == ds.size());
    CHECK(dense.sparse_layers().empty());
    CHECK(sparse.layer_op("features.0")->sparse() == false);
    CHECK(sparse.weight_bytes() < dense.weight_bytes());
    CHECK_THAT(sparse.summary().str(), Catch::Contains("(sparse kernel)"));
    for (const k::Path path : k::supported_paths()) {
      INFO("path " << k::path_name(path));
      const k::ScopedKernelPath on(path);
      const Tensor<float> want(dense.forward(x));
      CHECK(bit_equal(sparse.forward(x), want));
    }
  }
}

TEST_CASE("finalize_sparse on an int8 model: measured and rule-based choices, bad input",
          "[quant][prune][sparse]") {
  PrunedCnn p(22);
  const auto x = compressor::testing::RandomBatches(kCnnInput, 1, 98).batch(0);
  quant::Int8Model dense = compressor::testing::ptq_int8(p.model(), kCnnInput, 1, 6);
  const Tensor<float> want(dense.forward(x));
  {
    quant::Int8Model m = compressor::testing::ptq_int8(p.model(), kCnnInput, 1, 6);
    const auto ds = prune::finalize_sparse(m, p.masks, Shape{1, 32, 32, 3}, {.repeats = 2});
    REQUIRE(ds.size() == p.masks.layers().size());
    for (const auto& d : ds) {
      INFO(d.layer);
      CHECK(d.dense_ms > 0);
      CHECK(d.sparse_ms > 0);
      CHECK(d.sparse == (d.dense_ms >= 1.1 * d.sparse_ms));  // the default min_speedup
      CHECK(m.layer_op(d.layer)->sparse() == d.sparse);
    }
    CHECK(bit_equal(m.forward(x), want));  // whatever was chosen
  }
  for (const double min_speedup : {1e-9, 1e9}) {  // sparse always pays / never pays
    INFO("min_speedup " << min_speedup);
    quant::Int8Model m = compressor::testing::ptq_int8(p.model(), kCnnInput, 1, 6);
    const auto ds = prune::finalize_sparse(m, p.masks, Shape{1, 32, 32, 3},
                                           {.repeats = 1, .min_speedup = min_speedup});
    for (const auto& d : ds) CHECK(d.sparse == (min_speedup < 1));
    CHECK(bit_equal(m.forward(x), want));
  }
  {
    quant::Int8Model m = compressor::testing::ptq_int8(p.model(), kCnnInput, 1, 6);
    const auto ds = prune::finalize_sparse(
        m, p.masks, kCnnInput,
        {.policy = prune::SparsePolicy::min_sparsity, .min_sparsity = 0.999});
    for (const auto& d : ds) CHECK_FALSE(d.sparse);
    CHECK(m.sparse_layers().empty());
    CHECK_THROWS_WITH(m.set_sparse("features.99", true), Catch::Contains("'features.99'"));
  }
  // A model whose weights do not hold the masks (pruned weights nonzero).
  PrunedCnn other(23);
  quant::Int8Model unpruned = compressor::testing::ptq_int8(
      models::CifarCnn(compressor::testing::narrow_cifar_plan(4)), kCnnInput, 1, 6);
  CHECK_THROWS_WITH(prune::finalize_sparse(unpruned, other.masks, kCnnInput),
                    Catch::Contains("do not hold its mask"));
}

TEST_CASE("int8 files store sparse layers sparse, load them back and reject bad sparse data",
          "[quant][prune][sparse][int8_io]") {
  const auto dir = sparse_dir("files");
  PrunedCnn p(31);
  const auto x = compressor::testing::RandomBatches(kCnnInput, 1, 97).batch(0);
  DenseAndSparseFiles files(p, dir, 7);
  quant::Int8Model &dense = files.dense, &sparse = files.sparse;
  const auto &dense_path = files.dense_path, &sparse_path = files.sparse_path;
  const auto dense_bytes = files.dense_bytes, sparse_bytes = files.sparse_bytes;
  INFO("dense int8 file " << dense_bytes << " bytes, sparse " << sparse_bytes);
  // 5 bytes per nonzero against 1 per weight: about 0.5 + 8 (O + 1) / weights.
  CHECK(double(sparse_bytes) < 0.6 * double(dense_bytes));

  const Tensor<float> want(dense.forward(x));
  {
    io::SafetensorsFile f = io::SafetensorsFile::open(sparse_path);
    CHECK(*f.metadata_value("format_version") == "3");
    CHECK(f.find("features.4.weight") == nullptr);
    CHECK(f.find("features.4.weight_values") != nullptr);
    CHECK(*io::SafetensorsFile::open(dense_path).metadata_value("format_version") == "1");
    quant::Int8Model loaded = quant::load_int8_model(f);
    CHECK(loaded.sparse_layers() == sparse.sparse_layers());
    CHECK(bit_equal(loaded.forward(x), want));
    // Saved again: the same bytes.
    CHECK(quant::int8_model_writer(loaded, p.model().channel_plan()).bytes() ==
          quant::int8_model_writer(sparse, p.model().channel_plan()).bytes());
  }

  const RawFile raw = RawFile::read(sparse_path);
  const auto bad = dir / "bad.safetensors";
  const std::string file = bad.string();
  auto load = [&](const RawFile& r) {
    r.write(bad);
    return quant::load_int8_model(bad);
  };
  using Catch::Contains;
  const std::string layer = "features.8";
  RawFile copy = raw;
  const std::int64_t nnz = copy.at(layer + ".weight_values").dims[0];
  const std::string sparse_meta =
      *io::SafetensorsFile::open(sparse_path).metadata_value("sparse_layers");
  const std::string entry = "\"features.8\":[64,3,3,32]";
  REQUIRE(sparse_meta.find(entry) != std::string::npos);
  auto meta_with = [&](const std::string& replacement) {
    std::string m = sparse_meta;
    m.replace(m.find(entry), entry.size(), replacement);
    return m;
  };
  REQUIRE(nnz > 2);
  SECTION("row_ptr not monotonic") {
    RawFile r = raw;
    r.set<std::int64_t>(layer + ".weight_row_ptr", 2, 0);
    CHECK_THROWS_AS(load(r), ValueError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + layer + ".weight_row_ptr'") &&
                                   Contains("decreases"));
    r = raw;
    r.set<std::int64_t>(layer + ".weight_row_ptr", 0, 1);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + layer + ".weight_row_ptr'") &&
                                   Contains("expected 0 to"));
  }
  SECTION("index out of range or not ascending") {
    RawFile r = raw;
    r.set<std::int32_t>(layer + ".weight_indices", 0, 1 << 20);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + layer + ".weight_indices'") &&
                                   Contains("outside [0, "));
    r = raw;
    r.set<std::int32_t>(layer + ".weight_indices", 0, -1);
    CHECK_THROWS_AS(load(r), ValueError);
    r = raw;
    // The second entry of row 0 equal to the first.
    std::int32_t first;
    std::memcpy(&first, r.at(layer + ".weight_indices").bytes.data(), 4);
    r.set<std::int32_t>(layer + ".weight_indices", 1, first);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("not above the row's previous one"));
  }
  SECTION("nnz mismatch") {
    RawFile r = raw;
    auto& idx = r.at(layer + ".weight_indices");
    idx.dims[0] -= 1;
    idx.bytes.resize(idx.bytes.size() - 4);
    CHECK_THROWS_AS(load(r), ValueError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + layer + ".weight_indices'") &&
                                   Contains("one column index per nonzero"));
    r = raw;
    auto& vals = r.at(layer + ".weight_values");
    vals.dims[0] -= 1;
    vals.bytes.resize(vals.bytes.size() - 1);
    r.at(layer + ".weight_indices").dims[0] -= 1;
    r.at(layer + ".weight_indices").bytes.resize(r.at(layer + ".weight_indices").bytes.size() - 4);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + layer + ".weight_row_ptr'"));
  }
  SECTION("a value off the weight grid") {
    RawFile r = raw;
    r.set<std::int8_t>(layer + ".weight_values", 1, -128);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + layer + ".weight_values'") &&
                                   Contains("outside the file's weight grid"));
  }
  SECTION("missing or extra tensors, wrong shapes") {
    RawFile r = raw;
    r.erase(layer + ".weight_row_ptr");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + layer + ".weight_row_ptr'") &&
                                   Contains("missing"));
    r = raw;
    r.at(layer + ".weight_values").dims = {1, nnz};
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + layer + ".weight_values'") &&
                                   Contains("expected (nnz)"));
    r = raw;
    r.at(layer + ".weight_row_ptr").dtype = "I32";
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + layer + ".weight_row_ptr'"));
  }
  SECTION("metadata") {
    RawFile r = raw;
    r.set_meta("format_version", "1");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("sparse_layers"));
    r = raw;
    r.erase_meta("sparse_layers");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("sparse_layers"));
    r = raw;
    r.set_meta("sparse_layers", "[1, 2]");
    CHECK_THROWS_WITH(load(r),
                      Contains(file) && Contains("sparse_layers") && Contains("JSON object"));
    r = raw;
    r.set_meta("sparse_layers", meta_with("\"features.8\":[65,3,3,32]"));
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.8'") &&
                                   Contains("gives it 64 output channels"));
    r = raw;
    r.set_meta("sparse_layers", meta_with("\"features.8\":[64,3,3,16]"));
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.8'") &&
                                   Contains("the model built from the channel plan has"));
    r = raw;
    r.set_meta("sparse_layers", "{\"nope\": [8, 8]}");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'nope'"));
  }
  // A sparse layer's data read with a dense layer's name: no crash, an error.
  SECTION("a dense tensor where the sparse ones belong") {
    RawFile r = raw;
    r.at(layer + ".weight_values").name = layer + ".weight";
    CHECK_THROWS_AS(load(r), IoError);
  }
}

TEST_CASE("a sparse layer whose CSR would not be smaller is stored dense and loads sparse",
          "[quant][prune][sparse][int8_io]") {
  const auto dir = sparse_dir("half");
  PrunedCnn p(41, 0.5);  // CSR: 5 bytes per nonzero, 2.5 per weight here
  const auto x = compressor::testing::RandomBatches(kCnnInput, 1, 95).batch(0);
  DenseAndSparseFiles files(p, dir, 9);
  quant::Int8Model &dense = files.dense, &sparse = files.sparse;
  const auto& sparse_path = files.sparse_path;
  const auto dense_bytes = files.dense_bytes, sparse_bytes = files.sparse_bytes;
  REQUIRE_FALSE(sparse.sparse_layers().empty());
  INFO("dense int8 file " << dense_bytes << " bytes, sparse " << sparse_bytes);
  CHECK(sparse_bytes < dense_bytes + 1024);  // the weights as dense; only metadata added
  const Tensor<float> want(dense.forward(x));
  {
    io::SafetensorsFile f = io::SafetensorsFile::open(sparse_path);
    CHECK(*f.metadata_value("format_version") == "3");
    for (const auto& layer : sparse.sparse_layers()) {
      INFO(layer);
      CHECK(f.find(layer + ".weight") != nullptr);
      CHECK(f.find(layer + ".weight_values") == nullptr);
      CHECK(f.metadata_value("sparse_layers")->find("\"" + layer + "\"") != std::string::npos);
    }
    quant::Int8Model loaded = quant::load_int8_model(f);
    CHECK(loaded.sparse_layers() == sparse.sparse_layers());  // on the sparse kernel again
    CHECK(bit_equal(loaded.forward(x), want));
    CHECK(quant::int8_model_writer(loaded, p.model().channel_plan()).bytes() ==
          quant::int8_model_writer(sparse, p.model().channel_plan()).bytes());
  }
  // The dense weight of a sparse layer is checked like any dense weight, and
  // CSR tensors beside it are refused.
  const RawFile raw = RawFile::read(sparse_path);
  const auto bad = dir / "bad.safetensors";
  const std::string layer = sparse.sparse_layers().front();
  using Catch::Contains;
  RawFile r = raw;
  r.set<std::int8_t>(layer + ".weight", 0, -128);
  r.write(bad);
  CHECK_THROWS_WITH(quant::load_int8_model(bad), Contains(bad.string()) &&
                                                     Contains("'" + layer + ".weight'") &&
                                                     Contains("outside the file's weight grid"));
  r = raw;
  r.at(layer + ".weight").dims = {r.at(layer + ".weight").dims[0], 1, 1,
                                  r.at(layer + ".weight").dims[1] *
                                      r.at(layer + ".weight").dims[2] *
                                      r.at(layer + ".weight").dims[3]};
  r.write(bad);
  CHECK_THROWS_WITH(quant::load_int8_model(bad),
                    Contains(bad.string()) && Contains("'" + layer + ".weight'"));
  r = raw;  // CSR tensors beside the dense weight: the weight becomes unexpected
  r.tensors.push_back({layer + ".weight_values", "I8", {1}, std::string(1, '\1')});
  r.tensors.push_back({layer + ".weight_indices", "I32", {1}, std::string(4, '\0')});
  const std::int64_t rows = r.at(layer + ".weight").dims[0];
  r.tensors.push_back({layer + ".weight_row_ptr",
                       "I64",
                       {rows + 1},
                       std::string(static_cast<std::size_t>(8 * (rows + 1)), '\0')});
  r.write(bad);
  CHECK_THROWS_WITH(quant::load_int8_model(bad),
                    Contains(bad.string()) && Contains("'" + layer + ".weight'"));
}
