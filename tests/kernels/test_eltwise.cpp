#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/kernels/eltwise.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/pool.hpp"

using namespace compressor;
namespace k = compressor::kernels;

namespace {
/// Runs the rest of a test case once per supported ISA path (a Catch2
/// generator: each path is its own run, named in the failure messages).
#define EACH_PATH()                                                \
  const k::Path path = GENERATE(from_range(k::supported_paths())); \
  const k::ScopedKernelPath path_scope(path);                      \
  INFO("path " << k::path_name(path))

std::vector<std::int64_t> lengths() {
  std::vector<std::int64_t> s;
  for (std::int64_t i = 1; i <= 17; ++i) s.push_back(i);
  for (int j = 5; j <= 12; ++j)
    for (std::int64_t d : {-1, 0, 1}) s.push_back((std::int64_t{1} << j) + d);
  s.push_back(100003);  // several threads' worth
  return s;
}

Tensor<std::uint8_t> random_u8(const Shape& s, Rng& rng, bool extreme = false) {
  Tensor<std::uint8_t> t(s);
  for (auto& v : t.flat())
    v = static_cast<std::uint8_t>(extreme ? (rng.below(2) ? 255 : 0) : rng.below(256));
  return t;
}

template <class T>
void check_equal(const Tensor<T>& got, const Tensor<T>& want) {
  std::int64_t bad = 0, first = -1;
  for (std::int64_t i = 0; i < got.numel(); ++i) {
    const bool same = std::isnan(double(got[i])) ? std::isnan(double(want[i])) : got[i] == want[i];
    if (!same && bad++ == 0) first = i;
  }
  INFO("shape " << got.shape().str() << ", first mismatch at " << first);
  CHECK(bad == 0);
}
}  // namespace

TEST_CASE("quantize_f32_u8 equals the reference, ties and specials included",
          "[kernels][eltwise]") {
  EACH_PATH();
  Rng rng(7);
  for (auto n : lengths())
    for (std::int32_t zp : {0, 128, 255}) {
      const k::QuantParams q{0.25f, zp};
      Tensor<float> x(Shape{n});
      for (std::int64_t i = 0; i < n; ++i) {
        switch (rng.below(6)) {
          case 0:
            x[i] = 0.125f * static_cast<float>(static_cast<int>(rng.below(4000)) - 2000);
            break;  // ties
          case 1:
            x[i] = static_cast<float>(rng.uniform(-1e6, 1e6));
            break;
          case 2:
            x[i] = (rng.below(2) ? 1 : -1) * std::numeric_limits<float>::infinity();
            break;
          case 3:
            x[i] = std::nanf("");
            break;
          default:
            x[i] = static_cast<float>(rng.uniform(-40, 40));
            break;
        }
      }
      Tensor<std::uint8_t> got(x.shape()), want(x.shape());
      k::quantize_f32_u8(x.view(), q, got.view());
      k::ref::quantize(n, x.data(), q, want.data());
      check_equal(got, want);
    }
}

TEST_CASE("dequantize_u8_f32 equals the reference", "[kernels][eltwise]") {
  EACH_PATH();
  Rng rng(8);
  for (auto n : lengths())
    for (std::int32_t zp : {0, 77, 255}) {
      auto x = random_u8(Shape{n}, rng);
      Tensor<float> got(x.shape()), want(x.shape());
      k::dequantize_u8_f32(x.view(), {0.0173f, zp}, got.view());
      k::ref::dequantize(n, x.data(), {0.0173f, zp}, want.data());
      check_equal(got, want);
    }
}

