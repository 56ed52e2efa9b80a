// Finite-difference gradient checks for every layer, the BasicBlock and small
// full models.
#include <catch2/catch.hpp>

#include "compressor/models.hpp"
#include "compressor/nn.hpp"
#include "support/test_util.hpp"

using namespace compressor;
using namespace compressor::nn;
using compressor::testing::random_tensor;

namespace {
void require_gradcheck(Module& m, const Tensor<float>& x, GradCheckOptions opt = {}) {
  const auto rep = gradcheck(m, x, opt);
  INFO(rep.summary());
  REQUIRE(rep.ok);
  REQUIRE(rep.checked > 0);
}
/// Values whose magnitude is at least `gap` and pairwise distinct, so ReLU and
/// max-pool have no kink within the finite-difference step.
Tensor<float> away_from_kinks(const Shape& s, Rng& rng, float gap = 0.05f) {
  Tensor<float> t(s);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    const float mag = gap + static_cast<float>(i) / static_cast<float>(t.numel());
    t[i] = rng.uniform() < 0.5 ? -mag : mag;
  }
  rng.shuffle(t.flat());
  return t;
}
}  // namespace

TEST_CASE("Conv2d gradients", "[nn][gradcheck]") {
  Rng rng(1);
  init::manual_seed(1);
  SECTION("3x3 pad 1 stride 1 with bias") {
    Conv2d conv(3, 4, 3, 1, 1, true);
    require_gradcheck(conv, random_tensor(Shape{2, 5, 6, 3}, rng));
  }
  SECTION("3x3 stride 2 no padding, no bias") {
    Conv2d conv(2, 3, 3, 2, 0, false);
    require_gradcheck(conv, random_tensor(Shape{2, 7, 7, 2}, rng));
  }
  SECTION("1x1 stride 1 (pointwise GEMM path)") {
    Conv2d conv(5, 3, 1, 1, 0, true);
    require_gradcheck(conv, random_tensor(Shape{2, 3, 4, 5}, rng));
  }
  SECTION("1x1 stride 2 (downsample)") {
    Conv2d conv(4, 6, 1, 2, 0, false);
    require_gradcheck(conv, random_tensor(Shape{1, 5, 5, 4}, rng));
  }
  SECTION("7x7 stride 2 pad 3 (ResNet stem)") {
    Conv2d conv(3, 2, 7, 2, 3, false);
    require_gradcheck(conv, random_tensor(Shape{1, 9, 8, 3}, rng));
  }
}

// in_channels % 16 == 0: the implicit-im2col path where AVX2 is compiled in
// (the input gradient of stride 1 as a full convolution with flipped weights).
TEST_CASE("Conv2d gradients, 16-channel inputs", "[nn][gradcheck]") {
  Rng rng(7);
  init::manual_seed(7);
  SECTION("3x3 pad 1 stride 1 with bias") {
    Conv2d conv(16, 3, 3, 1, 1, true);
    require_gradcheck(conv, random_tensor(Shape{2, 4, 5, 16}, rng));
  }
  SECTION("3x3 pad 1 stride 2") {
    Conv2d conv(16, 2, 3, 2, 1, false);
    require_gradcheck(conv, random_tensor(Shape{1, 5, 6, 16}, rng));
  }
  SECTION("5x5 pad 1 stride 1 (flipped-kernel padding 3)") {
    Conv2d conv(16, 2, 5, 1, 1, false);
    require_gradcheck(conv, random_tensor(Shape{1, 5, 6, 16}, rng));
  }
  SECTION("1x1 stride 1 and stride 2") {
    Conv2d conv1(32, 3, 1, 1, 0, true);
    require_gradcheck(conv1, random_tensor(Shape{1, 3, 4, 32}, rng));
    Conv2d conv2(16, 3, 1, 2, 0, false);
    require_gradcheck(conv2, random_tensor(Shape{1, 5, 5, 16}, rng));
  }
}

TEST_CASE("BatchNorm2d gradients in train and eval mode", "[nn][gradcheck]") {
  Rng rng(2);
  BatchNorm2d bn(3);
  bn.weight().copy_from(random_tensor(Shape{3}, rng, 0.5f, 1.5f));
  bn.bias().copy_from(random_tensor(Shape{3}, rng));
  const auto x = random_tensor(Shape{2, 3, 3, 3}, rng, -2.f, 2.f);
  SECTION("train") {
    require_gradcheck(bn, x);
  }
  SECTION("eval") {
    bn.running_mean().copy_from(random_tensor(Shape{3}, rng));
    bn.running_var().copy_from(random_tensor(Shape{3}, rng, 0.5f, 2.f));
    bn.eval();
    require_gradcheck(bn, x);
  }
}

