// Sparse-weight x dense-activation kernels on blocks of 32 activation rows
// (pixels), per ISA path, as functions with target attributes (no -m flags
// needed; sparse_gemm.hpp picks one from kernel_path()). The block is
// transposed into a K x 32 panel so each nonzero weight w[n, k] updates 32
// pixels at once from panel row k:
//  fp32, AVX2:    4 x vfmadd231ps (ymm) per nonzero, even and odd nonzeros of
//                 a row into two accumulator sets (8 independent chains hide
//                 the FMA latency);
//  fp32, AVX-512: 2 x vfmadd231ps (zmm) per nonzero, the same even / odd sets,
//                 two output channels at a time (8 independent chains);
//  int8, AVX2 (every SIMD path): uint8 panel (32 bytes per k); the nonzeros
//                 of a row go by quads (SparseWeightsS8): the 4 panel rows of
//                 a quad are interleaved with vpunpck{l,h}{bw,wd} into 4
//                 bytes (k0..k3) per pixel, and one vpmaddubsw + vpmaddwd(ones)
//                 + vpaddd per 8 pixels against the broadcast 4 weights,
//                 on either weight grid (full-grid quads hold only pairs
//                 that cannot saturate, sparse_weights.hpp).
// Each output is the same sum as the scalar reference (ref/sparse_gemm.hpp:
// fp32 even / odd fma chains in CSR order, then their sum; int8 exact), so
// every path matches it bit for bit. Results go to a per-channel tile and
// are transposed back to the rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/simd/sgemm.hpp"
#include "compressor/kernels/sparse_weights.hpp"

namespace compressor::kernels::simd {

inline constexpr int kSparseBlock = 32;  // pixels per block: 4 fp32 ymm, 2 zmm

#if COMPRESSOR_X86

namespace detail_sparse {

using detail_sgemm::transpose8x8;

/// panel[k * 32 + p] = X[p, k] for p < rows, 0 for the rest: 8 x 8
/// transposes, the last rows % 8 pixels zero-padded through a scratch 8 x 8.
COMPRESSOR_F32_AVX2 inline void pack_panel_f32(const float* X, std::int64_t ldx, int rows,
                                               std::int64_t K, float* panel) {
  std::int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    float* dst = panel + k * kSparseBlock;
    int p = 0;
    for (; p + 8 <= rows; p += 8) transpose8x8(X + p * ldx + k, ldx, dst + p, kSparseBlock);
    if (p < rows) {
      alignas(32) float t[8 * 8] = {};
      for (int q = p; q < rows; ++q)
        std::memcpy(t + (q - p) * 8, X + q * ldx + k, 8 * sizeof(float));
      transpose8x8(t, 8, dst + p, kSparseBlock);
      p += 8;
    }
    for (; p < kSparseBlock; p += 8)
      for (int j = 0; j < 8; ++j) _mm256_store_ps(dst + j * kSparseBlock + p, _mm256_setzero_ps());
  }
  for (; k < K; ++k)
    for (int p = 0; p < kSparseBlock; ++p)
      panel[k * kSparseBlock + p] = p < rows ? X[p * ldx + k] : 0.f;
}

/// tile (N x 32, one row per channel) -> Y (rows x N), for 4-byte T: 8 x 8
/// transposes, the last rows % 8 pixels through a scratch 8 x 8.
template <class T>
COMPRESSOR_F32_AVX2 inline void store_tile_32(const T* tile, std::int64_t N, int rows, T* Y,
                                              std::int64_t ldy) {
  static_assert(sizeof(T) == 4);
  const auto* src = reinterpret_cast<const float*>(tile);
  auto* dst = reinterpret_cast<float*>(Y);
  std::int64_t n = 0;
  for (; n + 8 <= N; n += 8) {
    int p = 0;
    for (; p + 8 <= rows; p += 8)
      transpose8x8(src + n * kSparseBlock + p, kSparseBlock, dst + p * ldy + n, ldy);
    if (p < rows) {
      alignas(32) float t[8 * 8];
      transpose8x8(src + n * kSparseBlock + p, kSparseBlock, t, 8);
      for (int q = p; q < rows; ++q)
        std::memcpy(dst + q * ldy + n, t + (q - p) * 8, 8 * sizeof(float));
    }
  }
  for (int p = 0; p < rows; ++p)
    for (std::int64_t c = n; c < N; ++c) Y[p * ldy + c] = tile[c * kSparseBlock + p];
}

/// Transposes two 16 x 16 byte blocks at once, one per 128-bit lane: in, r[i]
/// holds row i of each block; out, r[j] holds column j of each block.
COMPRESSOR_F32_AVX2 inline void transpose16x16_lanes(__m256i r[16]) {
  __m256i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm256_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i)
    for (int h = 0; h < 2; ++h) {
      r[4 * i + 2 * h] = _mm256_unpacklo_epi16(t[4 * i + h], t[4 * i + 2 + h]);
      r[4 * i + 2 * h + 1] = _mm256_unpackhi_epi16(t[4 * i + h], t[4 * i + 2 + h]);
    }
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 4; ++c) {
      t[8 * i + 2 * c] = _mm256_unpacklo_epi32(r[8 * i + c], r[8 * i + 4 + c]);
      t[8 * i + 2 * c + 1] = _mm256_unpackhi_epi32(r[8 * i + c], r[8 * i + 4 + c]);
    }
  for (int c = 0; c < 8; ++c) {
    r[2 * c] = _mm256_unpacklo_epi64(t[c], t[8 + c]);
    r[2 * c + 1] = _mm256_unpackhi_epi64(t[c], t[8 + c]);
  }
}

