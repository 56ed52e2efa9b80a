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
//  int8, AVX2 (avx2 and avx512): uint8 panel (32 bytes per k); the nonzeros
//                 of a row go by quads (SparseWeightsS8): the 4 panel rows of
//                 a quad are interleaved with vpunpck{l,h}{bw,wd} into 4
//                 bytes (k0..k3) per pixel, and one vpmaddubsw + vpmaddwd(ones)
//                 + vpaddd per 8 pixels against the broadcast 4 weights,
//                 on either weight grid (full-grid quads hold only pairs
//                 that cannot saturate, sparse_weights.hpp);
//  int8, AVX-VNNI: the same with one vpdpbusd (ymm) per 8 pixels;
//  int8, AVX512-VNNI: blocks of 64 pixels (a 64-byte panel row per k), the
//                 same interleave on zmm and one vpdpbusd per 16 pixels:
//                 about a third of the AVX2 kernel's instructions per product;
//                 a block of at most 16 pixels (one frame's 4 x 4 layers, a
//                 last block) goes by k-groups or by quads instead
//                 (SparseWeightsS8::small_block_quads): by k-groups, the
//                 panel holds each pixel's 4 bytes of every group of 4
//                 consecutive k, and one zmm load + one vpdpbusd per group
//                 that holds a nonzero of the channel cover all 16 pixels,
//                 with no interleave; by quads (high sparsity), the panel
//                 holds 16 bytes per k, a quad's 4 rows go one per lane and
//                 a vpermd + vpshufb interleave them for one vpdpbusd (the
//                 weights 4 per load, spread by vpshufd, in both).
// Each output is the same sum as the scalar reference (ref/sparse_gemm.hpp:
// fp32 even / odd fma chains in CSR order, then their sum; int8 exact), so
// every path matches it bit for bit. Results go to a per-channel tile and
// are transposed back to the rows (32 pixels at a time). The int8 kernels
// read their rows through SparseRowsU8 (a stride or a table); with RowMax4
// (a conv and its 2x2 max pool) the rows come by pool window, the panel
// puts each window's 4 taps in 4 accumulator registers (or lanes) at the
// same place (panel_position), and each channel's tile row holds the
// windows' requantized maxima.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/simd/arch/avx2/gemm_u8s8.hpp"
#include "compressor/kernels/simd/arch/avx512/gemm_u8s8.hpp"
#include "compressor/kernels/simd/sgemm.hpp"
#include "compressor/kernels/simd/target.hpp"
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

/// tile (N rows of `stride` elements, one per channel; pixels 0..rows-1 of
/// each, rows <= 32) -> Y (rows x N), for 4-byte T: 8 x 8 transposes, the
/// last rows % 8 pixels through a scratch 8 x 8.
template <class T>
COMPRESSOR_F32_AVX2 inline void store_tile_32(const T* tile, std::int64_t N, int rows, T* Y,
                                              std::int64_t ldy,
                                              std::int64_t stride = kSparseBlock) {
  static_assert(sizeof(T) == 4);
  const auto* src = reinterpret_cast<const float*>(tile);
  auto* dst = reinterpret_cast<float*>(Y);
  std::int64_t n = 0;
  for (; n + 8 <= N; n += 8) {
    int p = 0;
    for (; p + 8 <= rows; p += 8)
      transpose8x8(src + n * stride + p, stride, dst + p * ldy + n, ldy);
    if (p < rows) {
      alignas(32) float t[8 * 8];
      transpose8x8(src + n * stride + p, stride, t, 8);
      for (int q = p; q < rows; ++q)
        std::memcpy(dst + q * ldy + n, t + (q - p) * 8, 8 * sizeof(float));
    }
  }
  for (int p = 0; p < rows; ++p)
    for (std::int64_t c = n; c < N; ++c) Y[p * ldy + c] = tile[c * stride + p];
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

/// The panel position of block row p (and the block row of panel position
/// p: the map is its own inverse). In pixel order, p. In window order (the
/// rows of a conv with a 2x2 max pool, RowMax4: row 4j + t is tap t of
/// window j), within each 16 rows, row 4j + t goes to position 4t + j: the
/// quad and k-group kernels' accumulators then hold the 4 taps of a window
/// at one lane of 4 registers (or 4 lanes of one), and a vertical max gives
/// the windows in order (window_max_*).
inline int panel_position(int p, bool windows) {
  return windows ? (p & ~15) | (p & 3) << 2 | (p & 15) >> 2 : p;
}

/// panel[k * 32 + panel_position(p)] = X[p, k] for p < rows, 0 for the
/// rest (uint8), by 16 x 16 byte transposes, two per register (k 0-15 and
/// 16-31 of 16 pixels: measured faster than pixels 0-15 and 16-31 of 32 k
/// values).
COMPRESSOR_F32_AVX2 inline void pack_panel_u8(const SparseRowsU8& X, int rows, std::int64_t K,
                                              std::uint8_t* panel, bool windows = false) {
  alignas(32) std::uint8_t tmp[kSparseBlock][32];  // a partial chunk, zero-padded
  const SparseRowsU8 padded{tmp[0], 32, nullptr};
  for (std::int64_t k0 = 0; k0 < K; k0 += 32) {
    const int width = static_cast<int>(std::min<std::int64_t>(32, K - k0));
    const SparseRowsU8* src = &X;
    std::int64_t k = k0;
    bool order = windows;  // rows still to be put in panel order
    if (width < 32 || rows < kSparseBlock) {
      std::memset(tmp, 0, sizeof(tmp));
      for (int p = 0; p < rows; ++p)
        std::memcpy(tmp[panel_position(p, windows)], X.row(p) + k0,
                    static_cast<std::size_t>(width));
      src = &padded;
      k = 0;
      order = false;
    }
    for (int half = 0; half < 2; ++half) {
      __m256i r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(src->row(16 * half + panel_position(i, order)) + k));
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

/// A quad's 4 panel rows (byte offsets o[0..3]) interleaved into 4 bytes
/// (k0..k3) per pixel: p[i] holds pixels 4i..4i+3 and 16+4i..16+4i+3.
COMPRESSOR_INLINE_AVX2 void interleave_quad(const std::uint8_t* panel, const std::uint32_t* o,
                                            __m256i p[4]) {
  const __m256i x0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[0]));
  const __m256i x1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[1]));
  const __m256i x2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[2]));
  const __m256i x3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[3]));
  const __m256i t0 = _mm256_unpacklo_epi8(x0, x1), t1 = _mm256_unpackhi_epi8(x0, x1);
  const __m256i t2 = _mm256_unpacklo_epi8(x2, x3), t3 = _mm256_unpackhi_epi8(x2, x3);
  p[0] = _mm256_unpacklo_epi16(t0, t2);
  p[1] = _mm256_unpackhi_epi16(t0, t2);
  p[2] = _mm256_unpacklo_epi16(t1, t3);
  p[3] = _mm256_unpackhi_epi16(t1, t3);
}

