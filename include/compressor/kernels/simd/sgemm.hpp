// The AVX2 fp32 GEMM micro-kernel: an MR x 16 tile of C held in 2 * MR ymm
// accumulators. Per k: two 8-float loads of a B row, then per row of A one
// broadcast and two FMAs (vfmadd231ps). Each output element is summed in
// increasing k with one fused multiply-add per term, the order of the scalar
// reference (ref/sgemm.hpp), so the two agree bit for bit.
#pragma once

#include <cstdint>
#include <cstring>

#include "compressor/kernels/int8_traits.hpp"

#if COMPRESSOR_KERNELS_AVX2

namespace compressor::kernels::simd::detail_sgemm {

using VF = xsimd::batch<float, xsimd::fma3<xsimd::avx2>>;

/// Where B's rows are: row k at b + k * stride, or at b + offsets[k] (the
/// rows of an implicit im2col matrix, one input pixel each).
struct BRows {
  const float* b;
  std::int64_t stride;
  const std::int64_t* offsets = nullptr;
};

/// C tile (MR rows x cols <= 16, row stride ldc) = (load_c ? C : 0) + A * B
/// over kc steps: A element (r, k) at a[a_off[r] + k * a_ks]; B row k as in
/// BRows, 16 readable floats (zeros past cols). kIndirect: B rows by offsets.
template <int MR, bool kIndirect>
inline void tile(std::int64_t kc, const float* a, const std::int64_t* a_off, std::int64_t a_ks,
                 BRows br, float* c, std::int64_t ldc, int cols, bool load_c) {
  VF c0[MR], c1[MR];
  alignas(32) float t[MR * 16];
  if (!load_c) {
    for (int r = 0; r < MR; ++r) c0[r] = c1[r] = VF(0.f);
  } else if (cols == 16) {
    for (int r = 0; r < MR; ++r) {
      c0[r] = VF::load_unaligned(c + r * ldc);
      c1[r] = VF::load_unaligned(c + r * ldc + 8);
    }
  } else {
    std::memset(t, 0, sizeof(t));
    for (int r = 0; r < MR; ++r)
      std::memcpy(t + 16 * r, c + r * ldc, static_cast<std::size_t>(cols) * sizeof(float));
    for (int r = 0; r < MR; ++r) {
      c0[r] = VF::load_aligned(t + 16 * r);
      c1[r] = VF::load_aligned(t + 16 * r + 8);
    }
  }
  std::int64_t off[MR];
  for (int r = 0; r < MR; ++r) off[r] = a_off[r];
  const float* b = br.b;
  for (std::int64_t k = 0; k < kc; ++k) {
    const float* bk = b;
    if constexpr (kIndirect)
      bk = b + br.offsets[k];
    else
      b += br.stride;
    const VF b0 = VF::load_unaligned(bk);
    const VF b1 = VF::load_unaligned(bk + 8);
    for (int r = 0; r < MR; ++r) {
      const VF av(a[off[r]]);
      c0[r] = xsimd::fma(av, b0, c0[r]);
      c1[r] = xsimd::fma(av, b1, c1[r]);
    }
    a += a_ks;
  }
  if (cols == 16) {
    for (int r = 0; r < MR; ++r) {
      c0[r].store_unaligned(c + r * ldc);
      c1[r].store_unaligned(c + r * ldc + 8);
    }
  } else {
    for (int r = 0; r < MR; ++r) {
      c0[r].store_aligned(t + 16 * r);
      c1[r].store_aligned(t + 16 * r + 8);
    }
    for (int r = 0; r < MR; ++r)
      std::memcpy(c + r * ldc, t + 16 * r, static_cast<std::size_t>(cols) * sizeof(float));
  }
}

/// Writes the 8 x 8 block src (row r at src + r * ld) transposed: column t of
/// it as 8 floats at dst + t * dst_stride.
inline void transpose8x8(const float* src, std::int64_t ld, float* dst, std::int64_t dst_stride) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * ld);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int h = 0; h < 8; h += 4) {
    r[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
    r[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
    r[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
    r[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

/// tile for rows (<= MR) rows.
template <int MR, bool kIndirect>
inline void any_tile(int rows, std::int64_t kc, const float* a, const std::int64_t* a_off,
                     std::int64_t a_ks, BRows br, float* c, std::int64_t ldc, int cols,
                     bool load_c) {
  if (rows == MR) return tile<MR, kIndirect>(kc, a, a_off, a_ks, br, c, ldc, cols, load_c);
  if constexpr (MR > 1)
    any_tile<MR - 1, kIndirect>(rows, kc, a, a_off, a_ks, br, c, ldc, cols, load_c);
}

}  // namespace compressor::kernels::simd::detail_sgemm

#endif
