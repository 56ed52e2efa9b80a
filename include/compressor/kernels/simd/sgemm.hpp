// fp32 GEMM micro-kernels, one per ISA path, as functions with target
// attributes (they compile without the includer's -m flags; sgemm.hpp picks
// one at run time from kernel_path()):
//   avx2    MR x 16 tile of C in 2 * MR ymm accumulators (MR = 6: 12
//           accumulators + 2 B rows + 1 broadcast of the 16 ymm)
//   avx512  MR x 32 tile of C in 2 * MR zmm accumulators (MR = 14: 28
//           accumulators + 2 B rows + 1 broadcast of the 32 zmm), partial
//           tiles through masked loads and stores; a panel of at most 16
//           columns takes MR x 16 (one zmm per row: 16-channel layers ran
//           half their FMAs on zero columns)
// Per k: two loads of a B row, then per row of A one broadcast and two FMAs.
// Each output element is summed in increasing k with one fused multiply-add
// per term, on every path: the order and rounding of the scalar reference
// (ref/sgemm.hpp), so every path agrees with it bit for bit.
//
// Only the row-block loops live here (block_avx2 / block_avx512); the OpenMP
// regions stay in generic code (sgemm.hpp), since GCC does not give a lambda
// or an outlined parallel region its enclosing function's target.
#pragma once

#include <cstdint>
#include <cstring>

#include "compressor/kernels/isa.hpp"

#if COMPRESSOR_X86
#include <immintrin.h>
#define COMPRESSOR_F32_AVX2 __attribute__((target("avx2,fma")))
#define COMPRESSOR_F32_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#endif

namespace compressor::kernels::simd::detail_sgemm {

/// Where B's rows are: row k at b + k * stride, or at b + offsets[k] (the
/// rows of an implicit im2col matrix, one input pixel each).
struct BRows {
  const float* b;
  std::int64_t stride;
  const std::int64_t* offsets = nullptr;
};

#if COMPRESSOR_X86

/// C tile (MR rows x cols <= 16, row stride ldc) = (load_c ? C : 0) + A * B
/// over kc steps: A element (r, k) at a[a_off[r] + k * a_ks]; B row k as in
/// BRows, 16 readable floats (zeros past cols). kIndirect: B rows by offsets.
template <int MR, bool kIndirect>
COMPRESSOR_F32_AVX2 inline void tile_avx2(std::int64_t kc, const float* a,
                                          const std::int64_t* a_off, std::int64_t a_ks, BRows br,
                                          float* c, std::int64_t ldc, int cols, bool load_c) {
  __m256 c0[MR], c1[MR];
  alignas(32) float t[MR * 16];
  if (!load_c) {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) c0[r] = c1[r] = _mm256_setzero_ps();
  } else if (cols == 16) {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      c0[r] = _mm256_loadu_ps(c + r * ldc);
      c1[r] = _mm256_loadu_ps(c + r * ldc + 8);
    }
  } else {
    std::memset(t, 0, sizeof(t));
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
      std::memcpy(t + 16 * r, c + r * ldc, static_cast<std::size_t>(cols) * sizeof(float));
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      c0[r] = _mm256_load_ps(t + 16 * r);
      c1[r] = _mm256_load_ps(t + 16 * r + 8);
    }
  }
  std::int64_t off[MR];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) off[r] = a_off[r];
  const float* b = br.b;
  for (std::int64_t k = 0; k < kc; ++k) {
    const float* bk = b;
    if constexpr (kIndirect)
      bk = b + br.offsets[k];
    else
      b += br.stride;
    const __m256 b0 = _mm256_loadu_ps(bk);
    const __m256 b1 = _mm256_loadu_ps(bk + 8);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + off[r]);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
    a += a_ks;
  }
  if (cols == 16) {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      _mm256_storeu_ps(c + r * ldc, c0[r]);
      _mm256_storeu_ps(c + r * ldc + 8, c1[r]);
    }
  } else {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      _mm256_store_ps(t + 16 * r, c0[r]);
      _mm256_store_ps(t + 16 * r + 8, c1[r]);
    }
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r)
      std::memcpy(c + r * ldc, t + 16 * r, static_cast<std::size_t>(cols) * sizeof(float));
  }
}

/// tile_avx2 for rows (<= MR) rows.
template <int MR, bool kIndirect>
COMPRESSOR_F32_AVX2 inline void any_tile_avx2(int rows, std::int64_t kc, const float* a,
                                              const std::int64_t* a_off, std::int64_t a_ks,
                                              BRows br, float* c, std::int64_t ldc, int cols,
                                              bool load_c) {
  if (rows == MR) return tile_avx2<MR, kIndirect>(kc, a, a_off, a_ks, br, c, ldc, cols, load_c);
  if constexpr (MR > 1)
    any_tile_avx2<MR - 1, kIndirect>(rows, kc, a, a_off, a_ks, br, c, ldc, cols, load_c);
}

