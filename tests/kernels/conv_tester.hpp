// ConvTester: a fluent description of one int8 NHWC convolution case, run on
// every ISA path this CPU supports and checked bit for bit against the
// scalar reference (the sparse conv on the same weights too), and (on the path in use) against a
// plain float convolution of the dequantized tensors within the rounding rule, e.g.
//   ConvTester().input(1, 28, 28, 64).output_channels(64).kernel(3).pad(1).test_exact();
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/kernels/conv_u8s8.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/pool.hpp"
#include "compressor/kernels/ref/conv_u8s8.hpp"
#include "compressor/kernels/sparse_conv_u8s8.hpp"

namespace compressor::testing {

class ConvTester {
 public:
  ConvTester& input(std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t c) {
    n_ = n, h_ = h, w_ = w, c_ = c;
    return *this;
  }
  ConvTester& output_channels(std::int64_t o) {
    o_ = o;
    return *this;
  }
  ConvTester& kernel(std::int64_t k) {
    k_ = k;
    return *this;
  }
  ConvTester& stride(std::int64_t s) {
    s_ = s;
    return *this;
  }
  ConvTester& pad(std::int64_t p) {
    p_ = p;
    return *this;
  }
  ConvTester& input_zero_point(std::int32_t z) {
    zx_ = z;
    return *this;
  }
  ConvTester& output_zero_point(std::int32_t z) {
    zo_ = z;
    return *this;
  }
  ConvTester& relu(bool r = true) {
    relu_ = r;
    return *this;
  }
  ConvTester& seed(std::uint64_t s) {
    seed_ = s;
    return *this;
  }
  ConvTester& extreme(bool e = true) {
    extreme_ = e;
    return *this;
  }
  /// The weight grid: weights are drawn from it and packed on it.
  ConvTester& grid(kernels::WeightGrid g) {
    grid_ = g;
    return *this;
  }
  /// The fraction of weights set to zero (each with this probability).
  ConvTester& sparsity(double s) {
    sparsity_ = s;
    return *this;
  }

  /// uint8 and float outputs equal the scalar reference bit for bit on every path.
  void test_exact() const {
    Case c = make();
    const Shape ys = c.conv.output_shape(c.x.shape());
    const auto& g = c.conv.geometry();
    std::vector<float> mult(static_cast<std::size_t>(o_)), scale(mult.size());
    for (std::size_t o = 0; o < mult.size(); ++o) {
      mult[o] = kernels::requant_multiplier(c.in.scale, c.ws[o], c.out.scale);
      scale[o] = kernels::accumulator_scale(c.in.scale, c.ws[o]);
    }
    Tensor<std::uint8_t> want(ys);
    kernels::RequantOut rq{c.bias.data(), mult.data(), zo_, relu_ ? zo_ : 0, 255};
    kernels::ref::conv_u8s8(g, n_, h_, w_, c.x.data(), zx_, c.w.data(), rq, want.data());
    Tensor<float> wantf(ys);
    kernels::DequantOut dq{c.bias.data(), scale.data(), relu_};
    kernels::ref::conv_u8s8(g, n_, h_, w_, c.x.data(), zx_, c.w.data(), dq, wantf.data());
    for (kernels::Path p : kernels::supported_paths()) {
      kernels::ScopedKernelPath scope(p);
      kernels::ConvScratch scratch;
      Tensor<std::uint8_t> got(ys);
      c.conv.forward(c.x.view(), c.in, got.view(), c.out, relu_, scratch);
      expect_equal(got.flat(), want.flat(), p);
      Tensor<float> gotf(ys);
      c.conv.forward(c.x.view(), c.in, gotf.view(), relu_, scratch);
      expect_equal(gotf.flat(), wantf.flat(), p);
      // The sparse conv on the same weights.
      INFO("SparseConvU8S8, sparsity " << sparsity_);
      kernels::SparseConvScratch sparse_scratch;
      Tensor<std::uint8_t> sgot(ys);
      c.sparse.forward(c.x.view(), c.in, sgot.view(), c.out, relu_, sparse_scratch);
      expect_equal(sgot.flat(), want.flat(), p);
      Tensor<float> sgotf(ys);
      c.sparse.forward(c.x.view(), c.in, sgotf.view(), relu_, sparse_scratch);
      expect_equal(sgotf.flat(), wantf.flat(), p);
    }
  }