/// panel[k * 32 + p] = X[p, k] for p < rows, 0 for the rest (uint8), by
/// 16 x 16 byte transposes, two per register (k 0-15 and 16-31 of 16
/// pixels: measured faster than pixels 0-15 and 16-31 of 32 k values).
COMPRESSOR_F32_AVX2 inline void pack_panel_u8(const std::uint8_t* X, std::int64_t ldx, int rows,
                                              std::int64_t K, std::uint8_t* panel) {
  alignas(32) std::uint8_t tmp[kSparseBlock][32];  // a partial chunk, zero-padded
  for (std::int64_t k0 = 0; k0 < K; k0 += 32) {
    const int width = static_cast<int>(std::min<std::int64_t>(32, K - k0));
    const std::uint8_t* src = X + k0;
    std::int64_t ls = ldx;
    if (width < 32 || rows < kSparseBlock) {
      std::memset(tmp, 0, sizeof(tmp));
      for (int p = 0; p < rows; ++p)
        std::memcpy(tmp[p], X + p * ldx + k0, static_cast<std::size_t>(width));
      src = tmp[0];
      ls = 32;
    }
    for (int half = 0; half < 2; ++half) {
      __m256i r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + (16 * half + i) * ls));
      transpose16x16_lanes(r);  // r[j]: k0 + j | k0 + 16 + j, 16 pixels each
      for (int j = 0; j < 16; ++j) {
        std::uint8_t* d = panel + (k0 + j) * kSparseBlock + 16 * half;
        if (j < width) _mm_store_si128(reinterpret_cast<__m128i*>(d), _mm256_castsi256_si128(r[j]));
        if (16 + j < width)
          _mm_store_si128(reinterpret_cast<__m128i*>(d + 16 * kSparseBlock),
                          _mm256_extracti128_si256(r[j], 1));
      }
    }
  }
}

}  // namespace detail_sparse

