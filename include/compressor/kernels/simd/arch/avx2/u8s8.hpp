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

}  // namespace compressor::kernels::simd::avx2

#endif
