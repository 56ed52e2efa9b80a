// GemmTester: a fluent description of one u8s8 GEMM case, run on every ISA
// path this CPU supports (kernels/isa.hpp) and compared bit for bit against
// the scalar reference, e.g.
//   GemmTester().m(5).n(17).k(33).lda(40).a_zero_point(255).extreme().test_requant();
//   GemmTester().m(9).n(40).k(300).grid(WeightGrid::full).test_s32();
#pragma once

#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/kernels/gemm.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/ref/gemm_u8s8.hpp"

namespace compressor::testing {

class GemmTester {
 public:
  GemmTester& m(std::int64_t v) {
    m_ = v;
    return *this;
  }
  GemmTester& n(std::int64_t v) {
    n_ = v;
    return *this;
  }
  GemmTester& k(std::int64_t v) {
    k_ = v;
    return *this;
  }
  GemmTester& lda(std::int64_t v) {
    lda_ = v;
    return *this;
  }
  GemmTester& ldc(std::int64_t v) {
    ldc_ = v;
    return *this;
  }
  GemmTester& a_zero_point(std::int32_t v) {
    za_ = v;
    return *this;
  }
  GemmTester& out_zero_point(std::int32_t v) {
    zo_ = v;
    return *this;
  }
  GemmTester& relu(bool v = true) {
    relu_ = v;
    return *this;
  }
  GemmTester& bias(bool v) {
    bias_ = v;
    return *this;
  }
  GemmTester& seed(std::uint64_t v) {
    seed_ = v;
    return *this;
  }
  /// The weight grid: weights are drawn from it and packed on it.
  GemmTester& grid(kernels::WeightGrid g) {
    grid_ = g;
    return *this;
  }
  /// Activations only 0/255 and weights only the ends of the grid.
  GemmTester& extreme(bool v = true) {
    extreme_ = v;
    return *this;
  }
  /// Scale of the requantization multipliers relative to the typical one
  /// (large values push most outputs into the clamp).
  GemmTester& multiplier_scale(float v) {
    mscale_ = v;
    return *this;
  }
  /// Every requantization multiplier / dequantization scale exactly v.
  GemmTester& multiplier(float v) {
    mfixed_ = v;
    fixed_ = true;
    return *this;
  }

  void test_s32() const {
    Case c = make();
    std::vector<std::int32_t> want(size_c());
    kernels::ref::gemm_u8s8(m_, n_, k_, c.a.data(), lda(), za_, c.w.data(), k_,
                            kernels::Int32Out{bias_ptr(c)}, want.data(), ldc());
    for (kernels::Path p : kernels::supported_paths()) {
      kernels::ScopedKernelPath scope(p);
      std::vector<std::int32_t> got(size_c());
      kernels::gemm_u8s8_s32(m_, c.a.data(), lda(), za_, c.packed, bias_ptr(c), got.data(), ldc());
      compare(got, want, p, c);
    }
  }

  void test_requant() const {
    Case c = make();
    kernels::RequantOut epi{bias_ptr(c), c.mult.data(), zo_, relu_ ? zo_ : 0, 255};
    std::vector<std::uint8_t> want(size_c(), 7);
    kernels::ref::gemm_u8s8(m_, n_, k_, c.a.data(), lda(), za_, c.w.data(), k_, epi, want.data(),
                            ldc());
    for (kernels::Path p : kernels::supported_paths()) {
      kernels::ScopedKernelPath scope(p);
      std::vector<std::uint8_t> got(size_c(), 7);
      kernels::gemm_u8s8_requant(m_, c.a.data(), lda(), za_, c.packed, epi, got.data(), ldc());
      compare(got, want, p, c);
    }
  }

  void test_dequant() const {
    Case c = make();
    kernels::DequantOut epi{bias_ptr(c), c.mult.data(), relu_};
    std::vector<float> want(size_c(), 7.f);
    kernels::ref::gemm_u8s8(m_, n_, k_, c.a.data(), lda(), za_, c.w.data(), k_, epi, want.data(),
                            ldc());
    for (kernels::Path p : kernels::supported_paths()) {
      kernels::ScopedKernelPath scope(p);
      std::vector<float> got(size_c(), 7.f);
      kernels::gemm_u8s8_dequant(m_, c.a.data(), lda(), za_, c.packed, epi, got.data(), ldc());
      compare(got, want, p, c);
    }
  }