/// One fp32 unit on the AVX2 path: output channels [n0, n1) of Y rows
/// [0, rows) (stride ldy) from X rows (stride ldx) times W^T. panel: K*32
/// floats, tile: (n1 - n0)*32 floats of scratch (64-byte aligned); pack =
/// false: panel holds these X rows already (from the caller's last unit).
COMPRESSOR_F32_AVX2 inline void sparse_block_f32_avx2(const float* X, std::int64_t ldx, int rows,
                                                      const SparseWeightsF32& W, const float* bias,
                                                      bool relu, float* Y, std::int64_t ldy,
                                                      float* panel, float* tile, std::int64_t n0,
                                                      std::int64_t n1, bool pack) {
  using namespace detail_sparse;
  if (pack) pack_panel_f32(X, ldx, rows, W.k(), panel);
  const std::int32_t* cols = W.cols();
  const float* vals = W.values();
  const __m256 zero = _mm256_setzero_ps();
  for (std::int64_t n = n0; n < n1; ++n) {
    __m256 e[4], o[4];
    for (int i = 0; i < 4; ++i) e[i] = o[i] = zero;
    std::int64_t j = W.row_begin(n);
    const std::int64_t end = W.row_begin(n + 1);
    for (; j + 2 <= end; j += 2) {
      const float* r0 = panel + std::int64_t{cols[j]} * kSparseBlock;
      const float* r1 = panel + std::int64_t{cols[j + 1]} * kSparseBlock;
      const __m256 w0 = _mm256_set1_ps(vals[j]), w1 = _mm256_set1_ps(vals[j + 1]);
      for (int i = 0; i < 4; ++i) e[i] = _mm256_fmadd_ps(w0, _mm256_load_ps(r0 + 8 * i), e[i]);
      for (int i = 0; i < 4; ++i) o[i] = _mm256_fmadd_ps(w1, _mm256_load_ps(r1 + 8 * i), o[i]);
    }
    if (j < end) {
      const float* r0 = panel + std::int64_t{cols[j]} * kSparseBlock;
      const __m256 w0 = _mm256_set1_ps(vals[j]);
      for (int i = 0; i < 4; ++i) e[i] = _mm256_fmadd_ps(w0, _mm256_load_ps(r0 + 8 * i), e[i]);
    }
    const __m256 b = _mm256_set1_ps(bias ? bias[n] : 0.f);
    for (int i = 0; i < 4; ++i) {
      __m256 y = _mm256_add_ps(e[i], o[i]);
      if (bias) y = _mm256_add_ps(y, b);
      if (relu) y = _mm256_max_ps(y, zero);  // NaN -> 0, as the reference
      _mm256_store_ps(tile + (n - n0) * kSparseBlock + 8 * i, y);
    }
  }
  store_tile_32(tile, n1 - n0, rows, Y + n0, ldy);
}

namespace detail_sparse {

/// max(y, 0) per lane, vmaxps semantics (NaN -> 0, as the reference's
/// y > 0 ? y : 0). Through the all-ones mask form: GCC 12 warns that
/// _mm512_max_ps's undefined pass-through "may be used uninitialized".
COMPRESSOR_F32_AVX512 inline __m512 relu512(__m512 y) {
  return _mm512_maskz_max_ps(static_cast<__mmask16>(0xFFFF), y, _mm512_setzero_ps());
}

/// The even / odd fma chains of nonzeros [j, end) of one channel over 32
/// pixels (2 zmm each), and the channel's result (e + o [+ bias], [ReLU]) in
/// out (64-byte aligned).
COMPRESSOR_F32_AVX512 inline void sparse_channel_avx512(const float* panel,
                                                        const std::int32_t* cols, const float* vals,
                                                        std::int64_t j, std::int64_t end,
                                                        const float* bias, bool relu, float* out) {
  __m512 e0 = _mm512_setzero_ps(), e1 = e0, o0 = e0, o1 = e0;
  for (; j + 2 <= end; j += 2) {
    const float* r0 = panel + std::int64_t{cols[j]} * kSparseBlock;
    const float* r1 = panel + std::int64_t{cols[j + 1]} * kSparseBlock;
    const __m512 w0 = _mm512_set1_ps(vals[j]), w1 = _mm512_set1_ps(vals[j + 1]);
    e0 = _mm512_fmadd_ps(w0, _mm512_load_ps(r0), e0);
    e1 = _mm512_fmadd_ps(w0, _mm512_load_ps(r0 + 16), e1);
    o0 = _mm512_fmadd_ps(w1, _mm512_load_ps(r1), o0);
    o1 = _mm512_fmadd_ps(w1, _mm512_load_ps(r1 + 16), o1);
  }
  if (j < end) {
    const float* r0 = panel + std::int64_t{cols[j]} * kSparseBlock;
    const __m512 w0 = _mm512_set1_ps(vals[j]);
    e0 = _mm512_fmadd_ps(w0, _mm512_load_ps(r0), e0);
    e1 = _mm512_fmadd_ps(w0, _mm512_load_ps(r0 + 16), e1);
  }
  __m512 y0 = _mm512_add_ps(e0, o0), y1 = _mm512_add_ps(e1, o1);
  if (bias) {
    const __m512 b = _mm512_set1_ps(*bias);
    y0 = _mm512_add_ps(y0, b);
    y1 = _mm512_add_ps(y1, b);
  }
  if (relu) {
    y0 = relu512(y0);
    y1 = relu512(y1);
  }
  _mm512_store_ps(out, y0);
  _mm512_store_ps(out + 16, y1);
}

}  // namespace detail_sparse

