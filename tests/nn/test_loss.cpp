#include <catch2/catch.hpp>
#include <cmath>

#include "compressor/nn/loss.hpp"

using namespace compressor;
using namespace compressor::nn;

TEST_CASE("Cross-entropy matches the formula, with and without label smoothing", "[nn][loss]") {
  auto logits = Tensor<float>::from(Shape{2, 3}, {1.f, 2.f, 3.f, 0.5f, -1.f, 0.f});
  auto labels = Tensor<std::int32_t>::from(Shape{2}, {2, 0});
  auto lse = [](double a, double b, double c) {
    return std::log(std::exp(a) + std::exp(b) + std::exp(c));
  };
  const double l0 = lse(1, 2, 3), l1 = lse(0.5, -1, 0);
  SoftmaxCrossEntropy ce;
  CHECK(ce.forward(logits, labels) == Approx(((l0 - 3) + (l1 - 0.5)) / 2));
  const auto g = ce.backward();
  CHECK(g(0, 2) == Approx((std::exp(3 - l0) - 1) / 2));
  CHECK(g(1, 1) == Approx(std::exp(-1 - l1) / 2));
  SoftmaxCrossEntropy smooth(0.1f);
  const double s0 = 0.9 * (l0 - 3) + 0.1 * ((l0 - 1) + (l0 - 2) + (l0 - 3)) / 3;
  const double s1 = 0.9 * (l1 - 0.5) + 0.1 * ((l1 - 0.5) + (l1 + 1) + l1) / 3;
  CHECK(smooth.forward(logits, labels) == Approx((s0 + s1) / 2));
  CHECK(smooth.backward()(0, 0) == Approx((std::exp(1 - l0) - 0.1 / 3) / 2));
}

TEST_CASE("Cross-entropy rejects bad labels and shapes", "[nn][loss]") {
  SoftmaxCrossEntropy ce;
  Tensor<float> logits(Shape{2, 3});
  CHECK_THROWS_AS(ce.forward(logits, Tensor<std::int32_t>::from(Shape{2}, {0, 3})), ValueError);
  CHECK_THROWS_AS(ce.forward(logits, Tensor<std::int32_t>::from(Shape{2}, {-1, 0})), ValueError);
  CHECK_THROWS_AS(ce.forward(logits, Tensor<std::int32_t>(Shape{3})), ShapeError);
  CHECK_THROWS_AS(SoftmaxCrossEntropy(1.5f), ValueError);
}

TEST_CASE("MSE and L1 losses and gradients", "[nn][loss]") {
  auto p = Tensor<float>::from(Shape{3, 1}, {1.f, 2.f, 4.f});
  auto t = Tensor<float>::from(Shape{3, 1}, {0.f, 2.f, 6.f});
  MSELoss mse;
  CHECK(mse.forward(p, t) == Approx((1.0 + 0 + 4) / 3));
  CHECK(mse.backward()[0] == Approx(2.0 / 3));
  CHECK(mse.backward()[2] == Approx(-4.0 / 3));
  L1Loss l1;
  CHECK(l1.forward(p, t) == Approx(1.0));
  CHECK(l1.backward()[0] == Approx(1.0 / 3));
  CHECK(l1.backward()[1] == 0.f);
  CHECK(l1.backward()[2] == Approx(-1.0 / 3));
  CHECK_THROWS_AS(mse.forward(p, Tensor<float>(Shape{3})), ShapeError);
}
