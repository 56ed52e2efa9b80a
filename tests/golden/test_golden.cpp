// Our layers and models against PyTorch 1.13 on the fixtures written by
// tools/make_golden.py (tests/data/golden; see docs/checkpoints.md). Each
// fixture holds a module's state dict, an input x, R = dL/d(output), and
// PyTorch's output, input gradient, parameter gradients and buffers after the
// forward. We load the state with our checkpoint loader, convert x and R from
// NCHW to NHWC, run forward and backward in the mode PyTorch used, and compare
//
//   err(ours, torch) = max_i |ours_i - torch_i| / max(max_i |torch_i|, 1e-6)
//
// against 1e-4: an error relative to the tensor's scale, so elements near
// zero (after cancellation) do not dominate, with a floor for all-zero tensors.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>

#include "compressor/io/checkpoint.hpp"
#include "compressor/models.hpp"
#include "compressor/nn.hpp"

using namespace compressor;
using namespace compressor::io;

namespace {

constexpr double kTolerance = 1e-4;

SafetensorsFile open_fixture(const std::string& name) {
  return SafetensorsFile::open(std::filesystem::path(COMPRESSOR_TEST_DATA_DIR) / "golden" /
                               (name + ".safetensors"));
}

double golden_error(TensorView<const float> ours, TensorView<const float> torch) {
  check_same_shape(ours.shape(), torch.shape(), "golden comparison");
  double diff = 0, scale = 0;
  for (std::int64_t i = 0; i < torch.numel(); ++i) {
    diff = std::max(diff, std::abs(double(ours[i]) - double(torch[i])));
    scale = std::max(scale, std::abs(double(torch[i])));
  }
  return diff / std::max(scale, 1e-6);
}

/// PyTorch activation (NCHW, or (N, F)) to ours (NHWC, or (N, F)).
Tensor<float> to_ours(const Tensor<float>& t) {
  return t.rank() == 4 ? to_channels_last(t.view()) : t;
}
/// Ours to PyTorch's layout.
Tensor<float> to_torch(TensorView<const float> t, nn::Layout layout = nn::Layout::ohwi) {
  return t.rank() == 4 && layout == nn::Layout::ohwi ? to_channels_first(t) : clone(t);
}

/// Loads the fixture's state dict into m (strict: names and shapes must match
/// PyTorch's exactly; the golden.* / grad.* / after.* tensors are skipped).
void load_fixture_state(nn::Module& m, SafetensorsFile& f) {
  LoadOptions o;
  o.ignore = {"golden.*", "grad.*", "grad_sample.*", "grad_sample_index.*", "after.*"};
  const LoadReport r = load_checkpoint(m, f, o);
  CHECK(r.missing.empty());
}

/// Runs forward and backward as PyTorch did and compares everything the fixture holds.
void check_against_fixture(nn::Module& m, SafetensorsFile& f) {
  const std::string* mode = f.metadata_value("mode");
  REQUIRE(mode != nullptr);
  m.train(*mode == "train");
  m.set_input_grad(true);
  m.zero_grad();

  const Tensor<float> x = to_ours(f.read<float>("golden.input"));
  const Tensor<float> y(m.forward(x));
  const double out_err = golden_error(to_torch(y), f.read<float>("golden.output"));
  CAPTURE(f.source(), out_err);
  CHECK(out_err <= kTolerance);

  const Tensor<float> r = to_ours(f.read<float>("golden.grad_output"));
  const Tensor<float> dx(m.backward(r));
  const double dx_err = golden_error(to_torch(dx), f.read<float>("golden.grad_input"));
  CAPTURE(dx_err);
  CHECK(dx_err <= kTolerance);

  int compared = 0;
  for (const auto& p : m.named_parameters()) {
    const Tensor<float> g = to_torch(*p.grad, p.layout);
    double err = 0;
    if (f.contains("grad." + p.name)) {
      err = golden_error(g, f.read<float>("grad." + p.name));
    } else {
      // Sampled gradient entries (flat indices in PyTorch's layout).
      const auto idx = f.read<std::int64_t>("grad_sample_index." + p.name);
      const auto want = f.read<float>("grad_sample." + p.name);
      Tensor<float> got(want.shape());
      for (std::int64_t i = 0; i < idx.numel(); ++i) {
        REQUIRE(idx[i] >= 0);
        REQUIRE(idx[i] < g.numel());
        got[i] = g[idx[i]];
      }
      err = golden_error(got, want);
    }
    INFO("gradient of " << p.name << ": error " << err);
    CHECK(err <= kTolerance);
    ++compared;
  }
  CHECK(compared > 0);

  for (const auto& b : m.named_buffers()) {
    INFO("buffer " << b.name << " after the forward");
    if (b.dtype == DType::i64) {
      const auto want = f.read<std::int64_t>("after." + b.name);
      CHECK(b.as<std::int64_t>()[0] == want[0]);
    } else {
      const double err = golden_error(b.as<float>(), f.read<float>("after." + b.name));
      CAPTURE(err);
      CHECK(err <= kTolerance);
    }
  }
}

// ---- the CifarCnn weight formula (tools/make_golden.py formula_tensor) --------

std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  return h;
}