/// sparse_block_f32_avx2 on zmm: two channels at a time, their nonzeros
/// interleaved while both have some (8 independent fma chains).
COMPRESSOR_F32_AVX512 inline void sparse_block_f32_avx512(const float* X, std::int64_t ldx,
                                                          int rows, const SparseWeightsF32& W,
                                                          const float* bias, bool relu, float* Y,
                                                          std::int64_t ldy, float* panel,
                                                          float* tile, std::int64_t n0,
                                                          std::int64_t n1, bool pack) {
  using namespace detail_sparse;
  if (pack) pack_panel_f32(X, ldx, rows, W.k(), panel);
  const std::int32_t* cols = W.cols();
  const float* vals = W.values();
  std::int64_t n = n0;
  for (; n + 2 <= n1; n += 2) {
    std::int64_t a = W.row_begin(n), b = W.row_begin(n + 1);
    const std::int64_t a_end = b, b_end = W.row_begin(n + 2);
    __m512 ae0 = _mm512_setzero_ps(), ae1 = ae0, ao0 = ae0, ao1 = ae0;
    __m512 be0 = ae0, be1 = ae0, bo0 = ae0, bo1 = ae0;
    for (; a + 2 <= a_end && b + 2 <= b_end; a += 2, b += 2) {
      const float* ra0 = panel + std::int64_t{cols[a]} * kSparseBlock;
      const float* ra1 = panel + std::int64_t{cols[a + 1]} * kSparseBlock;
      const float* rb0 = panel + std::int64_t{cols[b]} * kSparseBlock;
      const float* rb1 = panel + std::int64_t{cols[b + 1]} * kSparseBlock;
      const __m512 wa0 = _mm512_set1_ps(vals[a]), wa1 = _mm512_set1_ps(vals[a + 1]);
      const __m512 wb0 = _mm512_set1_ps(vals[b]), wb1 = _mm512_set1_ps(vals[b + 1]);
      ae0 = _mm512_fmadd_ps(wa0, _mm512_load_ps(ra0), ae0);
      ae1 = _mm512_fmadd_ps(wa0, _mm512_load_ps(ra0 + 16), ae1);
      be0 = _mm512_fmadd_ps(wb0, _mm512_load_ps(rb0), be0);
      be1 = _mm512_fmadd_ps(wb0, _mm512_load_ps(rb0 + 16), be1);
      ao0 = _mm512_fmadd_ps(wa1, _mm512_load_ps(ra1), ao0);
      ao1 = _mm512_fmadd_ps(wa1, _mm512_load_ps(ra1 + 16), ao1);
      bo0 = _mm512_fmadd_ps(wb1, _mm512_load_ps(rb1), bo0);
      bo1 = _mm512_fmadd_ps(wb1, _mm512_load_ps(rb1 + 16), bo1);
    }
    // The rest of each channel, continuing its own chains.
    alignas(64) float part[2][2][32];
    _mm512_store_ps(part[0][0], ae0);
    _mm512_store_ps(part[0][0] + 16, ae1);
    _mm512_store_ps(part[0][1], ao0);
    _mm512_store_ps(part[0][1] + 16, ao1);
    _mm512_store_ps(part[1][0], be0);
    _mm512_store_ps(part[1][0] + 16, be1);
    _mm512_store_ps(part[1][1], bo0);
    _mm512_store_ps(part[1][1] + 16, bo1);
    for (int h = 0; h < 2; ++h) {
      std::int64_t j = h ? b : a;
      const std::int64_t end = h ? b_end : a_end;
      __m512 e0 = _mm512_load_ps(part[h][0]), e1 = _mm512_load_ps(part[h][0] + 16);
      __m512 o0 = _mm512_load_ps(part[h][1]), o1 = _mm512_load_ps(part[h][1] + 16);
      for (; j + 2 <= end; j += 2) {
        const float* r0 = panel + std::int64_t{cols[j]} * kSparseBlock;
        const float* r1 = panel + std::int64_t{cols[j + 1]} * kSparseBlock;
        const __m512 w0 = _mm512_set1_ps(vals[j]), w1 = _mm512_set1_ps(vals[j + 1]);
        e0 = _mm512_fmadd_ps(w0, _mm512_load_ps(r0), e0);
        e1 = _mm512_fmadd_ps(w0, _mm512_load_ps(r0 + 16), e1);
        o0 = _mm512_fmadd_ps(w1, _mm512_load_ps(r1), o0);
        o1 = _mm512_fmadd_ps(w1, _mm512_load_ps(r1 + 16), o1);
      }
      if (j < end) {
        const float* r0 = panel + std::int64_t{cols[j]} * kSparseBlock;
        const __m512 w0 = _mm512_set1_ps(vals[j]);
        e0 = _mm512_fmadd_ps(w0, _mm512_load_ps(r0), e0);
        e1 = _mm512_fmadd_ps(w0, _mm512_load_ps(r0 + 16), e1);
      }
      __m512 y0 = _mm512_add_ps(e0, o0), y1 = _mm512_add_ps(e1, o1);
      if (bias) {
        const __m512 bv = _mm512_set1_ps(bias[n + h]);
        y0 = _mm512_add_ps(y0, bv);
        y1 = _mm512_add_ps(y1, bv);
      }
      if (relu) {
        y0 = relu512(y0);
        y1 = relu512(y1);
      }
      _mm512_store_ps(tile + (n + h - n0) * kSparseBlock, y0);
      _mm512_store_ps(tile + (n + h - n0) * kSparseBlock + 16, y1);
    }
  }
  if (n < n1)
    sparse_channel_avx512(panel, cols, vals, W.row_begin(n), W.row_begin(n + 1),
                          bias ? bias + n : nullptr, relu, tile + (n - n0) * kSparseBlock);
  store_tile_32(tile, n1 - n0, rows, Y + n0, ldy);
}

