// The one rounding rule of compressor's int8 scheme (docs/quantization.md):
//
//   q = clamp(round_half_even(fp32(x) * fp32(m)), lo - zp, hi - zp) + zp
//
// x is an int32 accumulator (requantization, pooling) or a real value
// (quantization); m is a float multiplier. The product is one IEEE float32
// multiply (no FMA contraction is possible), the rounding is the current
// rounding mode, which is round-half-to-even unless a program changes it, and
// the clamp happens in float before the conversion so nothing overflows. The
// SIMD kernels compute exactly this (vcvtdq2ps, vmulps, vmaxps, vminps,
// vcvtps2dq) and the fake-quant modules call these functions, so the
// fake-quant model predicts the int8 model bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

namespace compressor::kernels {

/// Per-tensor affine quantization: real = scale * (q - zero_point).
struct QuantParams {
  float scale = 1.f;
  std::int32_t zero_point = 0;
};

/// Rounds fp32(x) * m half to even after clamping into [lo - zp, hi - zp], then
/// adds zp. NaN maps to lo (as vmaxps does). The result is in [lo, hi].
inline std::int32_t round_scaled(float x, float m, std::int32_t zp, std::int32_t lo,
                                 std::int32_t hi) {
  float v = x * m;
  const float flo = static_cast<float>(lo - zp);
  const float fhi = static_cast<float>(hi - zp);
  v = v > flo ? v : flo;  // vmaxps(v, lo): NaN -> lo
  v = v < fhi ? v : fhi;  // vminps(v, hi)
  return static_cast<std::int32_t>(std::nearbyint(v)) + zp;
}

/// The requantization multiplier of an int8 layer: s_in * s_w / s_out,
/// computed in double and rounded once to float. Fake-quant must use this.
inline float requant_multiplier(double s_in, double s_w, double s_out) {
  return static_cast<float>(s_in * s_w / s_out);
}

/// The dequantization scale of an int32 accumulator: s_in * s_w as float.
inline float accumulator_scale(double s_in, double s_w) {
  return static_cast<float>(s_in * s_w);
}

/// int32 accumulator (bias and zero-point correction already added) -> uint8.
/// Fused ReLU is qmin = zero_point.
inline std::uint8_t requantize(std::int32_t acc, float multiplier, std::int32_t zero_point,
                               std::int32_t qmin = 0, std::int32_t qmax = 255) {
  return static_cast<std::uint8_t>(
      round_scaled(static_cast<float>(acc), multiplier, zero_point, qmin, qmax));
}

/// real -> uint8 with (scale, zero_point): the same rule with m = 1/scale.
inline float inverse_scale(float scale) {
  return 1.f / scale;
}
inline std::uint8_t quantize(float x, float inv_scale, std::int32_t zero_point) {
  return static_cast<std::uint8_t>(round_scaled(x, inv_scale, zero_point, 0, 255));
}

/// Sum of two quantized tensors requantized to a third:
///   q = clamp(round_half_even(fma(fp32(da), ma, fp32(db) * mb)), lo - zp, hi - zp) + zp
/// with da = qa - za, db = qb - zb, ma = s_a / s_out, mb = s_b / s_out. The fma
/// is explicit (std::fma / vfmadd231ps) so no compiler contraction can differ.
inline std::uint8_t add_requantize(std::int32_t da, std::int32_t db, float ma, float mb,
                                   std::int32_t zero_point, std::int32_t qmin = 0,
                                   std::int32_t qmax = 255) {
  const float v = std::fma(static_cast<float>(da), ma, static_cast<float>(db) * mb);
  return static_cast<std::uint8_t>(round_scaled(v, 1.f, zero_point, qmin, qmax));
}

/// The multiplier of an average over `count` int32-summed uint8 values:
/// s_in / (s_out * count), computed in double and rounded once to float.
inline float average_multiplier(double s_in, double s_out, std::int64_t count) {
  return static_cast<float>(s_in / (s_out * static_cast<double>(count)));
}

/// uint8 -> real: one float32 multiply.
inline float dequantize(std::uint8_t q, float scale, std::int32_t zero_point) {
  return static_cast<float>(static_cast<std::int32_t>(q) - zero_point) * scale;
}

}  // namespace compressor::kernels