TEST_CASE("add_u8_requant equals the reference, with and without ReLU", "[kernels][eltwise]") {
  EACH_PATH();
  Rng rng(9);
  for (auto n : lengths())
    for (bool extreme : {false, true})
      for (bool relu : {false, true}) {
        auto a = random_u8(Shape{n}, rng, extreme);
        auto b = random_u8(Shape{n}, rng, extreme);
        const k::QuantParams qa{0.031f, extreme ? 0 : 100}, qb{0.017f, extreme ? 255 : 3};
        const k::QuantParams qy{0.045f, relu ? 0 : 128};
        Tensor<std::uint8_t> got(a.shape()), want(a.shape());
        k::add_u8_requant(a.view(), qa, b.view(), qb, got.view(), qy, relu);
        k::ref::add(n, a.data(), qa, b.data(), qb, want.data(), qy, relu);
        check_equal(got, want);
      }
  // Against real arithmetic: within 1 LSB of round((real a + real b) / s_y).
  auto a = random_u8(Shape{4096}, rng), b = random_u8(Shape{4096}, rng);
  Tensor<std::uint8_t> y(a.shape());
  const k::QuantParams qa{0.05f, 20}, qb{0.02f, 200}, qy{0.07f, 90};
  k::add_u8_requant(a.view(), qa, b.view(), qb, y.view(), qy, false);
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double real = 0.05 * (a[i] - 20) + 0.02 * (b[i] - 200);
    const double q = std::clamp(std::nearbyint(real / 0.07) + 90, 0.0, 255.0);
    REQUIRE(std::abs(q - y[i]) <= 1);
  }
}

TEST_CASE("eltwise kernels reject mismatched shapes naming them", "[kernels][eltwise]") {
  Tensor<std::uint8_t> a(Shape{2, 3}), b(Shape{3, 2}), y(Shape{2, 3});
  CHECK_THROWS_WITH(k::add_u8_requant(a.view(), {1, 0}, b.view(), {1, 0}, y.view(), {1, 0}, false),
                    Catch::Contains("(3, 2)") && Catch::Contains("(2, 3)"));
  Tensor<float> f(Shape{5});
  CHECK_THROWS_AS(k::quantize_f32_u8(f.view(), {1, 0}, y.view()), ShapeError);
  CHECK_THROWS_AS(k::quantize_f32_u8(f.view(), {0.f, 0}, Tensor<std::uint8_t>(Shape{5}).view()),
                  ValueError);
}

TEST_CASE("max_pool_u8 equals the reference", "[kernels][pool]") {
  EACH_PATH();
  Rng rng(10);
  for (std::int64_t c : {1, 3, 7, 8, 12, 16, 17, 31, 32, 33, 45, 64, 100})
    for (auto [kk, s, p] : {std::array<std::int64_t, 3>{2, 2, 0},
                            {3, 2, 1},
                            {3, 1, 1},
                            {2, 1, 0},
                            {3, 3, 0},
                            {9, 1, 4}})  // 9 x 9: 81 taps, more than one batch of 64
      for (bool extreme : {false, true}) {
        auto x = random_u8(Shape{2, 9, 7, c}, rng, extreme);
        Tensor<std::uint8_t> got(k::max_pool_output_shape(x.shape(), kk, s, p));
        Tensor<std::uint8_t> want(got.shape());
        k::max_pool_u8(x.view(), got.view(), kk, s, p);
        k::ref::max_pool(2, 9, 7, c, x.data(), kk, s, p, want.data());
        check_equal(got, want);
      }
  Tensor<std::uint8_t> x(Shape{1, 4, 4, 8}), bad(Shape{1, 3, 2, 8});
  CHECK_THROWS_WITH(k::max_pool_u8(x.view(), bad.view(), 2, 2, 0), Catch::Contains("(1, 3, 2, 8)"));
}

TEST_CASE("global_avg_pool_u8 equals the reference", "[kernels][pool]") {
  EACH_PATH();
  Rng rng(11);
  for (std::int64_t hw : {1, 2, 3, 16, 49, 64})
    for (std::int64_t c : {1, 7, 8, 9, 64, 512})
      for (bool extreme : {false, true}) {
        auto x = random_u8(Shape{3, hw, 1, c}, rng, extreme);
        const k::QuantParams qx{0.04f, extreme ? 255 : 11}, qy{0.03f, extreme ? 0 : 5};
        Tensor<std::uint8_t> got(Shape{3, c}), want(Shape{3, c});
        k::global_avg_pool_u8(x.view(), qx, got.view(), qy);
        k::ref::global_avg_pool(3, hw, c, x.data(), qx, want.data(), qy);
        check_equal(got, want);
      }
  Tensor<std::uint8_t> x(Shape{2, 4, 4, 8}), bad(Shape{2, 4});
  CHECK_THROWS_AS(k::global_avg_pool_u8(x.view(), {1, 0}, bad.view(), {1, 0}), ShapeError);
}