namespace detail_sparse {

/// The 32 pixels' sums of one output channel's quads [q0, q1), on top of
/// init: acc[i] holds pixels 4i..4i+3 and 16+4i..16+4i+3. Every pair of a
/// quad's weights fits vpmaddubsw's int16 (SparseWeightsS8), on either grid.
COMPRESSOR_F32_AVX2 inline void quad_dots(const std::uint8_t* panel, const std::uint32_t* off,
                                          const std::int32_t* w, std::int64_t q0, std::int64_t q1,
                                          std::int32_t init, __m256i acc[4]) {
  __m256i a0 = _mm256_set1_epi32(init), a1 = a0, a2 = a0, a3 = a0;
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::int64_t q = q0; q < q1; ++q) {
    const std::uint32_t* o = off + 4 * q;
    const __m256i x0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[0]));
    const __m256i x1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[1]));
    const __m256i x2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[2]));
    const __m256i x3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[3]));
    const __m256i wq = _mm256_set1_epi32(w[q]);
    const __m256i t0 = _mm256_unpacklo_epi8(x0, x1), t1 = _mm256_unpackhi_epi8(x0, x1);
    const __m256i t2 = _mm256_unpacklo_epi8(x2, x3), t3 = _mm256_unpackhi_epi8(x2, x3);
    const __m256i p0 = _mm256_unpacklo_epi16(t0, t2), p1 = _mm256_unpackhi_epi16(t0, t2);
    const __m256i p2 = _mm256_unpacklo_epi16(t1, t3), p3 = _mm256_unpackhi_epi16(t1, t3);
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(p0, wq), ones));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(p1, wq), ones));
    a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_maddubs_epi16(p2, wq), ones));
    a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_maddubs_epi16(p3, wq), ones));
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/// tile (rows of 32 bytes, one per channel, pixels in order) -> Y: channels
/// [0, N) of pixel rows [0, rows).
COMPRESSOR_F32_AVX2 inline void store_tile_u8(const std::uint8_t* tile, std::int64_t N, int rows,
                                              std::uint8_t* Y, std::int64_t ldy) {
  for (std::int64_t n0 = 0; n0 < N; n0 += 16) {
    const int cols = static_cast<int>(std::min<std::int64_t>(16, N - n0));
    __m256i r[16];
    for (int i = 0; i < 16; ++i)
      r[i] = _mm256_load_si256(
          reinterpret_cast<const __m256i*>(tile + (n0 + std::min(i, cols - 1)) * kSparseBlock));
    transpose16x16_lanes(r);  // r[j]: pixel j | pixel 16 + j, 16 channels each
    alignas(32) std::uint8_t t[32];
    for (int j = 0; j < 16; ++j)
      for (int h = 0; h < 2; ++h) {
        const int p = 16 * h + j;
        if (p >= rows) continue;
        const __m128i v = h ? _mm256_extracti128_si256(r[j], 1) : _mm256_castsi256_si128(r[j]);
        std::uint8_t* d = Y + p * ldy + n0;
        if (cols == 16) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(d), v);
        } else {
          _mm_store_si128(reinterpret_cast<__m128i*>(t), v);
          std::memcpy(d, t, static_cast<std::size_t>(cols));
        }
      }
  }
}

}  // namespace detail_sparse