/// The 32 pixels' sums of one output channel's quads [q0, q1), on top of
/// init: acc[i] holds pixels 4i..4i+3 and 16+4i..16+4i+3. Every pair of a
/// quad's weights fits vpmaddubsw's int16 (SparseWeightsS8), on either grid.
COMPRESSOR_INLINE_AVX2 void quad_dots(const std::uint8_t* panel, const std::uint32_t* off,
                                      const std::int32_t* w, std::int64_t q0, std::int64_t q1,
                                      std::int32_t init, __m256i acc[4]) {
  __m256i a0 = _mm256_set1_epi32(init), a1 = a0, a2 = a0, a3 = a0;
  const __m256i ones = _mm256_set1_epi16(1);
  for (std::int64_t q = q0; q < q1; ++q) {
    __m256i p[4];
    interleave_quad(panel, off + 4 * q, p);
    const __m256i wq = _mm256_set1_epi32(w[q]);
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(p[0], wq), ones));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(p[1], wq), ones));
    a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_maddubs_epi16(p[2], wq), ones));
    a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_maddubs_epi16(p[3], wq), ones));
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/// quad_dots with AVX-VNNI: one vpdpbusd per 8 pixels (the 4 products of a
/// quad summed straight into int32: exact on either grid).
COMPRESSOR_INLINE_AVX_VNNI void quad_dots_vnni(const std::uint8_t* panel, const std::uint32_t* off,
                                               const std::int32_t* w, std::int64_t q0,
                                               std::int64_t q1, std::int32_t init, __m256i acc[4]) {
  __m256i a0 = _mm256_set1_epi32(init), a1 = a0, a2 = a0, a3 = a0;
  for (std::int64_t q = q0; q < q1; ++q) {
    __m256i p[4];
    interleave_quad(panel, off + 4 * q, p);
    const __m256i wq = _mm256_set1_epi32(w[q]);
    ymm::dpbusd(a0, p[0], wq);
    ymm::dpbusd(a1, p[1], wq);
    ymm::dpbusd(a2, p[2], wq);
    ymm::dpbusd(a3, p[3], wq);
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/// tile (rows of 32 bytes, one per channel, pixels in order) -> Y: channels
/// [0, N) of pixel rows [0, rows), rows <= 32; stride: bytes per tile row.
COMPRESSOR_F32_AVX2 inline void store_tile_u8(const std::uint8_t* tile, std::int64_t N, int rows,
                                              std::uint8_t* Y, std::int64_t ldy,
                                              std::int64_t stride = kSparseBlock) {
  for (std::int64_t n0 = 0; n0 < N; n0 += 16) {
    const int cols = static_cast<int>(std::min<std::int64_t>(16, N - n0));
    __m256i r[16];
    for (int i = 0; i < 16; ++i)
      r[i] = _mm256_load_si256(
          reinterpret_cast<const __m256i*>(tile + (n0 + std::min(i, cols - 1)) * stride));
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

/// Channel n's 32 sums (quad_dots' layout) through the epilogue into its
/// tile row t (pixels in order).
template <GemmEpilogue Epi>
COMPRESSOR_INLINE_AVX2 void epilogue_32(const __m256i acc[4], const Epi& epi, std::int64_t n,
                                        typename Epi::Out* t) {
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

/// The epilogue of 8 sums (in order) into tile row t (32 Out written, the
/// first 8 the outputs: store_tile_u8 reads whole 32-byte rows).
template <GemmEpilogue Epi>
COMPRESSOR_INLINE_AVX2 void epilogue_8(__m256i acc, const Epi& epi, std::int64_t n,
                                       typename Epi::Out* t) {
  if constexpr (std::is_same_v<Epi, RequantOut>) {
    // epilogue_32's steps on one register; vpacks* work within 128-bit
    // lanes: lane 0 ends with outputs 0-3 in each dword, lane 1 with 4-7.
    const __m256 m = _mm256_set1_ps(epi.multiplier[n]), cap = _mm256_set1_ps(65536.f);
    const __m256i q =
        _mm256_cvtps_epi32(_mm256_min_ps(cap, _mm256_mul_ps(_mm256_cvtepi32_ps(acc), m)));
    const __m256i zp = _mm256_set1_epi16(static_cast<std::int16_t>(epi.zero_point));
    const __m256i h = _mm256_adds_epi16(_mm256_packs_epi32(q, q), zp);
    const __m256i qmin = _mm256_set1_epi8(static_cast<char>(epi.qmin));
    const __m256i qmax = _mm256_set1_epi8(static_cast<char>(epi.qmax));
    const __m256i b = _mm256_min_epu8(_mm256_max_epu8(_mm256_packus_epi16(h, h), qmin), qmax);
    const __m128i v = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    _mm256_store_si256(reinterpret_cast<__m256i*>(t), _mm256_set_m128i(v, v));
  } else if constexpr (std::is_same_v<Epi, Int32Out>) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(t), acc);
  } else {
    __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(epi.scale[n]));
    if (epi.relu) y = _mm256_max_ps(y, _mm256_setzero_ps());
    _mm256_store_ps(t, y);
  }
}

/// The epilogue a kernel applies for Epi: Epi itself, or RowMax4<B>'s B
/// (applied to the max of each window's 4 sums).
template <class Epi>
struct BaseEpilogue {
  using type = Epi;
};
template <class B>
struct BaseEpilogue<RowMax4<B>> {
  using type = B;
};
template <class Epi>
inline constexpr bool kWindows = gemm_rows_per_output<Epi> == 4;

/// The max of each window's 4 sums of a block in window order
/// (panel_position): acc[i] holds tap i of windows 4L..4L+3 at lane L, so
/// the vertical max holds windows 0-7 in order.
COMPRESSOR_INLINE_AVX2 __m256i window_max_ymm(const __m256i acc[4]) {
  return _mm256_max_epi32(_mm256_max_epi32(acc[0], acc[1]), _mm256_max_epi32(acc[2], acc[3]));
}

/// The tile of channels [0, N) (rows of `stride` Out, rows <= 32 pixels) -> Y.
template <GemmEpilogue Epi>
COMPRESSOR_F32_AVX2 inline void store_tile(const typename Epi::Out* tile, std::int64_t N, int rows,
                                           typename Epi::Out* Y, std::int64_t ldy,
                                           std::int64_t stride) {
  if constexpr (std::is_same_v<Epi, RequantOut>)
    store_tile_u8(tile, N, rows, Y, ldy, stride);
  else
    store_tile_32(tile, N, rows, Y, ldy, stride);
}

/// The zero-point-corrected start of channel n's sums: bias - za * sum_k w.
template <GemmEpilogue Epi>
inline std::int32_t sum_init(const Epi& epi, std::int32_t za, const SparseWeightsS8& W,
                             std::int64_t n) {
  return (epi.bias ? epi.bias[n] : 0) - za * W.row_sums()[n];
}

/// Channel n's 32 sums of a ymm quad kernel (quad_dots' layout) into its
/// tile row t: epilogue_32 of the 32, or for RowMax4 epilogue_8 of the 8
/// windows' maxima.
template <GemmEpilogue Epi>
COMPRESSOR_INLINE_AVX2 void store_sums(const __m256i acc[4], const Epi& epi, std::int64_t n,
                                       typename Epi::Out* t) {
  if constexpr (kWindows<Epi>)
    epilogue_8(window_max_ymm(acc), static_cast<const typename BaseEpilogue<Epi>::type&>(epi), n,
               t);
  else
    epilogue_32(acc, epi, n, t);
}

}  // namespace detail_sparse

/// One int8 unit on the AVX2 instructions (avx2 and avx512): output
/// channels [n0, n1) of Y rows [0, rows) (RowMax4: rows / 4, from rows by
/// window) from the rows of X; panel: K*32 bytes, tile: (n1 - n0)*32
/// Epi::Out of scratch (both 64-byte aligned); pack = false: panel holds
/// these X rows already (from the caller's last unit).
template <GemmEpilogue Epi>
COMPRESSOR_TARGET_AVX2 void sparse_block_u8s8_avx2(const SparseRowsU8& X, int rows, std::int32_t za,
                                                   const SparseWeightsS8& W, const Epi& epi,
                                                   typename Epi::Out* Y, std::int64_t ldy,
                                                   std::uint8_t* panel, typename Epi::Out* tile,
                                                   std::int64_t n0, std::int64_t n1, bool pack) {
  using namespace detail_sparse;
  if (pack) pack_panel_u8(X, rows, W.k(), panel, kWindows<Epi>);
  for (std::int64_t n = n0; n < n1; ++n) {
    __m256i acc[4];  // pixels 0-3 | 16-19, 4-7 | 20-23, 8-11 | 24-27, 12-15 | 28-31
    quad_dots(panel, W.quad_offsets(), W.quad_weights(), W.quad_begin(n), W.quad_begin(n + 1),
              sum_init(epi, za, W, n), acc);
    store_sums(acc, epi, n, tile + (n - n0) * kSparseBlock);
  }
  store_tile<typename BaseEpilogue<Epi>::type>(tile, n1 - n0, rows / gemm_rows_per_output<Epi>,
                                               Y + n0, ldy, kSparseBlock);
}

/// sparse_block_u8s8_avx2 with AVX-VNNI's vpdpbusd (ymm, 32-pixel blocks).
template <GemmEpilogue Epi>
COMPRESSOR_TARGET_AVX_VNNI void sparse_block_u8s8_avx_vnni(
    const SparseRowsU8& X, int rows, std::int32_t za, const SparseWeightsS8& W, const Epi& epi,
    typename Epi::Out* Y, std::int64_t ldy, std::uint8_t* panel, typename Epi::Out* tile,
    std::int64_t n0, std::int64_t n1, bool pack) {
  using namespace detail_sparse;
  if (pack) pack_panel_u8(X, rows, W.k(), panel, kWindows<Epi>);
  for (std::int64_t n = n0; n < n1; ++n) {
    __m256i acc[4];
    quad_dots_vnni(panel, W.quad_offsets(), W.quad_weights(), W.quad_begin(n), W.quad_begin(n + 1),
                   sum_init(epi, za, W, n), acc);
    store_sums(acc, epi, n, tile + (n - n0) * kSparseBlock);
  }
  store_tile<typename BaseEpilogue<Epi>::type>(tile, n1 - n0, rows / gemm_rows_per_output<Epi>,
                                               Y + n0, ldy, kSparseBlock);
}

/// Pixels per block of the AVX512-VNNI int8 kernel: one zmm per panel row.
inline constexpr int kSparseBlockZmm = 64;

namespace detail_sparse {

/// One quad of quad_dots_zmm into the accumulators s[0..3].
COMPRESSOR_INLINE_AVX512_VNNI void quad_step_zmm(const std::uint8_t* panel,
                                                 const std::uint32_t* off, const std::int32_t* w,
                                                 std::int64_t q, __m512i* s) {
  const std::uint32_t* o = off + 4 * q;
  const __m512i x0 = _mm512_load_si512(panel + 2 * std::size_t{o[0]});
  const __m512i x1 = _mm512_load_si512(panel + 2 * std::size_t{o[1]});
  const __m512i x2 = _mm512_load_si512(panel + 2 * std::size_t{o[2]});
  const __m512i x3 = _mm512_load_si512(panel + 2 * std::size_t{o[3]});
  const __m512i wq = _mm512_set1_epi32(w[q]);
  const __m512i t0 = _mm512_unpacklo_epi8(x0, x1), t1 = _mm512_unpackhi_epi8(x0, x1);
  const __m512i t2 = _mm512_unpacklo_epi8(x2, x3), t3 = _mm512_unpackhi_epi8(x2, x3);
  zmm::dpbusd(s[0], _mm512_unpacklo_epi16(t0, t2), wq);
  zmm::dpbusd(s[1], _mm512_unpackhi_epi16(t0, t2), wq);
  zmm::dpbusd(s[2], _mm512_unpacklo_epi16(t1, t3), wq);
  zmm::dpbusd(s[3], _mm512_unpackhi_epi16(t1, t3), wq);
}

/// The 64 pixels' sums of one channel's quads [q0, q1) on top of init, with
/// zmm vpdpbusd on the 64-byte panel rows (quad offsets are k * 32: doubled):
/// acc[i]'s 128-bit lane L holds pixels 16L+4i..16L+4i+3.
COMPRESSOR_INLINE_AVX512_VNNI void quad_dots_zmm(const std::uint8_t* panel,
                                                 const std::uint32_t* off, const std::int32_t* w,
                                                 std::int64_t q0, std::int64_t q1,
                                                 std::int32_t init, __m512i acc[4]) {
  static_assert(kSparseBlockZmm == 2 * SparseWeightsS8::kQuadStride);
  // Even and odd quads into two accumulator sets: eight vpdpbusd chains.
  __m512i a[8];
  a[0] = a[1] = a[2] = a[3] = _mm512_set1_epi32(init);
  a[4] = a[5] = a[6] = a[7] = _mm512_setzero_si512();
  std::int64_t q = q0;
  for (; q + 2 <= q1; q += 2) {
    quad_step_zmm(panel, off, w, q, a);
    quad_step_zmm(panel, off, w, q + 1, a + 4);
  }
  if (q < q1) quad_step_zmm(panel, off, w, q, a);
  for (int i = 0; i < 4; ++i) acc[i] = _mm512_add_epi32(a[i], a[i + 4]);
}

/// transpose16x16_lanes on zmm: four 16 x 16 byte blocks at once, one per
/// 128-bit lane. (All-lanes maskz forms where GCC 12 warns about the plain
/// intrinsics' undefined pass-through; the same instructions.)
COMPRESSOR_INLINE_AVX512 void transpose16x16_lanes_zmm(__m512i r[16]) {
  constexpr auto m16 = static_cast<__mmask16>(0xFFFF);
  constexpr auto m8 = static_cast<__mmask8>(0xFF);
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i)
    for (int h = 0; h < 2; ++h) {
      r[4 * i + 2 * h] = _mm512_unpacklo_epi16(t[4 * i + h], t[4 * i + 2 + h]);
      r[4 * i + 2 * h + 1] = _mm512_unpackhi_epi16(t[4 * i + h], t[4 * i + 2 + h]);
    }
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 4; ++c) {
      t[8 * i + 2 * c] = _mm512_maskz_unpacklo_epi32(m16, r[8 * i + c], r[8 * i + 4 + c]);
      t[8 * i + 2 * c + 1] = _mm512_maskz_unpackhi_epi32(m16, r[8 * i + c], r[8 * i + 4 + c]);
    }
  for (int c = 0; c < 8; ++c) {
    r[2 * c] = _mm512_maskz_unpacklo_epi64(m8, t[c], t[8 + c]);
    r[2 * c + 1] = _mm512_maskz_unpackhi_epi64(m8, t[c], t[8 + c]);
  }
}

