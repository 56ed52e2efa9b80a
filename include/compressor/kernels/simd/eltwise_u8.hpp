// AVX2 (xsimd) bodies of the elementwise and pooling int8 kernels. Each
// handles whole vectors and returns how many elements it did; the public
// wrappers (kernels/eltwise.hpp, kernels/pool.hpp) finish with the reference.
#pragma once

#include <cstdint>

#include "compressor/kernels/requant.hpp"
#include "compressor/kernels/simd/arch/avx2/u8s8.hpp"

#if COMPRESSOR_KERNELS_AVX2

namespace compressor::kernels::simd {

namespace detail_eltwise {
using avx2::Vec;
using VF = Vec<float>;
using VI = Vec<std::int32_t>;

/// round_scaled on a vector whose product is already formed.
struct Rounder {
  VF lo, hi;
  VI zp;
  Rounder(std::int32_t zero_point, std::int32_t qmin, std::int32_t qmax)
      : lo(static_cast<float>(qmin - zero_point)),
        hi(static_cast<float>(qmax - zero_point)),
        zp(zero_point) {}
  VI operator()(VF v) const {
    return xsimd::nearbyint_as_int(xsimd::min(xsimd::max(v, lo), hi)) + zp;
  }
};
}  // namespace detail_eltwise

/// y = quantize(x): 32 at a time. Returns the count done.
inline std::int64_t quantize_f32(std::int64_t n, const float* x, QuantParams q, std::uint8_t* y) {
  using namespace detail_eltwise;
  const VF inv(inverse_scale(q.scale));
  const Rounder round(q.zero_point, 0, 255);
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    VI r[4];
    for (int j = 0; j < 4; ++j) r[j] = round(VF::load_unaligned(x + i + 8 * j) * inv);
    avx2::narrow_u8(r[0], r[1], r[2], r[3]).store_unaligned(y + i);
  }
  return i;
}

/// y = dequantize(x): 8 at a time.
inline std::int64_t dequantize_u8(std::int64_t n, const std::uint8_t* x, QuantParams q, float* y) {
  using namespace detail_eltwise;
  const VI zp(q.zero_point);
  const VF s(q.scale);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    (xsimd::batch_cast<float>(avx2::widen8_u8(x + i) - zp) * s).store_unaligned(y + i);
  return i;
}

/// y = add_requantize(a - za, b - zb): 32 at a time.
inline std::int64_t add_u8(std::int64_t n, const std::uint8_t* a, QuantParams qa,
                           const std::uint8_t* b, QuantParams qb, std::uint8_t* y, QuantParams qy,
                           bool relu) {
  using namespace detail_eltwise;
  const VF ma(requant_multiplier(qa.scale, 1.0, qy.scale));
  const VF mb(requant_multiplier(qb.scale, 1.0, qy.scale));
  const VI za(qa.zero_point), zb(qb.zero_point);
  const Rounder round(qy.zero_point, relu ? qy.zero_point : 0, 255);
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    VI r[4];
    for (int j = 0; j < 4; ++j) {
      const VF fa = xsimd::batch_cast<float>(avx2::widen8_u8(a + i + 8 * j) - za);
      const VF fb = xsimd::batch_cast<float>(avx2::widen8_u8(b + i + 8 * j) - zb);
      r[j] = round(xsimd::fma(fa, ma, fb * mb));
    }
    avx2::narrow_u8(r[0], r[1], r[2], r[3]).store_unaligned(y + i);
  }
  return i;
}

/// y[c] = max(y[c], x[c]) over C channels, 32 at a time.
inline std::int64_t max_u8(std::int64_t C, const std::uint8_t* x, std::uint8_t* y) {
  using V = avx2::Vec<std::uint8_t>;
  std::int64_t c = 0;
  for (; c + 32 <= C; c += 32)
    xsimd::max(V::load_unaligned(y + c), V::load_unaligned(x + c)).store_unaligned(y + c);
  return c;
}

/// Channel sums over HW pixels (row stride C) of channels [0, 8*floor(C/8)),
/// then requantized: y[c] = requantize(sum - HW*zx, m, zy).
inline std::int64_t avg_pool_u8(std::int64_t HW, std::int64_t C, const std::uint8_t* x,
                                std::int32_t zx, float m, std::int32_t zy, std::uint8_t* y) {
  using namespace detail_eltwise;
  const VI corr(-static_cast<std::int32_t>(HW) * zx);
  const VF mv(m);
  const Rounder round(zy, 0, 255);
  std::int64_t c = 0;
  for (; c + 8 <= C; c += 8) {
    VI s0(0), s1(0);
    std::int64_t p = 0;
    for (; p + 2 <= HW; p += 2) {
      s0 += avx2::widen8_u8(x + p * C + c);
      s1 += avx2::widen8_u8(x + (p + 1) * C + c);
    }
    if (p < HW) s0 += avx2::widen8_u8(x + p * C + c);
    alignas(32) std::int32_t q[8];
    round(xsimd::batch_cast<float>(s0 + s1 + corr) * mv).store_aligned(q);
    for (int j = 0; j < 8; ++j) y[c + j] = static_cast<std::uint8_t>(q[j]);
  }
  return c;
}

}  // namespace compressor::kernels::simd

#else

namespace compressor::kernels::simd {
// No vector path in this build: the vector bodies do nothing and the public
// wrappers run the reference on everything.
inline std::int64_t quantize_f32(std::int64_t, const float*, QuantParams, std::uint8_t*) {
  return 0;
}
inline std::int64_t dequantize_u8(std::int64_t, const std::uint8_t*, QuantParams, float*) {
  return 0;
}
inline std::int64_t add_u8(std::int64_t, const std::uint8_t*, QuantParams, const std::uint8_t*,
                           QuantParams, std::uint8_t*, QuantParams, bool) {
  return 0;
}
}  // namespace compressor::kernels::simd

#endif
