// AVX2 sparse-weight x dense-activation kernels on blocks of 32 activation
// rows (pixels). The block is transposed into a K x 32 panel so each nonzero
// weight w[n, k] updates 32 pixels at once from panel row k:
//  fp32: 4 x vfmadd231ps per nonzero, even and odd nonzeros of a row into two
//        accumulator sets (8 independent chains hide the FMA latency);
//  int8: uint8 panel (32 bytes per k); the nonzeros of a row go by quads
//        (SparseWeightsS8): the 4 panel rows of a quad are interleaved with
//        vpunpck{l,h}{bw,wd} into 4 bytes (k0..k3) per pixel, and one
//        vpmaddubsw + vpmaddwd(ones) + vpaddd per 8 pixels against the
//        broadcast 4 weights: the dense kernel's multiply instructions, 32
//        pixels x 4 nonzeros per 4 of them (the shuffles run on other ports).
// Results go to a per-channel tile (uint8 for requantized output, in pixel
// order) and are transposed back to the rows 16 x 16 bytes (or 8 x 8 words)
// at a time.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/simd/arch/avx2/u8s8.hpp"
#include "compressor/kernels/sparse_weights.hpp"

#if COMPRESSOR_KERNELS_AVX2

namespace compressor::kernels::simd {

inline constexpr int kSparseBlock = 32;  // pixels per block: 4 fp32 / 2 int16 ymm

namespace detail_sparse {
using avx2::Vec;

/// panel[k * 32 + p] = X[p, k] for p < rows, 0 for the rest.
inline void pack_panel(const float* X, std::int64_t ldx, int rows, std::int64_t K, float* panel) {
  std::int64_t k = 0;
  if (rows == kSparseBlock)
    for (; k + 8 <= K; k += 8)
      for (int p = 0; p < kSparseBlock; p += 8)
        avx2::transpose8x8(X + p * ldx + k, ldx, panel + k * kSparseBlock + p, kSparseBlock);
  for (; k < K; ++k)
    for (int p = 0; p < kSparseBlock; ++p)
      panel[k * kSparseBlock + p] = p < rows ? X[p * ldx + k] : 0.f;
}

/// panel[k * 32 + p] = X[p, k] for p < rows, 0 for the rest (uint8), by
/// 16 x 16 byte transposes, two per register (pixels 0-15 and 16-31 of 32
/// k values, or k 0-15 and 16-31 of 16 pixels: the latter measured faster,
/// inserting 128-bit halves costs more than extracting them).
inline void pack_panel(const std::uint8_t* X, std::int64_t ldx, int rows, std::int64_t K,
                       std::uint8_t* panel) {
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
      avx2::transpose16x16_lanes(r);  // r[j]: k0 + j | k0 + 16 + j, 16 pixels each
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

/// One block: Y rows [0, rows) (stride ldy) of X rows (stride ldx) times W^T.
/// panel: K*32 floats, tile: N*32 floats of scratch (64-byte aligned).
inline void sparse_block_f32(const float* X, std::int64_t ldx, int rows, const SparseWeightsF32& W,
                             const float* bias, bool relu, float* Y, std::int64_t ldy, float* panel,
                             float* tile) {
  using namespace detail_sparse;
  using VF = Vec<float>;
  const std::int64_t N = W.n();
  pack_panel(X, ldx, rows, W.k(), panel);
  const std::int32_t* cols = W.cols();
  const float* vals = W.values();
  for (std::int64_t n = 0; n < N; ++n) {
    VF e[4], o[4];
    for (int i = 0; i < 4; ++i) e[i] = o[i] = VF(0.f);
    std::int64_t j = W.row_begin(n);
    const std::int64_t end = W.row_begin(n + 1);
    for (; j + 2 <= end; j += 2) {
      const float* r0 = panel + std::int64_t{cols[j]} * kSparseBlock;
      const float* r1 = panel + std::int64_t{cols[j + 1]} * kSparseBlock;
      const VF w0(vals[j]), w1(vals[j + 1]);
      for (int i = 0; i < 4; ++i) e[i] = xsimd::fma(w0, VF::load_aligned(r0 + 8 * i), e[i]);
      for (int i = 0; i < 4; ++i) o[i] = xsimd::fma(w1, VF::load_aligned(r1 + 8 * i), o[i]);
    }
    if (j < end) {
      const float* r0 = panel + std::int64_t{cols[j]} * kSparseBlock;
      const VF w0(vals[j]);
      for (int i = 0; i < 4; ++i) e[i] = xsimd::fma(w0, VF::load_aligned(r0 + 8 * i), e[i]);
    }
    const VF b(bias ? bias[n] : 0.f);
    for (int i = 0; i < 4; ++i) {
      VF y = e[i] + o[i];
      if (bias) y += b;
      if (relu) y = xsimd::max(y, VF(0.f));
      y.store_aligned(tile + n * kSparseBlock + 8 * i);
    }
  }
  // tile (N x 32) -> Y (rows x N).
  std::int64_t n = 0;
  if (rows == kSparseBlock)
    for (; n + 8 <= N; n += 8)
      for (int p = 0; p < kSparseBlock; p += 8)
        avx2::transpose8x8(tile + n * kSparseBlock + p, kSparseBlock, Y + p * ldy + n, ldy);
  for (int p = 0; p < rows; ++p)
    for (std::int64_t c = n; c < N; ++c) Y[p * ldy + c] = tile[c * kSparseBlock + p];
}

namespace detail_sparse {

/// The 32 pixels' sums of one output channel's quads [q0, q1), on top of
/// init: acc[i] holds pixels 4i..4i+3 and 16+4i..16+4i+3.
inline void quad_dots(const std::uint8_t* panel, const std::uint32_t* off, const std::int32_t* w,
                      std::int64_t q0, std::int64_t q1, Vec<std::int32_t> init,
                      Vec<std::int32_t> acc[4]) {
  using VI = Vec<std::int32_t>;
  VI a0 = init, a1 = init, a2 = init, a3 = init;
  const Vec<std::int16_t> ones(1);
  for (std::int64_t q = q0; q < q1; ++q) {
    const std::uint32_t* o = off + 4 * q;
    const __m256i x0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[0]));
    const __m256i x1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[1]));
    const __m256i x2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[2]));
    const __m256i x3 = _mm256_load_si256(reinterpret_cast<const __m256i*>(panel + o[3]));
    const Vec<std::int8_t> wq = xsimd::bitwise_cast<Vec<std::int8_t>>(VI(w[q]));
    const __m256i t0 = _mm256_unpacklo_epi8(x0, x1), t1 = _mm256_unpackhi_epi8(x0, x1);
    const __m256i t2 = _mm256_unpacklo_epi8(x2, x3), t3 = _mm256_unpackhi_epi8(x2, x3);
    auto p0 = avx2::madd(avx2::maddubs(_mm256_unpacklo_epi16(t0, t2), wq), ones);
    auto p1 = avx2::madd(avx2::maddubs(_mm256_unpackhi_epi16(t0, t2), wq), ones);
    auto p2 = avx2::madd(avx2::maddubs(_mm256_unpacklo_epi16(t1, t3), wq), ones);
    auto p3 = avx2::madd(avx2::maddubs(_mm256_unpackhi_epi16(t1, t3), wq), ones);
    avx2::add_into(a0, p0);
    avx2::add_into(a1, p1);
    avx2::add_into(a2, p2);
    avx2::add_into(a3, p3);
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = a2;
  acc[3] = a3;
}