/// A 4 x 4 transpose of 128-bit lanes: v[j] = lane j of a, b, c, d (in
/// that order). (The all-lanes maskz form: GCC 12 warns about the plain
/// intrinsic's undefined pass-through.)
COMPRESSOR_INLINE_AVX512 void transpose4x4_lanes_zmm(__m512i a, __m512i b, __m512i c, __m512i d,
                                                     __m512i v[4]) {
  constexpr auto all = static_cast<__mmask16>(0xFFFF);
  const __m512i s0 = _mm512_maskz_shuffle_i32x4(all, a, b, 0x44);  // a0 a1 b0 b1
  const __m512i s1 = _mm512_maskz_shuffle_i32x4(all, a, b, 0xEE);  // a2 a3 b2 b3
  const __m512i s2 = _mm512_maskz_shuffle_i32x4(all, c, d, 0x44);  // c0 c1 d0 d1
  const __m512i s3 = _mm512_maskz_shuffle_i32x4(all, c, d, 0xEE);  // c2 c3 d2 d3
  v[0] = _mm512_maskz_shuffle_i32x4(all, s0, s2, 0x88);
  v[1] = _mm512_maskz_shuffle_i32x4(all, s0, s2, 0xDD);
  v[2] = _mm512_maskz_shuffle_i32x4(all, s1, s3, 0x88);
  v[3] = _mm512_maskz_shuffle_i32x4(all, s1, s3, 0xDD);
}

