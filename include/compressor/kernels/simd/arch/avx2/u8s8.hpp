// AVX2 shims for the operations xsimd 8.1 lacks: the u8*s8 pair dot
// (vpmaddubsw), the int16 pair dot (vpmaddwd), a 4-byte broadcast and the
// saturating int32 -> uint8 narrowing. Everything else in the kernels is xsimd.
#pragma once

#include "compressor/kernels/int8_traits.hpp"

#if COMPRESSOR_KERNELS_AVX2
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace compressor::kernels::simd::avx2 {

using Arch = xsimd::fma3<xsimd::avx2>;
template <class T>
using Vec = xsimd::batch<T, Arch>;

/// vpmaddubsw: int16 lane i = a[2i]*w[2i] + a[2i+1]*w[2i+1], saturated to int16
/// (exact within Int8Traits' weight range).
inline Vec<std::int16_t> maddubs(Vec<std::uint8_t> a, Vec<std::int8_t> w) {
  return _mm256_maddubs_epi16(a, w);
}

/// vpmaddwd: int32 lane i = a[2i]*b[2i] + a[2i+1]*b[2i+1].
inline Vec<std::int32_t> madd(Vec<std::int16_t> a, Vec<std::int16_t> b) {
  return _mm256_madd_epi16(a, b);
}

/// acc + (sum of the 4 u8*s8 products of each int32 lane); ones = int16 1s.
inline Vec<std::int32_t> dot4_add(Vec<std::int32_t> acc, Vec<std::uint8_t> a, Vec<std::int8_t> w,
                                  Vec<std::int16_t> ones) {
  return acc + madd(maddubs(a, w), ones);
}

/// GCC 12 hoists all broadcasts and products of an unrolled micro-kernel
/// step ahead of the accumulations, needs more than 16 ymm and spills
/// accumulators to the stack in the inner loop. An empty asm on the
/// accumulators of each row keeps the source order (no instruction emitted).
/// Clang schedules the loop well by itself.
inline void schedule_barrier([[maybe_unused]] Vec<std::int32_t>& a,
                             [[maybe_unused]] Vec<std::int32_t>& b) {
#if defined(__GNUC__) && !defined(__clang__)
  auto ra = static_cast<__m256i>(a);
  auto rb = static_cast<__m256i>(b);
  asm("" : "+x"(ra), "+x"(rb));
  a = ra;
  b = rb;
#endif
}

/// acc += p, computed in acc's register. In a loop whose accumulators live in
/// registers GCC 12 often adds into the other operand's register and copies
/// the result back (a vmovdqa per accumulator and iteration); this asm add
/// names the destination. Clang needs no help.
inline void add_into(Vec<std::int32_t>& acc, Vec<std::int32_t> p) {
#if defined(__GNUC__) && !defined(__clang__)
  auto a = static_cast<__m256i>(acc);
  asm("vpaddd %1, %0, %0" : "+x"(a) : "x"(static_cast<__m256i>(p)));
  acc = a;
#else
  acc += p;
#endif
}

/// The 4 bytes at p repeated in every int32 lane (one vpbroadcastd).
inline Vec<std::uint8_t> broadcast4(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return xsimd::bitwise_cast<Vec<std::uint8_t>>(Vec<std::int32_t>(v));
}

/// The first n (< 4) bytes at p, zero-extended, repeated in every int32 lane.
inline Vec<std::uint8_t> broadcast4_partial(const std::uint8_t* p, int n) {
  std::int32_t v = 0;
  std::memcpy(&v, p, static_cast<std::size_t>(n));
  return xsimd::bitwise_cast<Vec<std::uint8_t>>(Vec<std::int32_t>(v));
}

/// 16 int32 (lo = 0..7, hi = 8..15) -> 16 uint8 in order, saturating.
inline __m128i narrow_u8(Vec<std::int32_t> lo, Vec<std::int32_t> hi) {
  __m256i p16 = _mm256_packs_epi32(lo, hi);   // lo0-3 hi0-3 | lo4-7 hi4-7
  p16 = _mm256_permute4x64_epi64(p16, 0xD8);  // lo0-3 lo4-7 | hi0-3 hi4-7
  return _mm_packus_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
}

/// min(a, b) per lane as vminps computes it: b where either is NaN, so
/// min_ps_nan_right(bound, v) keeps a NaN v.
inline Vec<float> min_ps_nan_right(Vec<float> a, Vec<float> b) {
  return _mm256_min_ps(a, b);
}

/// Two rows of 16 int32 (a0 = row a channels 0-7, a1 = 8-15; b likewise) ->
/// 32 uint8: row a's 16 | row b's 16, each value saturated to int16, plus zp
/// (saturating), then saturated to uint8.
inline Vec<std::uint8_t> pack_rows_u8(Vec<std::int32_t> a0, Vec<std::int32_t> a1,
                                      Vec<std::int32_t> b0, Vec<std::int32_t> b1,
                                      Vec<std::int16_t> zp) {
  const __m256i a = _mm256_adds_epi16(_mm256_packs_epi32(a0, a1), zp);  // a0-3 a8-11 | a4-7 a12-15
  const __m256i b = _mm256_adds_epi16(_mm256_packs_epi32(b0, b1), zp);
  const __m256i x = _mm256_packus_epi16(a, b);  // a0-3 a8-11 b0-3 b8-11 | a4-7 a12-15 b4-7 b12-15
  return _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/// Stores the low 16 bytes of v at lo and, when hi is not null, the high 16 at hi.
inline void store_halves(Vec<std::uint8_t> v, std::uint8_t* lo, std::uint8_t* hi) {
  const __m256i x = v;
  _mm_storeu_si128(reinterpret_cast<__m128i*>(lo), _mm256_castsi256_si128(x));
  if (hi) _mm_storeu_si128(reinterpret_cast<__m128i*>(hi), _mm256_extracti128_si256(x, 1));
}

/// 32 int32 (four vectors in order) -> 32 uint8 in order, saturating.
inline Vec<std::uint8_t> narrow_u8(Vec<std::int32_t> a, Vec<std::int32_t> b, Vec<std::int32_t> c,
                                   Vec<std::int32_t> d) {
  const __m256i ab = _mm256_packs_epi32(a, b);  // a0-3 b0-3 | a4-7 b4-7
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i x = _mm256_packus_epi16(ab, cd);  // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
  return _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/// 8 uint8 at p -> 8 int32.
inline Vec<std::int32_t> widen8_u8(const std::uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

/// Transposes 8 registers of 8 32-bit elements in place (row i -> column i).
inline void transpose8x8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      r[4 * i + 2 * j] = _mm256_shuffle_ps(t[4 * i + j], t[4 * i + j + 2], 0x44);
      r[4 * i + 2 * j + 1] = _mm256_shuffle_ps(t[4 * i + j], t[4 * i + j + 2], 0xEE);
    }
  // r[c] (c < 4): column c of rows 0-3 | column c+4 of rows 0-3; r[c+4]: rows 4-7.
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x20);
    t[c + 4] = _mm256_permute2f128_ps(r[c], r[c + 4], 0x31);
  }
  for (int i = 0; i < 8; ++i) r[i] = t[i];
}