/// tile (rows of 32 bytes, one per channel, pixels in order) -> Y: channels
/// [0, N) of pixel rows [0, rows).
inline void store_tile_u8(const std::uint8_t* tile, std::int64_t N, int rows, std::uint8_t* Y,
                          std::int64_t ldy) {
  for (std::int64_t n0 = 0; n0 < N; n0 += 16) {
    const int cols = static_cast<int>(std::min<std::int64_t>(16, N - n0));
    __m256i r[16];
    for (int i = 0; i < 16; ++i)
      r[i] = _mm256_load_si256(
          reinterpret_cast<const __m256i*>(tile + (n0 + std::min(i, cols - 1)) * kSparseBlock));
    avx2::transpose16x16_lanes(r);  // r[j]: pixel j | pixel 16 + j, 16 channels each
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

/// tile (rows of 32 4-byte values, one per channel, pixels in order) -> Y.
template <class T>
inline void store_tile_32(const T* tile, std::int64_t N, int rows, T* Y, std::int64_t ldy) {
  static_assert(sizeof(T) == 4);
  std::int64_t n0 = 0;
  if (rows == kSparseBlock)
    for (; n0 + 8 <= N; n0 += 8)
      for (int p = 0; p < kSparseBlock; p += 8)
        avx2::transpose8x8(reinterpret_cast<const float*>(tile + n0 * kSparseBlock + p),
                           kSparseBlock, reinterpret_cast<float*>(Y + p * ldy + n0), ldy);
  for (int p = 0; p < rows; ++p)
    for (std::int64_t c = n0; c < N; ++c) Y[p * ldy + c] = tile[c * kSparseBlock + p];
}

}  // namespace detail_sparse

/// One int8 block; panel: K*32 bytes, tile: N*32 Epi::Out of scratch (both
/// 64-byte aligned).
template <GemmEpilogue Epi>
void sparse_block_u8s8(const std::uint8_t* X, std::int64_t ldx, int rows, std::int32_t za,
                       const SparseWeightsS8& W, const Epi& epi, typename Epi::Out* Y,
                       std::int64_t ldy, std::uint8_t* panel, typename Epi::Out* tile) {
  using namespace detail_sparse;
  using VI = Vec<std::int32_t>;
  using VF = Vec<float>;
  const std::int64_t N = W.n();
  pack_panel(X, ldx, rows, W.k(), panel);
  const std::uint32_t* off = W.quad_offsets();
  const std::int32_t* wq = W.quad_weights();
  for (std::int64_t n = 0; n < N; ++n) {
    VI acc[4];  // pixels 0-3 | 16-19, 4-7 | 20-23, 8-11 | 24-27, 12-15 | 28-31
    quad_dots(panel, off, wq, W.quad_begin(n), W.quad_begin(n + 1),
              VI((epi.bias ? epi.bias[n] : 0) - za * W.row_sums()[n]), acc);
    auto* t = tile + n * kSparseBlock;
    if constexpr (std::is_same_v<Epi, RequantOut>) {
      // The dense epilogue's integer-domain form of the rule (see
      // simd/gemm_u8s8.hpp): round, saturating packs, + zp, byte clamp.
      const VF m(epi.multiplier[n]);
      VI q[4];
      for (int i = 0; i < 4; ++i)
        q[i] = xsimd::nearbyint_as_int(
            avx2::min_ps_nan_right(VF(65536.f), xsimd::batch_cast<float>(acc[i]) * m));
      const Vec<std::int16_t> zp(static_cast<std::int16_t>(epi.zero_point));
      const __m256i lo = _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), zp);  // 0-7 | 16-23
      const __m256i hi = _mm256_adds_epi16(_mm256_packs_epi32(q[2], q[3]), zp);  // 8-15 | 24-31
      const Vec<std::uint8_t> b = _mm256_packus_epi16(lo, hi);                   // 0-31 in order
      xsimd::min(xsimd::max(b, Vec<std::uint8_t>(static_cast<std::uint8_t>(epi.qmin))),
                 Vec<std::uint8_t>(static_cast<std::uint8_t>(epi.qmax)))
          .store_aligned(t);
    } else {
      // Pixels in order: 0-7, 8-15, 16-23, 24-31.
      const __m256i v[4] = {_mm256_permute2x128_si256(acc[0], acc[1], 0x20),
                            _mm256_permute2x128_si256(acc[2], acc[3], 0x20),
                            _mm256_permute2x128_si256(acc[0], acc[1], 0x31),
                            _mm256_permute2x128_si256(acc[2], acc[3], 0x31)};
      for (int i = 0; i < 4; ++i) {
        if constexpr (std::is_same_v<Epi, Int32Out>) {
          VI(v[i]).store_aligned(t + 8 * i);
        } else {
          VF y = xsimd::batch_cast<float>(VI(v[i])) * VF(epi.scale[n]);
          if (epi.relu) y = xsimd::max(y, VF(0.f));
          y.store_aligned(t + 8 * i);
        }
      }
    }
  }
  if constexpr (std::is_same_v<Epi, RequantOut>)
    store_tile_u8(tile, N, rows, Y, ldy);
  else
    store_tile_32(tile, N, rows, Y, ldy);
}

}  // namespace compressor::kernels::simd

#endif
