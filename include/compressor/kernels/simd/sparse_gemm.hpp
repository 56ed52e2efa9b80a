// AVX2 sparse-weight x dense-activation kernels on blocks of 32 activation
// rows (pixels). The block is transposed into a K x 32 panel so each nonzero
// weight w[n, k] updates 32 pixels at once from panel row k:
//  fp32: 4 x vfmadd231ps per nonzero, even and odd nonzeros of a row into two
//        accumulator sets (8 independent chains hide the FMA latency);
//  int8: panel of int16; per nonzero one vpbroadcastd of (w, 0) pairs, and
//        vpmaddwd of the panel row with (w, 0) and (0, w) gives the even and
//        odd pixels' products exactly in int32 (no saturation at any int8).
// Results go to a per-channel tile and are transposed back to the rows.
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

inline void pack_panel(const std::uint8_t* X, std::int64_t ldx, int rows, std::int64_t K,
                       std::int16_t* panel) {
  std::int64_t k0 = 0;
  if (rows == kSparseBlock) {
    for (; k0 + 32 <= K; k0 += 32)
      for (int p = 0; p < kSparseBlock; p += 8)
        avx2::transpose8x32_u8_to_i16(X + p * ldx + k0, ldx, panel + k0 * kSparseBlock + p,
                                      kSparseBlock);
  }
  for (int p = 0; p < kSparseBlock; ++p) {
    if (p < rows) {
      const std::uint8_t* x = X + p * ldx;
      for (std::int64_t k = k0; k < K; ++k) panel[k * kSparseBlock + p] = x[k];
    } else {
      for (std::int64_t k = k0; k < K; ++k) panel[k * kSparseBlock + p] = 0;
    }
  }
}

/// Lane of pixel p in the int8 kernel's tile order: even pixels 0-14, odd
/// 1-15, even 16-30, odd 17-31.
constexpr int int8_lane(int p) {
  const int half = p / 16, q = p % 16;
  return half * 16 + (q % 2) * 8 + q / 2;
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

/// One int8 block; panel: K*32 int16, tile: N*32 Epi::Out of scratch.
template <GemmEpilogue Epi>
void sparse_block_u8s8(const std::uint8_t* X, std::int64_t ldx, int rows, std::int32_t za,
                       const SparseWeightsS8& W, const Epi& epi, typename Epi::Out* Y,
                       std::int64_t ldy, std::int16_t* panel, typename Epi::Out* tile) {
  using namespace detail_sparse;
  using VI = Vec<std::int32_t>;
  using V16 = Vec<std::int16_t>;
  using VF = Vec<float>;
  const std::int64_t N = W.n();
  pack_panel(X, ldx, rows, W.k(), panel);
  const std::int32_t* cols = W.cols();
  const std::int32_t* wide = W.wide_values();
  for (std::int64_t n = 0; n < N; ++n) {
    VI acc[4] = {VI(0), VI(0), VI(0), VI(0)};  // even 0-14, odd 1-15, even 16-30, odd 17-31
    for (std::int64_t j = W.row_begin(n); j < W.row_begin(n + 1); ++j) {
      const std::int16_t* r = panel + std::int64_t{cols[j]} * kSparseBlock;
      const VI we(wide[j]);
      const VI wo = we << 16;
      const auto x0 = V16::load_aligned(r), x1 = V16::load_aligned(r + 16);
      acc[0] += avx2::madd(x0, xsimd::bitwise_cast<V16>(we));
      acc[1] += avx2::madd(x0, xsimd::bitwise_cast<V16>(wo));
      acc[2] += avx2::madd(x1, xsimd::bitwise_cast<V16>(we));
      acc[3] += avx2::madd(x1, xsimd::bitwise_cast<V16>(wo));
    }
    const VI corr((epi.bias ? epi.bias[n] : 0) - za * W.row_sums()[n]);
    for (auto& a : acc) a += corr;
    auto* t = tile + n * kSparseBlock;
    if constexpr (std::is_same_v<Epi, Int32Out>) {
      for (int i = 0; i < 4; ++i) acc[i].store_aligned(t + 8 * i);
    } else if constexpr (std::is_same_v<Epi, RequantOut>) {
      const VF m(epi.multiplier[n]);
      const VF lo(static_cast<float>(epi.qmin - epi.zero_point));
      const VF hi(static_cast<float>(epi.qmax - epi.zero_point));
      VI q[4];
      for (int i = 0; i < 4; ++i)
        q[i] = xsimd::nearbyint_as_int(
                   xsimd::min(xsimd::max(xsimd::batch_cast<float>(acc[i]) * m, lo), hi)) +
               VI(epi.zero_point);
      avx2::narrow_u8(q[0], q[1], q[2], q[3]).store_aligned(t);
    } else {
      const VF s(epi.scale[n]);
      for (int i = 0; i < 4; ++i) {
        VF y = xsimd::batch_cast<float>(acc[i]) * s;
        if (epi.relu) y = xsimd::max(y, VF(0.f));
        y.store_aligned(t + 8 * i);
      }
    }
  }
  for (int p = 0; p < rows; ++p) {
    const int lane = int8_lane(p);
    for (std::int64_t c = 0; c < N; ++c) Y[p * ldy + c] = tile[c * kSparseBlock + lane];
  }
}

}  // namespace compressor::kernels::simd

#endif
