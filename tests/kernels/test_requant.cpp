#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "compressor/kernels/int8_traits.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/requant.hpp"

namespace k = compressor::kernels;

TEST_CASE("requantize rounds half to even, then adds the zero point", "[kernels][requant]") {
  CHECK(k::requantize(5, 0.5f, 0) == 2);    // 2.5 -> 2
  CHECK(k::requantize(7, 0.5f, 0) == 4);    // 3.5 -> 4
  CHECK(k::requantize(-5, 0.5f, 10) == 8);  // -2.5 -> -2, + 10
  CHECK(k::requantize(-7, 0.5f, 10) == 6);  // -3.5 -> -4, + 10
  CHECK(k::requantize(3, 0.5f, 0) == 2);    // 1.5 -> 2
  CHECK(k::requantize(1000, 1.f, 3) == 255);
  CHECK(k::requantize(-1000, 1.f, 3) == 0);
  CHECK(k::requantize(-4, 1.f, 3, 3) == 3);  // fused ReLU: qmin = zero point
  CHECK(k::requantize(std::numeric_limits<std::int32_t>::max(), 1e9f, 0) == 255);
  CHECK(k::requantize(std::numeric_limits<std::int32_t>::min(), 1e9f, 255) == 0);
}

TEST_CASE("quantize and dequantize follow the same rule", "[kernels][requant]") {
  const float s = 0.1f;
  const float inv = k::inverse_scale(s);
  CHECK(k::quantize(0.f, inv, 17) == 17);  // real 0 is exact
  CHECK(k::dequantize(17, s, 17) == 0.f);
  CHECK(k::quantize(0.25f, 4.f, 0) == 1);   // 1.0
  CHECK(k::quantize(0.625f, 4.f, 0) == 2);  // 2.5 -> 2
  CHECK(k::quantize(0.875f, 4.f, 0) == 4);  // 3.5 -> 4
  CHECK(k::quantize(1e30f, inv, 0) == 255);
  CHECK(k::quantize(-1e30f, inv, 0) == 0);
  CHECK(k::quantize(std::nanf(""), inv, 9) == 0);
  for (int q = 0; q < 256; ++q)
    CHECK(k::quantize(k::dequantize(static_cast<std::uint8_t>(q), s, 40), inv, 40) == q);
}

TEST_CASE("The narrow weight grid keeps vpmaddubsw pair sums in int16", "[kernels][requant]") {
  using T = k::Int8Traits;
  CHECK(T::kWeightMin == k::weight_min(k::WeightGrid::narrow));
  CHECK(T::kWeightMax == k::weight_max(k::WeightGrid::narrow));
  CHECK(k::weight_qmax(k::WeightGrid::full) == 127);
  CHECK(k::weight_min(k::WeightGrid::full) == -127);
  // The full grid would saturate vpmaddubsw: its kernels widen or use vpdpbusd.
  CHECK(2 * T::kActivationMax * k::weight_max(k::WeightGrid::full) > 32767);
  CHECK(2 * T::kActivationMax * T::kWeightMax <= 32767);
  CHECK(2 * T::kActivationMax * T::kWeightMin >= -32768);
  // ... and it is the widest such range.
  CHECK(2 * T::kActivationMax * (T::kWeightMax + 1) > 32767);
  CHECK(2 * T::kActivationMax * (T::kWeightMin - 1) < -32768);
  CHECK(T::kWeightQMax <= T::kWeightMax);
  CHECK(-T::kWeightQMax >= T::kWeightMin);
}