std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// The formula's values in PyTorch's shape (exactly representable floats).
Tensor<float> formula_tensor(const std::string& name, const Shape& shape) {
  Tensor<float> t(shape);
  const std::uint64_t seed = fnv1a64(name);
  const auto n = static_cast<std::uint64_t>(shape.numel());
  int p = 12;
  double base = 0.0;
  if (shape.rank() >= 2) {
    const std::uint64_t fan_in = n / static_cast<std::uint64_t>(shape[0]);
    p = 0;
    while ((std::uint64_t{1} << (2 * p)) < 1'000'000 * fan_in) ++p;
  } else if (name.ends_with("weight")) {
    base = 1.0;
  }
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto k = static_cast<std::int64_t>((splitmix64(seed + i) >> 11) % 2001) - 1000;
    t[static_cast<std::int64_t>(i)] = static_cast<float>(base + std::ldexp(double(k), -p));
  }
  return t;
}

}  // namespace

TEST_CASE("Conv2d matches PyTorch", "[golden][conv]") {
  struct Case {
    const char* name;
    nn::Conv2dOptions opt;
  };
  for (const Case& c : {Case{"conv3x3_pad1_bias", {4, 6, 3, 1, 1, true}},
                        Case{"conv3x3_stride2_nobias", {5, 8, 3, 2, 1, false}},
                        Case{"conv1x1_stride2", {6, 4, 1, 2, 0, false}},
                        Case{"conv7x7_stride2_pad3", {3, 8, 7, 2, 3, false}}}) {
    INFO(c.name);
    auto f = open_fixture(c.name);
    nn::Conv2d conv(c.opt);
    load_fixture_state(conv, f);
    check_against_fixture(conv, f);
  }
}

TEST_CASE("BatchNorm2d matches PyTorch in training and eval mode", "[golden][bn]") {
  for (const char* name : {"batchnorm_train", "batchnorm_eval"}) {
    INFO(name);
    auto f = open_fixture(name);
    nn::BatchNorm2d bn(5);
    load_fixture_state(bn, f);
    check_against_fixture(bn, f);  // includes running stats and num_batches_tracked after
  }
}

TEST_CASE("BasicBlock with downsample matches torchvision's in training mode", "[golden][block]") {
  auto f = open_fixture("basic_block_downsample_train");
  nn::BasicBlock block(8, 16, 2);
  load_fixture_state(block, f);
  check_against_fixture(block, f);
}