  /// forward_max_pool2 of the dense and of the sparse conv (ConvU8S8,
  /// SparseConvU8S8) equals the scalar reference conv followed by a 2x2
  /// max pool of stride 2 (written out here) bit for bit on every path, and
  /// forward() + max_pool_u8 on the same path.
  void test_max_pool2() const {
    Case c = make();
    const Shape ys = c.conv.output_shape(c.x.shape());
    std::vector<float> mult(static_cast<std::size_t>(o_));
    for (std::size_t o = 0; o < mult.size(); ++o)
      mult[o] = kernels::requant_multiplier(c.in.scale, c.ws[o], c.out.scale);
    Tensor<std::uint8_t> conv(ys);
    kernels::RequantOut rq{c.bias.data(), mult.data(), zo_, relu_ ? zo_ : 0, 255};
    kernels::ref::conv_u8s8(c.conv.geometry(), n_, h_, w_, c.x.data(), zx_, c.w.data(), rq,
                            conv.data());
    const Shape ps = c.conv.pooled_output_shape(c.x.shape());
    REQUIRE(ps == (Shape{ys[0], ys[1] / 2, ys[2] / 2, ys[3]}));
    Tensor<std::uint8_t> want(ps);
    for (std::int64_t n = 0; n < ps[0]; ++n)
      for (std::int64_t h = 0; h < ps[1]; ++h)
        for (std::int64_t w = 0; w < ps[2]; ++w)
          for (std::int64_t o = 0; o < o_; ++o)
            want(n, h, w, o) =
                std::max({conv(n, 2 * h, 2 * w, o), conv(n, 2 * h, 2 * w + 1, o),
                          conv(n, 2 * h + 1, 2 * w, o), conv(n, 2 * h + 1, 2 * w + 1, o)});
    for (kernels::Path p : kernels::supported_paths()) {
      kernels::ScopedKernelPath scope(p);
      kernels::ConvScratch scratch;
      Tensor<std::uint8_t> got(ps), unfused(ys), pooled(ps);
      c.conv.forward_max_pool2(c.x.view(), c.in, got.view(), c.out, relu_, scratch);
      expect_equal(got.flat(), want.flat(), p);
      c.conv.forward(c.x.view(), c.in, unfused.view(), c.out, relu_, scratch);
      kernels::max_pool_u8(unfused.view(), pooled.view(), 2, 2, 0);
      expect_equal(got.flat(), pooled.flat(), p);
      kernels::SparseConvScratch sparse_scratch;
      Tensor<std::uint8_t> sparse_got(ps);
      c.sparse.forward_max_pool2(c.x.view(), c.in, sparse_got.view(), c.out, relu_, sparse_scratch);
      INFO("SparseConvU8S8, sparsity " << sparsity_);
      expect_equal(sparse_got.flat(), want.flat(), p);
    }
  }

  /// Equals a float convolution of the dequantized tensors, requantized, within 1 LSB.
  void test_vs_float() const {
    Case c = make();
    kernels::ConvScratch scratch;
    const Shape ys = c.conv.output_shape(c.x.shape());
    Tensor<std::uint8_t> got(ys);
    c.conv.forward(c.x.view(), c.in, got.view(), c.out, relu_, scratch);
    const auto& g = c.conv.geometry();
    const std::int64_t OH = ys[1], OW = ys[2];
    // The dequantized tensors, once (NHWC input, OHWI weights: channels innermost).
    std::vector<double> xr(c.x.flat().size()), wr(c.w.flat().size());
    for (std::size_t i = 0; i < xr.size(); ++i)
      xr[i] = kernels::dequantize(c.x.flat()[i], c.in.scale, zx_);
    const auto per_out = static_cast<std::size_t>(g.kh * g.kw * c_);
    for (std::size_t i = 0; i < wr.size(); ++i) wr[i] = double(c.ws[i / per_out]) * c.w.flat()[i];
    long long worst = 0;
    for (std::int64_t n = 0; n < n_; ++n)
      for (std::int64_t oh = 0; oh < OH; ++oh)
        for (std::int64_t ow = 0; ow < OW; ++ow)
          for (std::int64_t o = 0; o < o_; ++o) {
            const auto os = static_cast<std::size_t>(o);
            double y = c.bias[os] * double(c.in.scale) * c.ws[os];
            for (std::int64_t kh = 0; kh < g.kh; ++kh)
              for (std::int64_t kw = 0; kw < g.kw; ++kw) {
                const std::int64_t ih = oh * s_ - p_ + kh, iw = ow * s_ - p_ + kw;
                if (ih < 0 || ih >= h_ || iw < 0 || iw >= w_) continue;  // real 0
                const double* xp = xr.data() + ((n * h_ + ih) * w_ + iw) * c_;
                const double* wp = wr.data() + ((o * g.kh + kh) * g.kw + kw) * c_;
                for (std::int64_t ci = 0; ci < c_; ++ci) y += xp[ci] * wp[ci];
              }
            if (relu_) y = std::max(y, 0.0);
            const double q = std::clamp(std::nearbyint(y / c.out.scale) + zo_, 0.0, 255.0);
            worst = std::max(worst, std::llabs(static_cast<long long>(q) - got(n, oh, ow, o)));
          }
    INFO("conv " << n_ << "x" << h_ << "x" << w_ << "x" << c_ << " -> " << o_ << " k" << k_ << " s"
                 << s_ << " p" << p_);
    CHECK(worst <= 1);
  }