/// 128-bit lane l of v (the all-lanes maskz form: GCC 12 warns about the
/// undefined pass-through of _mm512_extracti32x4_epi32 and of
/// _mm512_castsi512_si128).
COMPRESSOR_INLINE_AVX512 __m128i extract_lane(__m512i v, int l) {
  constexpr auto m4 = static_cast<__mmask8>(0xF);
  switch (l) {
    case 0:
      return _mm512_maskz_extracti32x4_epi32(m4, v, 0);
    case 1:
      return _mm512_maskz_extracti32x4_epi32(m4, v, 1);
    case 2:
      return _mm512_maskz_extracti32x4_epi32(m4, v, 2);
    default:
      return _mm512_maskz_extracti32x4_epi32(m4, v, 3);
  }
}

/// 64 zero bytes: the source of a panel position with no pixel.
alignas(64) inline constexpr std::uint8_t kZeroRow64[64] = {};

/// Columns [k0, k0 + width) of pack_panel_u8_zmm's panel, width a multiple
/// of 16 and the columns inside one tap: per 16 columns, register i holds
/// 16 bytes of the pixels at positions i, 16 + i, 32 + i and 48 + i (one per
/// 128-bit lane), and one transpose of the four 16 x 16 blocks gives 16 whole
/// 64-byte panel rows, stored as they are.
COMPRESSOR_INLINE_AVX512 void pack_columns_u8_zmm(const SparseRowsU8& X, int rows, std::int64_t k0,
                                                  int width, std::uint8_t* panel, bool windows) {
  const std::uint8_t* src[kSparseBlockZmm];  // each position's row at column k0
  const SparseRowsU8::Column col = X.column(k0);
  for (int pos = 0; pos < kSparseBlockZmm; ++pos) {
    const int p = panel_position(pos, windows);
    src[pos] = p < rows ? X.at(p, col) : kZeroRow64;
  }
  for (int c = 0; c < width; c += 16) {
    __m512i r[16];
    for (int i = 0; i < 16; ++i) {
      const auto piece = [&](int lane) {
        return _mm_loadu_si128(reinterpret_cast<const __m128i*>(src[16 * lane + i] + c));
      };
      // (The maskz form for lane 0: GCC 12 warns about the plain
      // intrinsic's undefined pass-through.)
      __m512i v = _mm512_maskz_broadcast_i32x4(static_cast<__mmask16>(0x000F), piece(0));
      v = _mm512_mask_broadcast_i32x4(v, static_cast<__mmask16>(0x00F0), piece(1));
      v = _mm512_mask_broadcast_i32x4(v, static_cast<__mmask16>(0x0F00), piece(2));
      r[i] = _mm512_mask_broadcast_i32x4(v, static_cast<__mmask16>(0xF000), piece(3));
    }
    transpose16x16_lanes_zmm(r);  // r[j]: column k0 + c + j of the 64 positions
    for (int j = 0; j < 16; ++j) _mm512_store_si512(panel + (k0 + c + j) * kSparseBlockZmm, r[j]);
  }
}