/// Transposes the 8x8 float block at src (row stride ls) to dst (row stride ld).
inline void transpose8x8(const float* src, std::int64_t ls, float* dst, std::int64_t ld) {
  __m256 r[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ls);
  transpose8x8(r);
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * ld, r[i]);
}

/// Transposes two 16 x 16 byte blocks at once, one per 128-bit lane: in, r[i]
/// holds row i of each block; out, r[j] holds column j of each block.
inline void transpose16x16_lanes(__m256i r[16]) {
  __m256i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm256_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
  }
  // t[2i + h]: rows 2i, 2i + 1 interleaved, columns 8h..8h+7
  for (int i = 0; i < 4; ++i)
    for (int h = 0; h < 2; ++h) {
      r[4 * i + 2 * h] = _mm256_unpacklo_epi16(t[4 * i + h], t[4 * i + 2 + h]);
      r[4 * i + 2 * h + 1] = _mm256_unpackhi_epi16(t[4 * i + h], t[4 * i + 2 + h]);
    }
  // r[4i + c]: rows 4i..4i+3 of columns 4c..4c+3
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 4; ++c) {
      t[8 * i + 2 * c] = _mm256_unpacklo_epi32(r[8 * i + c], r[8 * i + 4 + c]);
      t[8 * i + 2 * c + 1] = _mm256_unpackhi_epi32(r[8 * i + c], r[8 * i + 4 + c]);
    }
  // t[8i + c]: rows 8i..8i+7 of columns 2c, 2c + 1
  for (int c = 0; c < 8; ++c) {
    r[2 * c] = _mm256_unpacklo_epi64(t[c], t[8 + c]);
    r[2 * c + 1] = _mm256_unpackhi_epi64(t[c], t[8 + c]);
  }
}

}  // namespace compressor::kernels::simd::avx2

#endif