 private:
  struct Case {
    Tensor<std::uint8_t> x;
    Tensor<std::int8_t> w;
    std::vector<float> ws;
    std::vector<std::int32_t> bias;
    kernels::QuantParams in, out;
    kernels::ConvU8S8 conv;
    kernels::SparseConvU8S8 sparse;  // the same weights, as their nonzeros
  };

  Case make() const {
    Rng rng(seed_);
    const std::int32_t wmin = kernels::weight_min(grid_), wmax = kernels::weight_max(grid_);
    Case c;
    c.x = Tensor<std::uint8_t>(Shape{n_, h_, w_, c_});
    for (auto& v : c.x.flat())
      v = static_cast<std::uint8_t>(extreme_ ? (rng.below(2) ? 255 : 0) : rng.below(256));
    c.w = Tensor<std::int8_t>(Shape{o_, k_, k_, c_});
    const auto span = static_cast<std::uint64_t>(wmax - wmin + 1);
    for (auto& v : c.w.flat()) {
      v = static_cast<std::int8_t>(extreme_ ? (rng.below(2) ? wmax : wmin)
                                            : wmin + static_cast<int>(rng.below(span)));
      if (sparsity_ > 0 && rng.uniform() < sparsity_) v = 0;
    }
    c.in = {static_cast<float>(rng.uniform(0.01, 0.05)), zx_};
    for (std::int64_t o = 0; o < o_; ++o) {
      c.ws.push_back(static_cast<float>(rng.uniform(0.002, 0.02)));
      c.bias.push_back(static_cast<std::int32_t>(rng.below(20001)) - 10000);
    }
    // An output scale that spreads typical outputs over ~60 LSB.
    const double typical = 74.0 * 37.0 * std::sqrt(double(k_ * k_ * c_)) * c.in.scale * 0.011;
    c.out = {static_cast<float>(typical / 60.0), zo_};
    c.conv = kernels::ConvU8S8(c.w.view(), c.ws, c.bias, s_, p_, grid_);
    c.sparse = kernels::SparseConvU8S8(c.w.view(), c.ws, c.bias, s_, p_, grid_);
    return c;
  }

  template <class T>
  void expect_equal(std::span<const T> got, std::span<const T> want, kernels::Path p) const {
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      if (got[i] != want[i] && bad++ == 0) first = i;
    INFO("path " << kernels::path_name(p) << ", grid " << kernels::weight_grid_name(grid_)
                 << ", conv " << n_ << "x" << h_ << "x" << w_ << "x" << c_ << " -> " << o_ << " k"
                 << k_ << " s" << s_ << " p" << p_ << ": first mismatch at flat index " << first
                 << ": " << +got[first] << " vs " << +want[first]);
    CHECK(bad == 0);
  }
  template <class T>
  void expect_equal(std::span<T> got, std::span<T> want, kernels::Path p) const {
    expect_equal(std::span<const T>(got), std::span<const T>(want), p);
  }

  std::int64_t n_ = 1, h_ = 5, w_ = 5, c_ = 3, o_ = 4, k_ = 3, s_ = 1, p_ = 1;
  std::int32_t zx_ = 3, zo_ = 120;
  bool relu_ = false, extreme_ = false;
  double sparsity_ = 0;
  kernels::WeightGrid grid_ = kernels::WeightGrid::narrow;
  std::uint64_t seed_ = 1;
};

}  // namespace compressor::testing