/// The zmm kernel's panel: panel[k * 64 + p] = X[p, k] for p < rows, 0 for
/// the rest. Columns by pack_columns_u8_zmm where their width allows (every
/// column of a K that is a multiple of 16), else per 16 pixels and 64 k, one
/// zmm transpose of four 16 x 16 blocks (half the shuffles per byte of
/// pack_panel_u8's ymm ones) and 16-byte stores.
COMPRESSOR_INLINE_AVX512 void pack_panel_u8_zmm(const SparseRowsU8& X, int rows, std::int64_t K,
                                                std::uint8_t* panel, bool windows = false) {
  alignas(64) std::uint8_t tmp[16][64];  // a partial chunk, zero-padded
  for (std::int64_t k0 = 0; k0 < K; k0 += 64) {
    const int width = static_cast<int>(std::min<std::int64_t>(64, K - k0));
    if (width % 16 == 0) {
      pack_columns_u8_zmm(X, rows, k0, width, panel, windows);
      continue;
    }
    // The last columns of a K that is no multiple of 16: per 16 pixels,
    // copied into tmp first.
    const SparseRowsU8::Column col = X.column(k0);
    for (int p0 = 0; p0 < kSparseBlockZmm; p0 += 16) {
      if (p0 >= rows) {  // no pixels left: zeros
        for (int j = 0; j < width; ++j)
          _mm_store_si128(reinterpret_cast<__m128i*>(panel + (k0 + j) * kSparseBlockZmm + p0),
                          _mm_setzero_si128());
        continue;
      }
      std::memset(tmp, 0, sizeof(tmp));
      for (int p = p0; p < std::min(rows, p0 + 16); ++p)
        std::memcpy(tmp[panel_position(p - p0, windows)], X.at(p, col),
                    static_cast<std::size_t>(width));
      __m512i r[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm512_load_si512(tmp[i]);
      transpose16x16_lanes_zmm(r);  // r[j], lane L: k0 + 16L + j, 16 pixels
      for (int j = 0; j < 16; ++j) {
        std::uint8_t* d = panel + (k0 + j) * kSparseBlockZmm + p0;
        for (int l = 0; l < 4; ++l)
          if (16 * l + j < width)
            _mm_store_si128(reinterpret_cast<__m128i*>(d + 16 * l * kSparseBlockZmm),
                            extract_lane(r[j], l));
      }
    }
  }
}

/// epilogue_32 for 64 pixels (quad_dots_zmm's layout) into tile row t.
template <GemmEpilogue Epi>
COMPRESSOR_INLINE_AVX512 void epilogue_64(const __m512i acc[4], const Epi& epi, std::int64_t n,
                                          typename Epi::Out* t) {
  if constexpr (std::is_same_v<Epi, RequantOut>) {
    // epilogue_32's steps on zmm (vpacks* work within 128-bit lanes, so
    // lane L ends up holding pixels 16L..16L+15 in order).
    const __m512 m = _mm512_set1_ps(epi.multiplier[n]), cap = _mm512_set1_ps(65536.f);
    __m512i q[4];
    for (int i = 0; i < 4; ++i)
      q[i] = zmm::cvt_epi32(zmm::min_ps(cap, _mm512_mul_ps(zmm::cvt_ps(acc[i]), m)));
    const __m512i zp = _mm512_set1_epi16(static_cast<std::int16_t>(epi.zero_point));
    const __m512i lo = _mm512_adds_epi16(_mm512_packs_epi32(q[0], q[1]), zp);
    const __m512i hi = _mm512_adds_epi16(_mm512_packs_epi32(q[2], q[3]), zp);
    const __m512i b = _mm512_packus_epi16(lo, hi);
    const __m512i qmin = _mm512_set1_epi8(static_cast<char>(epi.qmin));
    const __m512i qmax = _mm512_set1_epi8(static_cast<char>(epi.qmax));
    _mm512_store_si512(t, _mm512_min_epu8(_mm512_max_epu8(b, qmin), qmax));
  } else {
    // v[j] = lane j of acc[0..3] = pixels 16j..16j+15 in order.
    __m512i v[4];
    transpose4x4_lanes_zmm(acc[0], acc[1], acc[2], acc[3], v);
    for (int i = 0; i < 4; ++i) {
      if constexpr (std::is_same_v<Epi, Int32Out>) {
        _mm512_store_si512(t + 16 * i, v[i]);
      } else {
        __m512 y = _mm512_mul_ps(zmm::cvt_ps(v[i]), _mm512_set1_ps(epi.scale[n]));
        if (epi.relu) y = zmm::max_ps(y, _mm512_setzero_ps());
        _mm512_store_ps(t + 16 * i, y);
      }
    }
  }
}

/// The epilogue of 16 pixels' sums (in order) into tile row t.
template <GemmEpilogue Epi>
COMPRESSOR_INLINE_AVX512 void epilogue_16(__m512i acc, const Epi& epi, std::int64_t n,
                                          typename Epi::Out* t) {
  if constexpr (std::is_same_v<Epi, RequantOut>) {
    // epilogue_32's rule: round, saturate to int16, + zp saturating, to
    // uint8 saturating, byte clamp.
    const __m512 m = _mm512_set1_ps(epi.multiplier[n]), cap = _mm512_set1_ps(65536.f);
    const __m512i q = zmm::cvt_epi32(zmm::min_ps(cap, _mm512_mul_ps(zmm::cvt_ps(acc), m)));
    const __m256i h =
        _mm256_adds_epi16(_mm512_maskz_cvtsepi32_epi16(static_cast<__mmask16>(0xFFFF), q),
                          _mm256_set1_epi16(static_cast<std::int16_t>(epi.zero_point)));
    const __m256i b = _mm256_permute4x64_epi64(_mm256_packus_epi16(h, h), 0x08);
    const __m128i qmin = _mm_set1_epi8(static_cast<char>(epi.qmin));
    const __m128i qmax = _mm_set1_epi8(static_cast<char>(epi.qmax));
    _mm_store_si128(reinterpret_cast<__m128i*>(t),
                    _mm_min_epu8(_mm_max_epu8(_mm256_castsi256_si128(b), qmin), qmax));
  } else if constexpr (std::is_same_v<Epi, Int32Out>) {
    _mm512_store_si512(t, acc);
  } else {
    __m512 y = _mm512_mul_ps(zmm::cvt_ps(acc), _mm512_set1_ps(epi.scale[n]));
    if (epi.relu) y = zmm::max_ps(y, _mm512_setzero_ps());
    _mm512_store_ps(t, y);
  }
}

}  // namespace detail_sparse

