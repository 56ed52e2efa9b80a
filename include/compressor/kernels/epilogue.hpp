// What a u8s8 GEMM or conv does with its int32 accumulators, per output
// channel n: acc = sum_k (a - a_zero_point) * w + bias[n], then
//   Int32Out:    store acc                         (tests, partial sums)
//   RequantOut:  store requantize(acc, multiplier[n]) as uint8 (next layer)
//   DequantOut:  store float(acc) * scale[n], max(., 0) with ReLU (last layer)
// The scalar apply() of each is the reference the SIMD epilogues must match.
#pragma once

#include <cstdint>

#include "compressor/kernels/requant.hpp"

namespace compressor::kernels {

struct Int32Out {
  using Out = std::int32_t;
  const std::int32_t* bias = nullptr;  // N values or null
  std::int32_t apply(std::int32_t acc, std::int64_t) const { return acc; }
};

struct RequantOut {
  using Out = std::uint8_t;
  const std::int32_t* bias = nullptr;  // N values at scale s_in*s_w[n], or null
  const float* multiplier = nullptr;   // N values: requant_multiplier(s_in, s_w[n], s_out)
  std::int32_t zero_point = 0;         // output zero point
  std::int32_t qmin = 0;               // fused ReLU: qmin = zero_point
  std::int32_t qmax = 255;
  std::uint8_t apply(std::int32_t acc, std::int64_t n) const {
    return requantize(acc, multiplier[n], zero_point, qmin, qmax);
  }
};

struct DequantOut {
  using Out = float;
  const std::int32_t* bias = nullptr;  // N values or null
  const float* scale = nullptr;        // N values: accumulator_scale(s_in, s_w[n])
  bool relu = false;
  float apply(std::int32_t acc, std::int64_t n) const {
    const float y = static_cast<float>(acc) * scale[n];
    return relu ? (y > 0.f ? y : 0.f) : y;
  }
};

template <class E>
concept GemmEpilogue = requires(const E& e, std::int32_t acc, std::int64_t n) {
  { e.apply(acc, n) } -> std::same_as<typename E::Out>;
  { e.bias } -> std::convertible_to<const std::int32_t*>;
};

}  // namespace compressor::kernels