TEST_CASE("CifarCnn matches PyTorch with formula weights", "[golden][models]") {
  // The formula port reproduces the script's first values.
  const auto w = formula_tensor("features.0.weight", Shape{64, 3, 3, 3});
  CHECK(w[0] == 0.010498046875f);
  CHECK(w[1] == 0.01171875f);
  CHECK(w[2] == 0.0078125f);

  auto f = open_fixture("cifar_cnn_train");
  models::CifarCnn net;
  // Our names and PyTorch shapes equal the PyTorch state_dict the script recorded.
  const std::string* sd = f.metadata_value("state_dict");
  REQUIRE(sd != nullptr);
  auto expected = json::parse(*sd).as_object();
  // PyTorch's state_dict interleaves parameters and buffers per module: compare sorted by name.
  std::vector<std::pair<std::string, Shape>> ours;
  for (const auto& p : net.named_parameters())
    ours.emplace_back(p.name, p.layout == nn::Layout::ohwi ? channels_first_shape(p.value->shape())
                                                           : p.value->shape());
  for (const auto& b : net.named_buffers())
    ours.emplace_back(
        b.name, io::detail::dispatch_dtype(b.dtype, [&]<class T>() { return b.as<T>().shape(); }));
  auto by_name = [](const auto& l, const auto& r) { return l.first < r.first; };
  std::sort(ours.begin(), ours.end(), by_name);
  std::sort(expected.begin(), expected.end(), by_name);
  REQUIRE(ours.size() == expected.size());
  for (std::size_t k = 0; k < ours.size(); ++k) {
    CHECK(ours[k].first == expected[k].first);
    std::vector<std::int64_t> dims;
    for (const auto& d : expected[k].second.as_array()) dims.push_back(d.as_int64());
    CHECK(ours[k].second == Shape(std::span<const std::int64_t>(dims)));
  }

  for (const auto& p : net.named_parameters()) {
    const Shape torch_shape =
        p.layout == nn::Layout::ohwi ? channels_first_shape(p.value->shape()) : p.value->shape();
    const auto v = formula_tensor(p.name, torch_shape);
    p.value->copy_from(p.layout == nn::Layout::ohwi ? to_channels_last(v.view()) : v);
  }
  check_against_fixture(net, f);
}

TEST_CASE("ResNet18 (torchvision names, width 0.125) matches PyTorch in training mode",
          "[golden][models]") {
  auto f = open_fixture("resnet18_w0125_train");
  models::ResNetOptions o;
  o.width = 0.125;
  o.num_classes = 10;
  models::ResNet18 net(o);
  load_fixture_state(net, f);
  check_against_fixture(net, f);
}

TEST_CASE("torchvision ResNet18 weights load into EfRegressor's backbone", "[golden][models]") {
  auto f = open_fixture("resnet18_w0125_train");
  models::EfRegressorOptions eo;
  eo.width = 0.125;
  models::EfRegressor ef(eo);
  LoadOptions o;
  o.add_prefix = "backbone.";
  o.ignore = {"fc.*", "golden.*", "grad.*", "after.*"};
  o.allow_missing = {"head.*"};
  const LoadReport r = load_checkpoint(ef, f, o);
  CHECK(r.missing == std::vector<std::string>{"head.weight", "head.bias"});
  ef.train();  // the fixture's features come from a training-mode forward
  // One frame per clip: the clip features are the frame features.
  const Tensor<float> x = to_ours(f.read<float>("golden.input"));
  const Tensor<float> y(ef.forward(x.reshape(Shape{x.dim(0), 1, x.dim(1), x.dim(2), x.dim(3)})));
  const auto feats = f.read<float>("golden.features");  // PyTorch's avgpool output (N, F)
  auto& head = dynamic_cast<nn::Linear&>(ef.head());
  Tensor<float> want(Shape{feats.dim(0), 1});
  for (std::int64_t n = 0; n < feats.dim(0); ++n) {
    double s = head.bias()[0];
    for (std::int64_t j = 0; j < feats.dim(1); ++j) s += double(feats(n, j)) * head.weight()(0, j);
    want[n] = static_cast<float>(s);
  }
  const double err = golden_error(y, want);
  CAPTURE(err);
  CHECK(err <= kTolerance);
}
