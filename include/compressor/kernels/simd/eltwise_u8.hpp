// AVX2 bodies of the elementwise and pooling int8 kernels, as
// target-attributed intrinsics (simd/target.hpp): they compile whatever the
// includer's -m flags and run where kernel_path() allows AVX2 (every path but
// scalar; these loops are memory-bound, so the AVX-512 paths run them too).
// Each handles whole vectors and returns how many elements it did; the public
// wrappers (kernels/eltwise.hpp, kernels/pool.hpp) finish with the reference.
#pragma once

#include <cstdint>

#include "compressor/kernels/requant.hpp"
#include "compressor/kernels/simd/target.hpp"

namespace compressor::kernels::simd {

namespace detail_eltwise {

/// round_scaled on a vector whose product is already formed: clamp in float
/// (vmaxps first: NaN -> lo), round half to even (vcvtps2dq), + zp.
struct Rounder {
  __m256 lo, hi;
  __m256i zp;
  COMPRESSOR_TARGET_AVX2 Rounder(std::int32_t zero_point, std::int32_t qmin, std::int32_t qmax)
      : lo(_mm256_set1_ps(static_cast<float>(qmin - zero_point))),
        hi(_mm256_set1_ps(static_cast<float>(qmax - zero_point))),
        zp(_mm256_set1_epi32(zero_point)) {}
  COMPRESSOR_TARGET_AVX2 __m256i operator()(__m256 v) const {
    return _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi)), zp);
  }
};

/// 8 uint8 at p -> 8 int32.
COMPRESSOR_INLINE_AVX2 __m256i widen8_u8(const std::uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

/// 32 int32 (four vectors in order, each in [0, 255]) -> 32 uint8 in order.
COMPRESSOR_INLINE_AVX2 __m256i narrow_u8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);  // a0-3 b0-3 | a4-7 b4-7
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i x = _mm256_packus_epi16(ab, cd);  // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
  return _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

}  // namespace detail_eltwise

/// y = quantize(x): 32 at a time. Returns the count done.
COMPRESSOR_TARGET_AVX2 inline std::int64_t quantize_f32_avx2(std::int64_t n, const float* x,
                                                             QuantParams q, std::uint8_t* y) {
  using namespace detail_eltwise;
  const __m256 inv = _mm256_set1_ps(inverse_scale(q.scale));
  const Rounder round(q.zero_point, 0, 255);
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i r[4];
    for (int j = 0; j < 4; ++j) r[j] = round(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), inv));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), narrow_u8(r[0], r[1], r[2], r[3]));
  }
  return i;
}

/// y = dequantize(x): 8 at a time.
COMPRESSOR_TARGET_AVX2 inline std::int64_t dequantize_u8_avx2(std::int64_t n, const std::uint8_t* x,
                                                              QuantParams q, float* y) {
  using namespace detail_eltwise;
  const __m256i zp = _mm256_set1_epi32(q.zero_point);
  const __m256 s = _mm256_set1_ps(q.scale);
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i,
                     _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(widen8_u8(x + i), zp)), s));
  return i;
}

/// y = add_requantize(a - za, b - zb): 32 at a time (vfmadd231ps, as the
/// reference's std::fma).
COMPRESSOR_TARGET_AVX2 inline std::int64_t add_u8_avx2(std::int64_t n, const std::uint8_t* a,
                                                       QuantParams qa, const std::uint8_t* b,
                                                       QuantParams qb, std::uint8_t* y,
                                                       QuantParams qy, bool relu) {
  using namespace detail_eltwise;
  const __m256 ma = _mm256_set1_ps(requant_multiplier(qa.scale, 1.0, qy.scale));
  const __m256 mb = _mm256_set1_ps(requant_multiplier(qb.scale, 1.0, qy.scale));
  const __m256i za = _mm256_set1_epi32(qa.zero_point), zb = _mm256_set1_epi32(qb.zero_point);
  const Rounder round(qy.zero_point, relu ? qy.zero_point : 0, 255);
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i r[4];
    for (int j = 0; j < 4; ++j) {
      const __m256 fa = _mm256_cvtepi32_ps(_mm256_sub_epi32(widen8_u8(a + i + 8 * j), za));
      const __m256 fb = _mm256_cvtepi32_ps(_mm256_sub_epi32(widen8_u8(b + i + 8 * j), zb));
      r[j] = round(_mm256_fmadd_ps(fa, ma, _mm256_mul_ps(fb, mb)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), narrow_u8(r[0], r[1], r[2], r[3]));
  }
  return i;
}