/// One int8 unit of the avx512_vnni path: sparse_block_u8s8_avx2 on blocks
/// of 64 pixels with zmm vpdpbusd; panel: K*64 bytes, tile: (n1 - n0)*64
/// Epi::Out (both 64-byte aligned). The tile is stored back as two 32-pixel
/// halves.
template <GemmEpilogue Epi>
COMPRESSOR_TARGET_AVX512_VNNI void sparse_block_u8s8_avx512_vnni(
    const SparseRowsU8& X, int rows, std::int32_t za, const SparseWeightsS8& W, const Epi& epi,
    typename Epi::Out* Y, std::int64_t ldy, std::uint8_t* panel, typename Epi::Out* tile,
    std::int64_t n0, std::int64_t n1, bool pack) {
  using namespace detail_sparse;
  constexpr int half = kSparseBlock;
  using Base = typename BaseEpilogue<Epi>::type;
  if (pack) pack_panel_u8_zmm(X, rows, W.k(), panel, kWindows<Epi>);
  for (std::int64_t n = n0; n < n1; ++n) {
    __m512i acc[4];
    quad_dots_zmm(panel, W.quad_offsets(), W.quad_weights(), W.quad_begin(n), W.quad_begin(n + 1),
                  sum_init(epi, za, W, n), acc);
    if constexpr (kWindows<Epi>)  // acc[i] lane L: tap i of windows 4L..4L+3 (panel_position)
      epilogue_16(zmm::max_epi32(zmm::max_epi32(acc[0], acc[1]), zmm::max_epi32(acc[2], acc[3])),
                  static_cast<const Base&>(epi), n, tile + (n - n0) * kSparseBlockZmm);
    else
      epilogue_64(acc, epi, n, tile + (n - n0) * kSparseBlockZmm);
  }
  if constexpr (kWindows<Epi>) {  // at most 16 windows
    store_tile<Base>(tile, n1 - n0, rows / 4, Y + n0, ldy, kSparseBlockZmm);
  } else {
    for (int h = 0; h < 2 && rows > h * half; ++h)
      store_tile<Epi>(tile + h * half, n1 - n0, std::min(rows - h * half, half),
                      Y + n0 + h * half * ldy, ldy, kSparseBlockZmm);
  }
}

/// Pixels per block of the small-block kernel (blocks of at most 16 rows on
/// the avx512_vnni path: one frame's 4 x 4 last stage, the tail of a 28 x 28
/// one).
inline constexpr int kSparseBlockSmall = 16;

