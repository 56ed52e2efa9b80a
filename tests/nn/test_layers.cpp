// Forward values of the layers against direct (naive) computations, modes,
// names and shape errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include "compressor/nn.hpp"
#include "support/test_util.hpp"

using namespace compressor;
using namespace compressor::nn;
using compressor::testing::max_rel_excess;
using compressor::testing::random_tensor;

namespace {
/// Direct convolution, NHWC x OHWI, as the definition reads.
Tensor<float> naive_conv(const Tensor<float>& x, const Tensor<float>& w, const Tensor<float>* b,
                         std::int64_t stride, std::int64_t pad) {
  const std::int64_t n = x.dim(0), h = x.dim(1), wd = x.dim(2), c = x.dim(3);
  const std::int64_t o = w.dim(0), k = w.dim(1);
  const std::int64_t oh = (h + 2 * pad - k) / stride + 1, ow = (wd + 2 * pad - k) / stride + 1;
  Tensor<float> y(Shape{n, oh, ow, o});
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t yy = 0; yy < oh; ++yy)
      for (std::int64_t xx = 0; xx < ow; ++xx)
        for (std::int64_t oc = 0; oc < o; ++oc) {
          double s = b ? (*b)[oc] : 0.0;
          for (std::int64_t ky = 0; ky < k; ++ky)
            for (std::int64_t kx = 0; kx < k; ++kx) {
              const std::int64_t iy = yy * stride - pad + ky, ix = xx * stride - pad + kx;
              if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
              for (std::int64_t ic = 0; ic < c; ++ic)
                s += double(x(i, iy, ix, ic)) * w(oc, ky, kx, ic);
            }
          y(i, yy, xx, oc) = static_cast<float>(s);
        }
  return y;
}
}  // namespace

TEST_CASE("Conv2d forward equals the direct convolution", "[nn][conv]") {
  Rng rng(11);
  struct Case {
    std::int64_t n, h, w, c, o, k, s, p;
    bool bias;
  };
  for (const Case& cs :
       {Case{2, 7, 6, 3, 5, 3, 1, 1, true}, Case{1, 9, 9, 4, 3, 3, 2, 1, false},
        Case{2, 5, 5, 6, 7, 1, 1, 0, true}, Case{1, 6, 7, 3, 4, 1, 2, 0, false},
        Case{1, 11, 10, 3, 2, 7, 2, 3, false}, Case{3, 4, 4, 2, 2, 3, 1, 0, true},
        // in_channels % 16 == 0: the implicit-im2col path (AVX2 builds).
        Case{2, 9, 7, 16, 21, 3, 1, 1, true}, Case{1, 9, 9, 32, 17, 3, 2, 1, false},
        Case{2, 6, 5, 48, 33, 1, 1, 0, true}, Case{1, 7, 8, 16, 16, 1, 2, 0, false},
        Case{1, 8, 8, 16, 5, 5, 1, 2, false}, Case{1, 6, 6, 16, 7, 3, 1, 0, false}}) {
    Conv2d conv(cs.c, cs.o, cs.k, cs.s, cs.p, cs.bias);
    const auto x = random_tensor(Shape{cs.n, cs.h, cs.w, cs.c}, rng);
    const Tensor<float> y(conv.forward(x));
    const auto ref = naive_conv(x, conv.weight(), cs.bias ? &conv.bias() : nullptr, cs.s, cs.p);
    INFO("k=" << cs.k << " s=" << cs.s << " p=" << cs.p);
    CHECK(max_rel_excess(y, ref, 1e-5, 1e-5) <= 1.0);
  }
}