/// One int8 unit on the AVX2 instructions (every SIMD path): output
/// channels [n0, n1) of Y rows [0, rows); panel: K*32 bytes, tile:
/// (n1 - n0)*32 Epi::Out of scratch (both 64-byte aligned); pack = false:
/// panel holds these X rows already (from the caller's last unit).
template <GemmEpilogue Epi>
COMPRESSOR_F32_AVX2 void sparse_block_u8s8_avx2(const std::uint8_t* X, std::int64_t ldx, int rows,
                                                std::int32_t za, const SparseWeightsS8& W,
                                                const Epi& epi, typename Epi::Out* Y,
                                                std::int64_t ldy, std::uint8_t* panel,
                                                typename Epi::Out* tile, std::int64_t n0,
                                                std::int64_t n1, bool pack) {
  using namespace detail_sparse;
  if (pack) pack_panel_u8(X, ldx, rows, W.k(), panel);
  const std::uint32_t* off = W.quad_offsets();
  const std::int32_t* wq = W.quad_weights();
  for (std::int64_t n = n0; n < n1; ++n) {
    __m256i acc[4];  // pixels 0-3 | 16-19, 4-7 | 20-23, 8-11 | 24-27, 12-15 | 28-31
    const std::int32_t init = (epi.bias ? epi.bias[n] : 0) - za * W.row_sums()[n];
    quad_dots(panel, off, wq, W.quad_begin(n), W.quad_begin(n + 1), init, acc);
    auto* t = tile + (n - n0) * kSparseBlock;
    if constexpr (std::is_same_v<Epi, RequantOut>) {
      // The dense epilogue's integer-domain form of the rule (see
      // simd/gemm_u8s8.hpp): round (vcvtps2dq, to nearest even), saturating
      // packs, + zp, byte clamp. min(65536, v) keeps a NaN v (vminps returns
      // its second operand), which converts to INT32_MIN and ends at qmin.
      const __m256 m = _mm256_set1_ps(epi.multiplier[n]), cap = _mm256_set1_ps(65536.f);
      __m256i q[4];
      for (int i = 0; i < 4; ++i)
        q[i] = _mm256_cvtps_epi32(_mm256_min_ps(cap, _mm256_mul_ps(_mm256_cvtepi32_ps(acc[i]), m)));
      const __m256i zp = _mm256_set1_epi16(static_cast<std::int16_t>(epi.zero_point));
      const __m256i lo = _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), zp);  // 0-7 | 16-23
      const __m256i hi = _mm256_adds_epi16(_mm256_packs_epi32(q[2], q[3]), zp);  // 8-15 | 24-31
      const __m256i b = _mm256_packus_epi16(lo, hi);                             // 0-31 in order
      const __m256i qmin = _mm256_set1_epi8(static_cast<char>(epi.qmin));
      const __m256i qmax = _mm256_set1_epi8(static_cast<char>(epi.qmax));
      _mm256_store_si256(reinterpret_cast<__m256i*>(t),
                         _mm256_min_epu8(_mm256_max_epu8(b, qmin), qmax));
    } else {
      // Pixels in order: 0-7, 8-15, 16-23, 24-31.
      const __m256i v[4] = {_mm256_permute2x128_si256(acc[0], acc[1], 0x20),
                            _mm256_permute2x128_si256(acc[2], acc[3], 0x20),
                            _mm256_permute2x128_si256(acc[0], acc[1], 0x31),
                            _mm256_permute2x128_si256(acc[2], acc[3], 0x31)};
      for (int i = 0; i < 4; ++i) {
        if constexpr (std::is_same_v<Epi, Int32Out>) {
          _mm256_store_si256(reinterpret_cast<__m256i*>(t + 8 * i), v[i]);
        } else {
          __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(v[i]), _mm256_set1_ps(epi.scale[n]));
          if (epi.relu) y = _mm256_max_ps(y, _mm256_setzero_ps());
          _mm256_store_ps(t + 8 * i, y);
        }
      }
    }
  }
  if constexpr (std::is_same_v<Epi, RequantOut>)
    store_tile_u8(tile, n1 - n0, rows, Y + n0, ldy);
  else
    store_tile_32(tile, n1 - n0, rows, Y + n0, ldy);
}

#endif  // COMPRESSOR_X86

}  // namespace compressor::kernels::simd