/// Rows [0, rows) of C (from c, stride ldc) x one panel of cols <= 16
/// columns: the micro-tiles of a row block, MR rows each (A row i at
/// a_off[i]).
template <int MR, bool kIndirect>
COMPRESSOR_F32_AVX2 void block_avx2(std::int64_t rows, std::int64_t kc, const float* a,
                                    const std::int64_t* a_off, std::int64_t a_ks, BRows br,
                                    float* c, std::int64_t ldc, int cols, bool load_c) {
  for (std::int64_t m = 0; m < rows; m += MR) {
    const int n = static_cast<int>(rows - m < MR ? rows - m : MR);
    any_tile_avx2<MR, kIndirect>(n, kc, a, a_off + m, a_ks, br, c + m * ldc, ldc, cols, load_c);
  }
}

/// C tile (MR rows x cols <= 16 * NV) = (load_c ? C : 0) + A * B, as
/// tile_avx2 with NV zmm per row: B rows have 32 readable floats (zeros past
/// cols); C is read and written through masks, so nothing past cols is
/// touched. NV = 1 serves panels of at most 16 columns (a layer of 16
/// output channels, a 48-channel layer's last panel), whose second zmm
/// would only add zeros.
template <int MR, bool kIndirect, int NV = 2>
COMPRESSOR_F32_AVX512 inline void tile_avx512(std::int64_t kc, const float* a,
                                              const std::int64_t* a_off, std::int64_t a_ks,
                                              BRows br, float* c, std::int64_t ldc, int cols,
                                              bool load_c) {
  static_assert(NV == 1 || NV == 2);
  constexpr bool kTwo = NV == 2;
  const auto m0 = static_cast<__mmask16>(cols >= 16 ? 0xFFFFu : (1u << cols) - 1u);
  const auto m1 = static_cast<__mmask16>(cols >= 32   ? 0xFFFFu
                                         : cols <= 16 ? 0u
                                                      : (1u << (cols - 16)) - 1u);
  __m512 c0[MR], c1[kTwo ? MR : 1];
  if (!load_c) {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      c0[r] = _mm512_setzero_ps();
      if constexpr (kTwo) c1[r] = _mm512_setzero_ps();
    }
  } else {
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      c0[r] = _mm512_maskz_loadu_ps(m0, c + r * ldc);
      if constexpr (kTwo) c1[r] = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16);
    }
  }
  std::int64_t off[MR];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) off[r] = a_off[r];
  const float* b = br.b;
  for (std::int64_t k = 0; k < kc; ++k) {
    const float* bk = b;
    if constexpr (kIndirect)
      bk = b + br.offsets[k];
    else
      b += br.stride;
    const __m512 b0 = _mm512_loadu_ps(bk);
    [[maybe_unused]] __m512 b1;
    if constexpr (kTwo) b1 = _mm512_loadu_ps(bk + 16);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[off[r]]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      if constexpr (kTwo) c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
    a += a_ks;
  }
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r) {
    _mm512_mask_storeu_ps(c + r * ldc, m0, c0[r]);
    if constexpr (kTwo) _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c1[r]);
  }
}

template <int MR, bool kIndirect, int NV>
COMPRESSOR_F32_AVX512 inline void any_tile_avx512(int rows, std::int64_t kc, const float* a,
                                                  const std::int64_t* a_off, std::int64_t a_ks,
                                                  BRows br, float* c, std::int64_t ldc, int cols,
                                                  bool load_c) {
  if (rows == MR)
    return tile_avx512<MR, kIndirect, NV>(kc, a, a_off, a_ks, br, c, ldc, cols, load_c);
  if constexpr (MR > 1)
    any_tile_avx512<MR - 1, kIndirect, NV>(rows, kc, a, a_off, a_ks, br, c, ldc, cols, load_c);
}

/// block_avx2 on the zmm tile: one panel of cols <= 32 columns (one zmm per
/// row when cols <= 16).
template <int MR, bool kIndirect>
COMPRESSOR_F32_AVX512 void block_avx512(std::int64_t rows, std::int64_t kc, const float* a,
                                        const std::int64_t* a_off, std::int64_t a_ks, BRows br,
                                        float* c, std::int64_t ldc, int cols, bool load_c) {
  for (std::int64_t m = 0; m < rows; m += MR) {
    const int n = static_cast<int>(rows - m < MR ? rows - m : MR);
    if (cols <= 16)
      any_tile_avx512<MR, kIndirect, 1>(n, kc, a, a_off + m, a_ks, br, c + m * ldc, ldc, cols,
                                        load_c);
    else
      any_tile_avx512<MR, kIndirect, 2>(n, kc, a, a_off + m, a_ks, br, c + m * ldc, ldc, cols,
                                        load_c);
  }
}

/// Writes the 8 x 8 block src (row r at src + r * ld) transposed: column t of
/// it as 8 floats at dst + t * dst_stride.
COMPRESSOR_F32_AVX2 inline void transpose8x8(const float* src, std::int64_t ld, float* dst,
                                             std::int64_t dst_stride) {
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

#endif  // COMPRESSOR_X86

}  // namespace compressor::kernels::simd::detail_sgemm