/// The gradients of a direct convolution (double sums), for dy given.
void naive_conv_backward(const Tensor<float>& x, const Tensor<float>& w, const Tensor<float>& dy,
                         std::int64_t stride, std::int64_t pad, Tensor<float>& dx,
                         Tensor<float>& dw) {
  const std::int64_t n = x.dim(0), h = x.dim(1), wd = x.dim(2), c = x.dim(3);
  const std::int64_t o = w.dim(0), k = w.dim(1), oh = dy.dim(1), ow = dy.dim(2);
  std::vector<double> gx(static_cast<std::size_t>(x.numel())),
      gw(static_cast<std::size_t>(w.numel()));
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t yy = 0; yy < oh; ++yy)
      for (std::int64_t xx = 0; xx < ow; ++xx)
        for (std::int64_t oc = 0; oc < o; ++oc)
          for (std::int64_t ky = 0; ky < k; ++ky)
            for (std::int64_t kx = 0; kx < k; ++kx) {
              const std::int64_t iy = yy * stride - pad + ky, ix = xx * stride - pad + kx;
              if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
              for (std::int64_t ic = 0; ic < c; ++ic) {
                const double g = dy(i, yy, xx, oc);
                gx[static_cast<std::size_t>(((i * h + iy) * wd + ix) * c + ic)] +=
                    g * w(oc, ky, kx, ic);
                gw[static_cast<std::size_t>(((oc * k + ky) * k + kx) * c + ic)] +=
                    g * x(i, iy, ix, ic);
              }
            }
  dx = Tensor<float>(x.shape());
  dw = Tensor<float>(w.shape());
  for (std::int64_t i = 0; i < dx.numel(); ++i)
    dx[i] = static_cast<float>(gx[static_cast<std::size_t>(i)]);
  for (std::int64_t i = 0; i < dw.numel(); ++i)
    dw[i] = static_cast<float>(gw[static_cast<std::size_t>(i)]);
}

// Larger shapes than the gradient checks can afford, on every conv path
// (3 channels: explicit im2col forward for 3x3, implicit for the 7x7 stem,
// transposed weight gradient; multiples of 16: implicit im2col throughout).
TEST_CASE("Conv2d backward equals the direct convolution's gradients", "[nn][conv]") {
  Rng rng(12);
  struct Case {
    std::int64_t n, h, w, c, o, k, s, p;
  };
  for (const Case& cs : {Case{2, 12, 11, 3, 8, 3, 1, 1}, Case{2, 13, 12, 16, 24, 3, 1, 1},
                         Case{1, 14, 15, 32, 20, 3, 2, 1}, Case{2, 9, 9, 64, 16, 1, 2, 0},
                         Case{1, 10, 9, 16, 9, 5, 1, 2}, Case{3, 6, 7, 48, 40, 1, 1, 0},
                         Case{2, 21, 20, 3, 10, 7, 2, 3}}) {
    Conv2d conv(cs.c, cs.o, cs.k, cs.s, cs.p, false);
    const auto x = random_tensor(Shape{cs.n, cs.h, cs.w, cs.c}, rng);
    const Shape ys = conv.forward(x).shape();
    const auto dy = random_tensor(ys, rng);
    conv.zero_grad();
    const Tensor<float> dx(conv.backward(dy));
    Tensor<float> rdx, rdw;
    naive_conv_backward(x, conv.weight(), dy, cs.s, cs.p, rdx, rdw);
    INFO("c=" << cs.c << " o=" << cs.o << " k=" << cs.k << " s=" << cs.s << " p=" << cs.p);
    CHECK(max_rel_excess(dx, rdx, 1e-4, 1e-4) <= 1.0);
    CHECK(max_rel_excess(*conv.named_parameters().front().grad, rdw, 1e-4, 1e-4) <= 1.0);
  }
}

TEST_CASE("Conv2d reports shape mismatches naming the shapes", "[nn][conv]") {
  Conv2d conv(3, 8, 3, 1, 1);
  Tensor<float> bad(Shape{1, 8, 8, 4});
  try {
    (void)conv.forward(bad);
    FAIL("no exception");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("(1, 8, 8, 4)") != std::string::npos);
    CHECK(std::string(e.what()).find("3") != std::string::npos);
  }
  CHECK_THROWS_AS(conv.forward(Tensor<float>(Shape{8, 8, 3})), ShapeError);
  Conv2d big(3, 2, 7);
  CHECK_THROWS_AS(big.forward(Tensor<float>(Shape{1, 4, 4, 3})), ShapeError);
}

