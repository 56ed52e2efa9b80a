#include <catch2/catch.hpp>
#include <cmath>
#include <iterator>
#include <limits>
#include <set>

#include "compressor/models.hpp"
#include "support/test_util.hpp"

using namespace compressor;
using namespace compressor::models;
using compressor::nn::TemporalPool;
using compressor::nn::TemporalPoolMode;

TEST_CASE("CifarCnn has the specified topology and parameter count", "[models]") {
  CifarCnn net;
  CHECK(net.num_parameters() == 1557066);
  const auto params = net.named_parameters();
  CHECK(params.front().name == "features.0.weight");
  CHECK(params.front().value->shape() == Shape{64, 3, 3, 3});
  CHECK(params.back().name == "fc.bias");
  Tensor<float> x(Shape{2, 32, 32, 3});
  CHECK(net.forward(x).shape() == Shape{2, 10});
}

TEST_CASE("ResNet18 matches torchvision's names and parameter count", "[models]") {
  ResNet18 net;                             // 1000 classes
  CHECK(net.num_parameters() == 11689512);  // torchvision.models.resnet18()
  std::set<std::string> names;
  for (const auto& p : net.named_parameters()) names.insert(p.name);
  for (const auto& b : net.named_buffers()) names.insert(b.name);
  for (const char* n :
       {"conv1.weight", "bn1.running_mean", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
        "layer1.1.bn2.bias", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
        "layer4.1.conv2.weight", "fc.weight", "fc.bias"})
    CHECK(names.count(n) == 1);
  CHECK(names.size() == 62 + 60);  // 62 parameters + 60 BN buffers, as in PyTorch's state_dict
}

TEST_CASE("ResNet18 takes any input size and a width multiplier", "[models]") {
  ResNetOptions o;
  o.width = 0.25;
  o.num_classes = 5;
  ResNet18 net(o);
  net.eval();
  for (const auto hw : {32, 45, 64})
    CHECK(net.forward(Tensor<float>(Shape{1, hw, hw, 3})).shape() == Shape{1, 5});
  CHECK(net.num_features() == 128);
}

TEST_CASE("EfRegressor maps clips to one value with prefixed names", "[models]") {
  for (const auto pool : {TemporalPoolMode::mean, TemporalPoolMode::mean_max_min}) {
    INFO(to_string(pool));
    EfRegressorOptions o;
    o.width = 0.25;
    o.pool = pool;
    EfRegressor net(o);
    const auto params = net.named_parameters();
    CHECK(params.front().name == "backbone.conv1.weight");
    CHECK(params[params.size() - 2].name == "head.weight");
    CHECK(params[params.size() - 2].value->shape() ==
          Shape{1, pool == TemporalPoolMode::mean ? 128 : 3 * 128});
    CHECK(params.back().name == "head.bias");
    net.set_output_bias(55.f);
    net.eval();
    Rng rng(3);
    const auto clips = compressor::testing::random_tensor(Shape{2, 3, 32, 32, 3}, rng);
    const Tensor<float> y(net.forward(clips));
    REQUIRE(y.shape() == Shape{2, 1});
    // Pooling over T: a clip of three copies of one frame gives that frame's
    // output (its mean, max and min over T are the frame's features).
    Tensor<float> same(Shape{1, 3, 32, 32, 3});
    for (int t = 0; t < 3; ++t) same.slice(0).slice(t).copy_from(clips.slice(0).slice(0));
    const float y_same = net.forward(same)[0];
    Tensor<float> single(Shape{1, 1, 32, 32, 3});
    single.slice(0).slice(0).copy_from(clips.slice(0).slice(0));
    CHECK(net.forward(single)[0] == Approx(y_same).epsilon(1e-5));
    CHECK_THROWS_AS(net.forward(Tensor<float>(Shape{2, 32, 32, 3})), ShapeError);
  }
}

TEST_CASE("TemporalPool: mean, max and min over T; NaN propagates; shapes checked", "[models]") {
  // (N=1, T=3, F=2): feature 0 = 1, 5, -2; feature 1 = 4, 4, 0 (a tie at the max).
  Tensor<float> x(Shape{1, 3, 2});
  const float v[] = {1, 4, 5, 4, -2, 0};
  std::copy(std::begin(v), std::end(v), x.data());
  TemporalPool mean(TemporalPoolMode::mean);
  const Tensor<float> ym(mean.forward(x));
  REQUIRE(ym.shape() == Shape{1, 2});
  CHECK(ym[0] == Approx(4.f / 3));
  CHECK(ym[1] == Approx(8.f / 3));
  TemporalPool mmm(TemporalPoolMode::mean_max_min);
  const Tensor<float> y(mmm.forward(x));
  REQUIRE(y.shape() == Shape{1, 6});
  CHECK(y[2] == 5.f);
  CHECK(y[3] == 4.f);
  CHECK(y[4] == -2.f);
  CHECK(y[5] == 0.f);
  // The gradient of a max goes to the frame that holds it (the first on a tie).
  Tensor<float> dy(Shape{1, 6});
  dy.fill(0.f);
  dy[3] = 1.f;  // d/d max of feature 1
  const Tensor<float> dx(mmm.backward(dy));
  CHECK(dx[1] == 1.f);
  CHECK(dx[3] == 0.f);
  CHECK(dx[5] == 0.f);
  x[2] = std::numeric_limits<float>::quiet_NaN();
  const Tensor<float> yn(mmm.forward(x));
  CHECK(std::isnan(yn[0]));
  CHECK(std::isnan(yn[2]));
  CHECK(std::isnan(yn[4]));
  CHECK_FALSE(std::isnan(yn[3]));
  CHECK_THROWS_AS(mmm.forward(Tensor<float>(Shape{2, 3})), ShapeError);
  CHECK_THROWS_AS(mmm.forward(Tensor<float>(Shape{2, 0, 3})), ShapeError);
}