TEST_CASE("ReLU, MaxPool2d, GlobalAvgPool2d, Linear, Flatten gradients", "[nn][gradcheck]") {
  Rng rng(3);
  init::manual_seed(3);
  SECTION("ReLU") {
    ReLU relu;
    require_gradcheck(relu, away_from_kinks(Shape{2, 3, 3, 4}, rng));
  }
  SECTION("MaxPool2d 2x2") {
    MaxPool2d pool(2);
    require_gradcheck(pool, away_from_kinks(Shape{2, 4, 6, 3}, rng));
  }
  SECTION("MaxPool2d 3x3 stride 2 pad 1") {
    MaxPool2d pool(3, 2, 1);
    require_gradcheck(pool, away_from_kinks(Shape{1, 7, 6, 2}, rng));
  }
  SECTION("GlobalAvgPool2d") {
    GlobalAvgPool2d gap;
    require_gradcheck(gap, random_tensor(Shape{2, 3, 2, 5}, rng));
  }
  SECTION("Linear") {
    Linear lin(6, 4);
    require_gradcheck(lin, random_tensor(Shape{3, 6}, rng));
  }
  SECTION("Linear without bias") {
    Linear lin(5, 2, false);
    require_gradcheck(lin, random_tensor(Shape{4, 5}, rng));
  }
  SECTION("Flatten + Linear") {
    Sequential seq;
    seq.emplace<Flatten>();
    seq.emplace<Linear>(12, 3);
    require_gradcheck(seq, random_tensor(Shape{2, 2, 2, 3}, rng));
  }
}

TEST_CASE("TemporalPool gradients, mean and mean_max_min", "[nn][gradcheck]") {
  Rng rng(6);
  for (const auto mode : {TemporalPoolMode::mean, TemporalPoolMode::mean_max_min}) {
    INFO(to_string(mode));
    TemporalPool pool(mode);
    // Distinct values: the max and min over T have no tie within the step.
    require_gradcheck(pool, away_from_kinks(Shape{2, 5, 3}, rng));
  }
}

TEST_CASE("BasicBlock gradients, with and without downsample", "[nn][gradcheck]") {
  Rng rng(4);
  init::manual_seed(4);
  GradCheckOptions opt;
  opt.max_elements = 12;
  SECTION("identity shortcut") {
    BasicBlock block(4, 4, 1);
    REQUIRE_FALSE(block.has_downsample());
    require_gradcheck(block, random_tensor(Shape{2, 4, 4, 4}, rng), opt);
  }
  SECTION("1x1 stride-2 downsample") {
    BasicBlock block(3, 5, 2);
    REQUIRE(block.has_downsample());
    require_gradcheck(block, random_tensor(Shape{2, 6, 5, 3}, rng), opt);
  }
}

TEST_CASE("A small full model passes the gradient check", "[nn][gradcheck][models]") {
  // Every layer type in one network: conv-BN-ReLU-maxpool, a BasicBlock with
  // downsample, global average pool, flatten and linear. (Full-size models
  // are pinned to PyTorch by the golden fixtures instead: in float, finite
  // differences through many ReLU/BN layers are too noisy to be a strict test.)
  Rng rng(5);
  init::manual_seed(5);
  Sequential net;
  net.emplace<Conv2d>(3, 4, 3, 1, 1, false);
  net.emplace<BatchNorm2d>(4);
  net.emplace<ReLU>();
  net.emplace<MaxPool2d>(2);
  net.emplace<BasicBlock>(4, 6, 2);
  net.emplace<GlobalAvgPool2d>();
  net.emplace<Flatten>();
  net.emplace<Linear>(6, 3);
  GradCheckOptions opt;
  opt.max_elements = 8;
  SECTION("train mode") {
    require_gradcheck(net, random_tensor(Shape{3, 8, 8, 3}, rng), opt);
  }
  SECTION("eval mode") {
    for (int i = 0; i < 5; ++i) (void)net.forward(random_tensor(Shape{3, 8, 8, 3}, rng));
    net.eval();
    require_gradcheck(net, random_tensor(Shape{3, 8, 8, 3}, rng), opt);
  }
}

TEST_CASE("The gradient check catches a wrong backward", "[nn][gradcheck]") {
  // A ReLU whose backward forgets the mask: the check must fail.
  struct BrokenReLU : ReLU {
    Tensor<float> g;
    TensorView<const float> backward_impl(TensorView<const float> dy) override {
      g = Tensor<float>(dy);
      return g;
    }
  } broken;
  Rng rng(6);
  const auto rep = gradcheck(broken, random_tensor(Shape{2, 3, 3, 2}, rng));
  CHECK_FALSE(rep.ok);
  CHECK_FALSE(rep.failures.empty());
}