TEST_CASE("BatchNorm2d normalises with batch stats and tracks running stats", "[nn][bn]") {
  Rng rng(12);
  BatchNorm2d bn(4, 1e-5f, 0.1f);
  const auto x = random_tensor(Shape{3, 5, 5, 4}, rng, -3.f, 5.f);
  const Tensor<float> y(bn.forward(x));
  const std::int64_t rows = x.numel() / 4;
  for (std::int64_t c = 0; c < 4; ++c) {
    double m = 0, v = 0, mx = 0, vx = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      m += y[r * 4 + c];
      mx += x[r * 4 + c];
    }
    m /= rows;
    mx /= rows;
    for (std::int64_t r = 0; r < rows; ++r) {
      v += (y[r * 4 + c] - m) * (y[r * 4 + c] - m);
      vx += (x[r * 4 + c] - mx) * (x[r * 4 + c] - mx);
    }
    CHECK(m == Approx(0).margin(1e-5));
    CHECK(v / rows == Approx(1).epsilon(1e-3));
    CHECK(bn.running_mean()[c] == Approx(0.1 * mx).epsilon(1e-5));
    CHECK(bn.running_var()[c] == Approx(0.9 + 0.1 * vx / (rows - 1)).epsilon(1e-5));
  }
  auto buffers = bn.named_buffers();
  REQUIRE(buffers.size() == 3);
  CHECK(buffers[2].name == "num_batches_tracked");
  CHECK(buffers[2].as<std::int64_t>()[0] == 1);
  CHECK_THROWS_AS(buffers[2].as<float>(), ValueError);

  bn.eval();
  const Tensor<float> ye(bn.forward(x));
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const std::int64_t c = i % 4;
    CHECK(
        ye[i] ==
        Approx((x[i] - bn.running_mean()[c]) / std::sqrt(bn.running_var()[c] + 1e-5)).margin(1e-5));
  }
  CHECK(buffers[2].as<std::int64_t>()[0] == 1);  // eval does not count
  CHECK_THROWS_AS(bn.forward(Tensor<float>(Shape{2, 3, 3, 5})), ShapeError);
  bn.train();
  CHECK_THROWS_AS(bn.forward(Tensor<float>(Shape{1, 1, 1, 4})), ValueError);
}

namespace {
/// Stands in for k replicas that hold the same batch: the sum over replicas is k times the value.
struct IdenticalReplicas final : StatisticsReducer {
  explicit IdenticalReplicas(double k) : k(k) {}
  void sum(std::span<double> v) override {
    ++calls;
    for (double& x : v) x *= k;
  }
  double k;
  int calls = 0;
};
}  // namespace

TEST_CASE("BatchNorm2d with synchronised statistics over identical replicas", "[nn][bn]") {
  // k replicas of one batch have that batch's mean and biased variance, so
  // the output, the input gradient (each replica's share, in its own units)
  // and gamma's and beta's local gradients are the plain layer's; the running
  // variance's unbiased correction counts k times the values.
  Rng rng(31);
  const auto x = random_tensor(Shape{2, 3, 3, 5}, rng, -2.f, 3.f);
  const auto dy = random_tensor(Shape{2, 3, 3, 5}, rng, -1.f, 1.f);
  const auto gamma = random_tensor(Shape{5}, rng, 0.5f, 1.5f);
  const double rows = 2 * 3 * 3;
  for (const double k : {1.0, 3.0}) {
    CAPTURE(k);
    BatchNorm2d plain(5), synced(5);
    for (auto* bn : {&plain, &synced}) {
      bn->weight() = gamma;
      bn->set_input_grad(true);
    }
    auto reducer = std::make_shared<IdenticalReplicas>(k);
    synced.set_statistics_reducer(reducer);
    CHECK(synced.synchronized());
    CHECK_FALSE(plain.synchronized());
    const Tensor<float> y0(plain.forward(x)), y1(synced.forward(x));
    const Tensor<float> dx0(plain.backward(dy)), dx1(synced.backward(dy));
    CHECK(reducer->calls == 2);  // one reduction in forward, one in backward
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      if (k == 1) {  // a single replica: bit for bit
        REQUIRE(y1[i] == y0[i]);
        REQUIRE(dx1[i] == dx0[i]);
      } else {
        REQUIRE(y1[i] == Approx(y0[i]).epsilon(1e-6).margin(1e-6));
        REQUIRE(dx1[i] == Approx(dx0[i]).epsilon(1e-5).margin(1e-6));
      }
    }
    const auto g0 = plain.named_parameters(), g1 = synced.named_parameters();
    for (std::size_t p = 0; p < g0.size(); ++p)
      for (std::int64_t c = 0; c < 5; ++c) REQUIRE((*g1[p].grad)[c] == (*g0[p].grad)[c]);
    for (std::int64_t c = 0; c < 5; ++c) {
      CHECK(synced.running_mean()[c] == Approx(plain.running_mean()[c]).epsilon(1e-6));
      // running_var = 0.9 + 0.1 * var_biased * n / (n - 1), n = k * rows.
      const double var = (plain.running_var()[c] - 0.9) / 0.1 * (rows - 1) / rows;
      CHECK(synced.running_var()[c] ==
            Approx(0.9 + 0.1 * var * k * rows / (k * rows - 1)).epsilon(1e-5));
    }
    // Eval mode and frozen statistics reduce nothing.
    synced.eval();
    (void)synced.forward(x);
    (void)synced.backward(dy);
    synced.train();
    synced.freeze();
    (void)synced.forward(x);
    (void)synced.backward(dy);
    CHECK(reducer->calls == 2);
    // One value per channel on all replicas together is still too few.
    BatchNorm2d tiny(5);
    tiny.set_statistics_reducer(std::make_shared<IdenticalReplicas>(1.0));
    CHECK_THROWS_WITH(tiny.forward(Tensor<float>(Shape{1, 1, 1, 5})),
                      Catch::Contains("on all replicas together"));
  }
}