 private:
  struct Case {
    std::vector<std::uint8_t> a;
    std::vector<std::int8_t> w;
    std::vector<std::int32_t> bias;
    std::vector<float> mult;
    kernels::PackedWeightsU8S8 packed;
  };

  std::int64_t lda() const { return lda_ ? lda_ : k_; }
  std::int64_t ldc() const { return ldc_ ? ldc_ : n_; }
  std::size_t size_c() const { return static_cast<std::size_t>((m_ - 1) * ldc() + n_); }
  const std::int32_t* bias_ptr(const Case& c) const { return bias_ ? c.bias.data() : nullptr; }

  Case make() const {
    Rng rng(seed_);
    const std::int32_t wmin = kernels::weight_min(grid_), wmax = kernels::weight_max(grid_);
    Case c;
    // Only M-1 full strides plus one row: reading past K would be caught by ASan.
    c.a.resize(static_cast<std::size_t>((m_ - 1) * lda() + k_));
    for (auto& v : c.a)
      v = static_cast<std::uint8_t>(extreme_ ? (rng.below(2) ? 255 : 0) : rng.below(256));
    c.w.resize(static_cast<std::size_t>(n_ * k_));
    const auto span = static_cast<std::uint64_t>(wmax - wmin + 1);
    for (auto& v : c.w)
      v = static_cast<std::int8_t>(extreme_ ? (rng.below(2) ? wmax : wmin)
                                            : wmin + static_cast<int>(rng.below(span)));
    c.bias.resize(static_cast<std::size_t>(n_));
    for (auto& v : c.bias) v = static_cast<std::int32_t>(rng.below(200001)) - 100000;
    // Typical |acc| ~ sqrt(K) * 74 * 37: aim outputs at a spread of ~60 LSB.
    const double typical = 60.0 / (2738.0 * std::sqrt(static_cast<double>(k_)));
    c.mult.resize(static_cast<std::size_t>(n_));
    for (auto& v : c.mult)
      v = fixed_ ? mfixed_ : static_cast<float>(typical * mscale_ * rng.uniform(0.25, 2.0));
    c.packed = kernels::PackedWeightsU8S8(c.w.data(), n_, k_, k_, grid_);
    return c;
  }

  /// Bit for bit (NaN equals NaN, -0 differs from +0).
  template <class T>
  static bool same(T a, T b) {
    if constexpr (std::is_floating_point_v<T>)
      return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
    else
      return a == b;
  }

  template <class T>
  void compare(const std::vector<T>& got, const std::vector<T>& want, kernels::Path p,
               const Case& c) const {
    std::int64_t bad = 0;
    const auto kernel = kernels::gemm_kernel_name(kernels::gemm_kernel(p, c.packed));
    for (std::int64_t i = 0; i < m_; ++i)
      for (std::int64_t j = 0; j < n_; ++j) {
        const auto idx = static_cast<std::size_t>(i * ldc() + j);
        if (!same(got[idx], want[idx]) && bad++ < 3) {
          INFO("path " << kernels::path_name(p) << " (" << kernel << "), grid "
                       << kernels::weight_grid_name(grid_) << ": M=" << m_ << " N=" << n_
                       << " K=" << k_ << " lda=" << lda() << " ldc=" << ldc() << " za=" << za_
                       << " seed=" << seed_ << " at (" << i << ", " << j << ")");
          CHECK(+got[idx] == +want[idx]);
        }
      }
    INFO("path " << kernels::path_name(p) << " (" << kernel << "), grid "
                 << kernels::weight_grid_name(grid_) << ": M=" << m_ << " N=" << n_ << " K=" << k_
                 << " mismatches");
    REQUIRE(bad == 0);
  }

  std::int64_t m_ = 1, n_ = 1, k_ = 1, lda_ = 0, ldc_ = 0;
  std::int32_t za_ = 128, zo_ = 100;
  bool relu_ = false, bias_ = true, extreme_ = false;
  float mscale_ = 1.f, mfixed_ = 0.f;
  bool fixed_ = false;
  kernels::WeightGrid grid_ = kernels::WeightGrid::narrow;
  std::uint64_t seed_ = 1;
};

}  // namespace compressor::testing
