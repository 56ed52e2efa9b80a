// What a u8s8 GEMM or conv does with its int32 accumulators, per output
// channel n: acc = sum_k (a - a_zero_point) * w + bias[n], then
//   Int32Out:    store acc                         (tests, partial sums)
//   RequantOut:  store requantize(acc, multiplier[n]) as uint8 (next layer)
//   DequantOut:  store float(acc) * scale[n], max(., 0) with ReLU (last layer)
//   RowMax4<E>:  E of the max over 4 rows (a conv fused with a 2x2 max pool)
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

/// Base applied to the max of each 4 consecutive GEMM rows: output row i of
/// channel n is Base(max(acc[4i][n], ..., acc[4i + 3][n]), n), so a GEMM of
/// M rows writes M / 4 (M, and the row ranges of every call, multiples of
/// 4). Each Base here is nondecreasing in the accumulator (RequantOut for a
/// multiplier >= 0, DequantOut for a scale >= 0, Int32Out), so the max
/// commutes with it: with the rows of each 2x2 window of a conv's output
/// together (ConvU8S8::forward_max_pool2) this is the conv and a 2x2 max
/// pool bit for bit, with a quarter of the epilogues and stores.
template <class Base>
struct RowMax4 : Base {};

/// GEMM rows per output row of an epilogue: 1, or 4 for RowMax4.
template <class E>
inline constexpr int gemm_rows_per_output = 1;
template <class Base>
inline constexpr int gemm_rows_per_output<RowMax4<Base>> = 4;

template <class E>
concept GemmEpilogue = requires(const E& e, std::int32_t acc, std::int64_t n) {
  { e.apply(acc, n) } -> std::same_as<typename E::Out>;
  { e.bias } -> std::convertible_to<const std::int32_t*>;
};

}  // namespace compressor::kernels