TEST_CASE("MaxPool2d and GlobalAvgPool2d forward", "[nn][pool]") {
  auto x = Tensor<float>::from(Shape{1, 2, 4, 1}, {1, 5, 2, 0, 3, 4, 8, 7});
  MaxPool2d pool(2);
  const Tensor<float> y(pool.forward(x));
  REQUIRE(y.shape() == Shape{1, 1, 2, 1});
  CHECK(y[0] == 5.f);
  CHECK(y[1] == 8.f);
  MaxPool2d padded(3, 2, 1);
  CHECK(padded.output_shape(Shape{1, 56, 56, 8}) == Shape{1, 28, 28, 8});
  GlobalAvgPool2d gap;
  const Tensor<float> g(gap.forward(x));
  REQUIRE(g.shape() == Shape{1, 1});
  CHECK(g[0] == Approx(30.0 / 8));
}

TEST_CASE("Module tree: names, visit, find, replace, zero_grad", "[nn][module]") {
  Sequential seq;
  seq.emplace<Conv2d>(3, 4, 3, 1, 1, false);
  seq.emplace<BatchNorm2d>(4);
  seq.emplace<ReLU>();
  auto params = seq.named_parameters();
  REQUIRE(params.size() == 3);
  CHECK(params[0].name == "0.weight");
  CHECK(params[0].layout == Layout::ohwi);
  CHECK(params[1].name == "1.weight");
  CHECK(params[2].name == "1.bias");
  std::vector<std::string> names;
  seq.visit([&](const std::string& n, Module& m) {
    names.push_back(n + ":" + std::string(m.type_name()));
  });
  CHECK(names == std::vector<std::string>{":Sequential", "0:Conv2d", "1:BatchNorm2d", "2:ReLU"});
  CHECK(seq.find("1") == &seq.child(1));
  CHECK(seq.find("7") == nullptr);
  seq.eval();
  auto old = seq.replace("2", std::make_unique<ReLU>());
  CHECK(old->type_name() == "ReLU");
  CHECK_FALSE(seq.child(2).is_training());
  CHECK_THROWS_AS(seq.replace("9", std::make_unique<ReLU>()), ValueError);
  params[0].grad->fill(3.f);
  seq.zero_grad();
  CHECK(params[0].grad->vector().cwiseAbs().maxCoeff() == 0.f);
}

TEST_CASE("Backward accumulates parameter gradients across calls", "[nn][module]") {
  Rng rng(13);
  Linear lin(3, 2);
  const auto x = random_tensor(Shape{4, 3}, rng);
  const auto dy = random_tensor(Shape{4, 2}, rng);
  (void)lin.forward(x);
  (void)lin.backward(dy);
  const Tensor<float> once(*lin.named_parameters()[0].grad);
  (void)lin.forward(x);
  (void)lin.backward(dy);
  const auto& twice = *lin.named_parameters()[0].grad;
  for (std::int64_t i = 0; i < once.numel(); ++i) CHECK(twice[i] == Approx(2 * once[i]));
}

TEST_CASE("ReLU and MaxPool2d propagate NaN as PyTorch does", "[nn]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto x = Tensor<float>::from(Shape{1, 2, 2, 1}, {1.f, nan, -2.f, 3.f});
  ReLU relu;
  const auto y = relu.forward(x);
  CHECK(std::isnan(y[1]));
  CHECK(y[2] == 0.f);
  MaxPool2d pool(2);
  CHECK(std::isnan(pool.forward(x)[0]));
}