namespace detail_sparse {

/// r[p] = the width (<= 64) bytes of columns k0.. of the row at panel
/// position p of a block of at most 16 rows, zero past the width and for
/// positions past the rows.
COMPRESSOR_INLINE_AVX512 void load_rows16_zmm(const SparseRowsU8& X, int rows, std::int64_t k0,
                                              int width, bool windows, __m512i r[16]) {
  const SparseRowsU8::Column col = X.column(k0);
  if (width == 64) {
    for (int p = 0; p < 16; ++p) {
      const int q = panel_position(p, windows);  // the row at panel position p
      r[p] = q < rows ? _mm512_loadu_si512(X.at(q, col)) : _mm512_setzero_si512();
    }
    return;
  }
  alignas(64) std::uint8_t tmp[kSparseBlockSmall][64];  // a partial chunk, zero-padded
  std::memset(tmp, 0, sizeof(tmp));
  for (int p = 0; p < rows; ++p)
    std::memcpy(tmp[panel_position(p, windows)], X.at(p, col), static_cast<std::size_t>(width));
  for (int p = 0; p < 16; ++p) r[p] = _mm512_load_si512(tmp[p]);
}

/// The small-block kernel's panel: the 4 bytes X[p, 4g..4g+3] of pixel p
/// at panel[g * 64 + 4p] (zero past K and for p >= rows), so one aligned
/// zmm load gives a k-group's 4 activations for all 16 pixels. Per 16
/// groups, a 16 x 16 transpose of int32 lanes.
COMPRESSOR_INLINE_AVX512 void pack_groups_u8_zmm(const SparseRowsU8& X, int rows, std::int64_t K,
                                                 std::uint8_t* panel, bool windows = false) {
  constexpr auto m16 = static_cast<__mmask16>(0xFFFF);
  constexpr auto m8 = static_cast<__mmask8>(0xFF);
  constexpr std::int64_t stride = SparseWeightsS8::kGroupStride;
  const std::int64_t G = (K + 3) / 4;
  for (std::int64_t g0 = 0; g0 < G; g0 += 16) {
    const std::int64_t k0 = 4 * g0, width = std::min<std::int64_t>(64, K - k0);
    const int groups = static_cast<int>(std::min<std::int64_t>(16, G - g0));
    __m512i r[16];
    load_rows16_zmm(X, rows, k0, static_cast<int>(width), windows, r);
    // r[p] lane L: pixel p's groups 4L..4L+3. Within lanes, 4 x 4 blocks.
    __m512i t[16], u[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_maskz_unpacklo_epi32(m16, r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_maskz_unpackhi_epi32(m16, r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
      u[4 * i] = _mm512_maskz_unpacklo_epi64(m8, t[4 * i], t[4 * i + 2]);
      u[4 * i + 1] = _mm512_maskz_unpackhi_epi64(m8, t[4 * i], t[4 * i + 2]);
      u[4 * i + 2] = _mm512_maskz_unpacklo_epi64(m8, t[4 * i + 1], t[4 * i + 3]);
      u[4 * i + 3] = _mm512_maskz_unpackhi_epi64(m8, t[4 * i + 1], t[4 * i + 3]);
    }
    // u[4i + c] lane L: group 4L + c of pixels 4i..4i+3. A 4 x 4 transpose
    // of lanes puts group 4L + c of all 16 pixels in one vector.
    for (int c = 0; c < 4; ++c) {
      __m512i v[4];
      transpose4x4_lanes_zmm(u[c], u[4 + c], u[8 + c], u[12 + c], v);
      for (int l = 0; l < 4; ++l)
        if (4 * l + c < groups) _mm512_store_si512(panel + (g0 + 4 * l + c) * stride, v[l]);
    }
  }
}

/// The small-block kernel's panel for quads: panel[k * 16 + p] = X[p, k]
/// (zero for p >= rows), 16 bytes per k. Per 64 k, one transpose of four
/// 16 x 16 blocks, then 4 x 4 lane transposes into whole 64-byte stores.
COMPRESSOR_INLINE_AVX512 void pack_rows16_u8_zmm(const SparseRowsU8& X, int rows, std::int64_t K,
                                                 std::uint8_t* panel, bool windows = false) {
  constexpr std::int64_t stride = kSparseBlockSmall;  // bytes per k
  for (std::int64_t k0 = 0; k0 < K; k0 += 64) {
    const int width = static_cast<int>(std::min<std::int64_t>(64, K - k0));
    __m512i r[16];
    load_rows16_zmm(X, rows, k0, width, windows, r);
    transpose16x16_lanes_zmm(r);  // r[j], lane L: column k0 + 16L + j of the 16 positions
    if (width == 64) {
      for (int m = 0; m < 4; ++m) {
        __m512i v[4];  // v[L]: columns k0 + 16L + 4m .. + 3, 64 contiguous bytes
        transpose4x4_lanes_zmm(r[4 * m], r[4 * m + 1], r[4 * m + 2], r[4 * m + 3], v);
        for (int l = 0; l < 4; ++l)
          _mm512_store_si512(panel + (k0 + 16 * l + 4 * m) * stride, v[l]);
      }
      continue;
    }
    for (int j = 0; j < 16; ++j)
      for (int l = 0; l < 4; ++l)
        if (16 * l + j < width)
          _mm_store_si128(reinterpret_cast<__m128i*>(panel + (k0 + 16 * l + j) * stride),
                          extract_lane(r[j], l));
  }
}

/// The 16 bytes at p0, p1, p2 and p3 (any alignment) as 128-bit lanes 0-3:
/// two 128-bit inserts into ymm halves, then one 256-bit insert. Measured
/// on a Zen 4 VM (local program, quad_rows16's loop alone at 90%, 16 pixels,
/// N = 512): 1.4x faster than merge-masked broadcast loads (each a masked
/// blend) for K = 576-2304, 3% for K = 4608, whose panel misses the L1
/// (docs/performance.md, "A Zen 4 machine"). Not measured on Zen 5.
COMPRESSOR_INLINE_AVX512 __m512i lanes4_zmm(const std::uint8_t* p0, const std::uint8_t* p1,
                                            const std::uint8_t* p2, const std::uint8_t* p3) {
  const auto piece = [](const std::uint8_t* p) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  };
  const __m256i lo = _mm256_set_m128i(piece(p1), piece(p0));
  const __m256i hi = _mm256_set_m128i(piece(p3), piece(p2));
  // (The all-lanes maskz form: GCC 12 warns about the plain intrinsic's
  // undefined pass-through.)
  return _mm512_maskz_inserti64x4(static_cast<__mmask8>(0xFF), _mm512_castsi256_si512(lo), hi, 1);
}

/// A quad's 4 rows of pack_rows16_u8_zmm's panel (quad offsets are k * 32:
/// halved) as one vpdpbusd operand: dword j of lane L holds the 4 rows'
/// bytes of position 4L + j. The rows go to one lane each, a vpermd brings
/// dword L of every row into lane L, and a vpshufb interleaves each lane's
/// bytes.
COMPRESSOR_INLINE_AVX512 __m512i quad_rows16(const std::uint8_t* panel, const std::uint32_t* o) {
  static_assert(2 * kSparseBlockSmall == SparseWeightsS8::kQuadStride);
  const __m512i v = lanes4_zmm(panel + (o[0] >> 1), panel + (o[1] >> 1), panel + (o[2] >> 1),
                               panel + (o[3] >> 1));
  const __m512i dwords = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i bytes = _mm512_set4_epi32(0x0F0B0703, 0x0E0A0602, 0x0D090501, 0x0C080400);
  // (The all-lanes maskz form of vpermd: GCC 12 warns about the plain
  // intrinsic's undefined pass-through.)
  return _mm512_shuffle_epi8(
      _mm512_maskz_permutexvar_epi32(static_cast<__mmask16>(0xFFFF), dwords, v), bytes);
}

/// The 4 int32 at p (any alignment) in every 128-bit lane (the all-lanes
/// maskz form, as elsewhere: GCC 12 warns about the plain intrinsic's
/// undefined pass-through).
COMPRESSOR_INLINE_AVX512 __m512i wide_lanes(const std::int32_t* p) {
  return _mm512_maskz_broadcast_i32x4(static_cast<__mmask16>(0xFFFF),
                                      _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

/// Dword I of every 128-bit lane of v, in all 16 dwords (vpshufd).
template <int I>
COMPRESSOR_INLINE_AVX512 __m512i lane_dword(__m512i v) {
  return _mm512_maskz_shuffle_epi32(static_cast<__mmask16>(0xFFFF), v,
                                    static_cast<_MM_PERM_ENUM>(I * 0x55));
}

}  // namespace detail_sparse

namespace detail_sparse {

/// The 16 positions' sums of units [j, e) on top of init, unit j's 4
/// weights in w[j] and its activations from operand(j) (GroupRows or
/// QuadRows). Eight vpdpbusd chains: the vpdpbusd latency (four: 1.4x the
/// time on Zen 5; sixteen: no faster than eight). Each unit's 4 weights
/// (one int32) are broadcast by vpshufd from a 16-byte load copied to every
/// lane, 4 units per load: a third of the k-group loop's loads were the
/// per-group broadcasts, and the loads bound it (the loop on the CifarCnn
/// conv4's weights at 90%: 35.7 -> 29.5 us, Zen 5; docs/performance.md).
template <class Operand>
COMPRESSOR_INLINE_AVX512_VNNI __m512i dots16(const Operand& operand, const std::int32_t* w,
                                             std::int64_t j, std::int64_t e, __m512i init) {
  constexpr int C = 8;
  __m512i a[C];
  a[0] = init;
  for (int i = 1; i < C; ++i) a[i] = _mm512_setzero_si512();
  for (; j + C <= e; j += C) {
    const __m512i w4[2] = {wide_lanes(w + j), wide_lanes(w + j + 4)};
    zmm::dpbusd(a[0], operand(j), lane_dword<0>(w4[0]));
    zmm::dpbusd(a[1], operand(j + 1), lane_dword<1>(w4[0]));
    zmm::dpbusd(a[2], operand(j + 2), lane_dword<2>(w4[0]));
    zmm::dpbusd(a[3], operand(j + 3), lane_dword<3>(w4[0]));
    zmm::dpbusd(a[4], operand(j + 4), lane_dword<0>(w4[1]));
    zmm::dpbusd(a[5], operand(j + 5), lane_dword<1>(w4[1]));
    zmm::dpbusd(a[6], operand(j + 6), lane_dword<2>(w4[1]));
    zmm::dpbusd(a[7], operand(j + 7), lane_dword<3>(w4[1]));
  }
  for (; j < e; ++j) zmm::dpbusd(a[0], operand(j), _mm512_set1_epi32(w[j]));
  for (int i = 1; i < C; ++i) a[0] = _mm512_add_epi32(a[0], a[i]);
  return a[0];
}

/// k-group j's activations on pack_groups_u8_zmm's panel: one zmm load.
struct GroupRows {
  const std::uint8_t* panel;
  const std::uint32_t* off;
  COMPRESSOR_INLINE_AVX512 __m512i operator()(std::int64_t j) const {
    return _mm512_load_si512(panel + off[j]);
  }
};

/// Quad j's activations on pack_rows16_u8_zmm's panel (quad_rows16).
struct QuadRows {
  const std::uint8_t* panel;
  const std::uint32_t* off;
  COMPRESSOR_INLINE_AVX512 __m512i operator()(std::int64_t j) const {
    return quad_rows16(panel, off + 4 * j);
  }
};

}  // namespace detail_sparse

/// One int8 unit of the avx512_vnni path on a block of at most 16 pixels,
/// for all 16 pixels at once, by k-groups or by quads
/// (`SparseWeightsS8::small_block_quads`). By k-groups: per nonzero group of
/// 4 consecutive k of a channel, one zmm load of the panel and one vpdpbusd
/// against the group's broadcast weights; no interleave, but 4 products per
/// nonzero (at 90% random sparsity a third of the groups hold a nonzero,
/// 1.16 on average). By quads: per 4 nonzeros, 4 rows of a 16-byte-per-k
/// panel interleaved by two shuffles, one vpdpbusd; with
/// W.small_chunks() > 1, the quads of one k-chunk for every channel, then
/// the next chunk's, the partial sums kept after the panel (where the panel
/// of more than 32 KB misses the L1). panel: K * 64 bytes (the 64-row
/// kernel's; the groups or rows use ceil(K / 4) * 64 = K * 16 or less),
/// tile: (n1 - n0) * 32 Epi::Out (both 64-byte aligned).
template <GemmEpilogue Epi>
COMPRESSOR_TARGET_AVX512_VNNI void sparse_block16_u8s8_avx512_vnni(
    const SparseRowsU8& X, int rows, std::int32_t za, const SparseWeightsS8& W, const Epi& epi,
    typename Epi::Out* Y, std::int64_t ldy, std::uint8_t* panel, typename Epi::Out* tile,
    std::int64_t n0, std::int64_t n1, bool pack) {
  using namespace detail_sparse;
  using Base = typename BaseEpilogue<Epi>::type;
  const bool quads = W.small_block_quads();
  if (pack) {
    if (quads)
      pack_rows16_u8_zmm(X, rows, W.k(), panel, kWindows<Epi>);
    else
      pack_groups_u8_zmm(X, rows, W.k(), panel, kWindows<Epi>);
  }
  // By k-chunks: 16 int32 per channel after the panel's K * 16 bytes, if
  // the rest of the K * 64 has room.
  const std::int64_t chunks = quads ? W.small_chunks() : 1, K = W.k();
  const bool by_chunks = chunks > 1 && (n1 - n0) * 64 + 64 <= K * 48;
  auto* partial = reinterpret_cast<std::int32_t*>(panel + (K * 16 + 63) / 64 * 64);
  const QuadRows chunk_rows{panel, W.chunk_quad_offsets()};
  if (by_chunks)
    for (std::int64_t c = 0; c + 1 < chunks; ++c)
      for (std::int64_t n = n0; n < n1; ++n) {
        std::int32_t* p = partial + (n - n0) * 16;
        const __m512i init =
            c == 0 ? _mm512_set1_epi32(sum_init(epi, za, W, n)) : _mm512_load_si512(p);
        _mm512_store_si512(p, dots16(chunk_rows, W.chunk_quad_weights(), W.chunk_quad_begin(c, n),
                                     W.chunk_quad_begin(c, n + 1), init));
      }
  for (std::int64_t n = n0; n < n1; ++n) {
    __m512i sums;
    if (by_chunks)
      sums =
          dots16(chunk_rows, W.chunk_quad_weights(), W.chunk_quad_begin(chunks - 1, n),
                 W.chunk_quad_begin(chunks - 1, n + 1), _mm512_load_si512(partial + (n - n0) * 16));
    else if (quads)
      sums = dots16(QuadRows{panel, W.quad_offsets()}, W.quad_weights(), W.quad_begin(n),
                    W.quad_begin(n + 1), _mm512_set1_epi32(sum_init(epi, za, W, n)));
    else
      sums = dots16(GroupRows{panel, W.group_offsets()}, W.group_weights(), W.group_begin(n),
                    W.group_begin(n + 1), _mm512_set1_epi32(sum_init(epi, za, W, n)));
    if constexpr (kWindows<Epi>) {
      // Lane i: tap i of windows 0-3 (panel_position); the max of the 4
      // lanes, in every lane.
      constexpr auto all = static_cast<__mmask16>(0xFFFF);
      const __m512i m = zmm::max_epi32(sums, _mm512_maskz_shuffle_i32x4(all, sums, sums, 0x4E));
      epilogue_16(zmm::max_epi32(m, _mm512_maskz_shuffle_i32x4(all, m, m, 0xB1)),
                  static_cast<const Base&>(epi), n, tile + (n - n0) * kSparseBlock);
    } else {
      epilogue_16(sums, epi, n, tile + (n - n0) * kSparseBlock);
    }
  }
  store_tile<Base>(tile, n1 - n0, rows / gemm_rows_per_output<Epi>, Y + n0, ldy, kSparseBlock);
}

#endif  // COMPRESSOR_X86

}  // namespace compressor::kernels::simd