namespace detail_eltwise {
/// y[c, c + 32) = the max over taps of t[i][c, c + 32).
COMPRESSOR_INLINE_AVX2 void max_taps32(int taps, const std::uint8_t* const* t, std::int64_t c,
                                       std::uint8_t* y) {
  __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t[0] + c));
  for (int i = 1; i < taps; ++i)
    v = _mm256_max_epu8(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t[i] + c)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + c), v);
}
/// The same over 16 channels.
COMPRESSOR_INLINE_AVX2 void max_taps16(int taps, const std::uint8_t* const* t, std::int64_t c,
                                       std::uint8_t* y) {
  __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t[0] + c));
  for (int i = 1; i < taps; ++i)
    v = _mm_max_epu8(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(t[i] + c)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(y + c), v);
}
}  // namespace detail_eltwise

/// y[c] = the max over taps of t[i][c] (taps >= 1; t[0] may be y), for
/// every channel when C >= 16, else none; returns how many channels it did.
/// The last step of each width overlaps the one before it instead of leaving
/// a tail (recomputing a max is idempotent, also when t[0] is y): a pruned
/// model's 45 channels took 32 here and 13 in the scalar loop, twice the time
/// of 64 channels.
COMPRESSOR_TARGET_AVX2 inline std::int64_t max_taps_u8_avx2(int taps, const std::uint8_t* const* t,
                                                            std::int64_t C, std::uint8_t* y) {
  using namespace detail_eltwise;
  if (C >= 32) {
    std::int64_t c = 0;
    for (; c + 32 <= C; c += 32) max_taps32(taps, t, c, y);
    if (c < C) max_taps32(taps, t, C - 32, y);
  } else if (C >= 16) {
    max_taps16(taps, t, 0, y);
    if (C > 16) max_taps16(taps, t, C - 16, y);
  } else {
    return 0;
  }
  return C;
}

/// Channel sums over HW pixels (row stride C) of channels [0, 8*floor(C/8)),
/// then requantized: y[c] = requantize(sum - HW*zx, m, zy).
COMPRESSOR_TARGET_AVX2 inline std::int64_t avg_pool_u8_avx2(std::int64_t HW, std::int64_t C,
                                                            const std::uint8_t* x, std::int32_t zx,
                                                            float m, std::int32_t zy,
                                                            std::uint8_t* y) {
  using namespace detail_eltwise;
  const __m256i corr = _mm256_set1_epi32(-static_cast<std::int32_t>(HW) * zx);
  const __m256 mv = _mm256_set1_ps(m);
  const Rounder round(zy, 0, 255);
  std::int64_t c = 0;
  for (; c + 8 <= C; c += 8) {
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    std::int64_t p = 0;
    for (; p + 2 <= HW; p += 2) {
      s0 = _mm256_add_epi32(s0, widen8_u8(x + p * C + c));
      s1 = _mm256_add_epi32(s1, widen8_u8(x + (p + 1) * C + c));
    }
    if (p < HW) s0 = _mm256_add_epi32(s0, widen8_u8(x + p * C + c));
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(s0, s1), corr);
    alignas(32) std::int32_t q[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(q),
                       round(_mm256_mul_ps(_mm256_cvtepi32_ps(sum), mv)));
    for (int j = 0; j < 8; ++j) y[c + j] = static_cast<std::uint8_t>(q[j]);
  }
  return c;
}

}  // namespace compressor::kernels::simd
