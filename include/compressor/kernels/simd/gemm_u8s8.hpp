// The AVX2 u8 x s8 -> s32 GEMM micro-kernel (4 rows x 16 output channels)
// with its fused epilogues. C = epi(A * W^T): A uint8 (M x K, row stride lda,
// read as is, no packing), W packed once (PackedWeightsU8S8).
//
// Per group of 4 k: two 32-byte weight loads, then per row one vpbroadcastd of
// 4 activations and, per weight vector, vpmaddubsw + vpmaddwd(ones) + vpaddd.
// The zero-point correction uses the precomputed weight row sums:
// sum_k (a - za) w = sum_k a w - za * rowsum[n], applied once in the epilogue.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/packed_weights.hpp"
#include "compressor/kernels/simd/arch/avx2/u8s8.hpp"

#if COMPRESSOR_KERNELS_AVX2

namespace compressor::kernels::simd {

namespace detail_gemm {

using avx2::Vec;

/// The per-panel constants of an epilogue, loaded once per micro-tile.
template <class Epi>
struct VecEpilogue;

/// corr[n] = bias[n] - za * rowsum[n], as two vectors.
struct Correction {
  Vec<std::int32_t> c0, c1;
  Correction(const std::int32_t* bias16, const std::int32_t* sums16, std::int32_t za) {
    const Vec<std::int32_t> nza(-za);
    c0 = Vec<std::int32_t>::load_unaligned(sums16) * nza;
    c1 = Vec<std::int32_t>::load_unaligned(sums16 + 8) * nza;
    if (bias16) {
      c0 += Vec<std::int32_t>::load_unaligned(bias16);
      c1 += Vec<std::int32_t>::load_unaligned(bias16 + 8);
    }
  }
};

template <>
struct VecEpilogue<Int32Out> {
  Correction corr;
  VecEpilogue(const Int32Out&, const std::int32_t* bias16, const float*, const std::int32_t* sums16,
              std::int32_t za)
      : corr(bias16, sums16, za) {}
  void store(Vec<std::int32_t> a0, Vec<std::int32_t> a1, std::int32_t* dst) const {
    (a0 + corr.c0).store_unaligned(dst);
    (a1 + corr.c1).store_unaligned(dst + 8);
  }
};

template <>
struct VecEpilogue<RequantOut> {
  Correction corr;
  Vec<float> m0, m1, lo, hi;
  Vec<std::int32_t> zp;
  VecEpilogue(const RequantOut& e, const std::int32_t* bias16, const float* mult16,
              const std::int32_t* sums16, std::int32_t za)
      : corr(bias16, sums16, za),
        m0(Vec<float>::load_unaligned(mult16)),
        m1(Vec<float>::load_unaligned(mult16 + 8)),
        lo(static_cast<float>(e.qmin - e.zero_point)),
        hi(static_cast<float>(e.qmax - e.zero_point)),
        zp(e.zero_point) {}
  Vec<std::int32_t> round(Vec<std::int32_t> acc, Vec<float> m) const {
    Vec<float> v = xsimd::batch_cast<float>(acc) * m;
    v = xsimd::min(xsimd::max(v, lo), hi);
    return xsimd::nearbyint_as_int(v) + zp;
  }
  void store(Vec<std::int32_t> a0, Vec<std::int32_t> a1, std::uint8_t* dst) const {
    const __m128i q = avx2::narrow_u8(round(a0 + corr.c0, m0), round(a1 + corr.c1, m1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), q);
  }
};

template <>
struct VecEpilogue<DequantOut> {
  Correction corr;
  Vec<float> s0, s1;
  bool relu;
  VecEpilogue(const DequantOut& e, const std::int32_t* bias16, const float* scale16,
              const std::int32_t* sums16, std::int32_t za)
      : corr(bias16, sums16, za),
        s0(Vec<float>::load_unaligned(scale16)),
        s1(Vec<float>::load_unaligned(scale16 + 8)),
        relu(e.relu) {}
  void store(Vec<std::int32_t> a0, Vec<std::int32_t> a1, float* dst) const {
    Vec<float> y0 = xsimd::batch_cast<float>(a0 + corr.c0) * s0;
    Vec<float> y1 = xsimd::batch_cast<float>(a1 + corr.c1) * s1;
    if (relu) {
      y0 = xsimd::max(y0, Vec<float>(0.f));
      y1 = xsimd::max(y1, Vec<float>(0.f));
    }
    y0.store_unaligned(dst);
    y1.store_unaligned(dst + 8);
  }
};

/// The per-channel float parameters of an epilogue (null for Int32Out).
inline const float* epilogue_floats(const Int32Out&) {
  return nullptr;
}
inline const float* epilogue_floats(const RequantOut& e) {
  return e.multiplier;
}
inline const float* epilogue_floats(const DequantOut& e) {
  return e.scale;
}

/// One MR x 16 tile over the whole of K: rows a[0..MR) (stride lda), packed
/// panel w; stores cols (<= 16) columns of each row to c (stride ldc).
template <int MR, class Epi>
inline void micro_tile(std::int64_t k, const std::uint8_t* a, std::int64_t lda,
                       const std::int8_t* w, const VecEpilogue<Epi>& ve, typename Epi::Out* c,
                       std::int64_t ldc, int cols) {
  Vec<std::int32_t> acc0[MR], acc1[MR];
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = Vec<std::int32_t>(0);
  const Vec<std::int16_t> ones(1);
  const std::uint8_t* ar[MR];
  for (int r = 0; r < MR; ++r) ar[r] = a + r * lda;
  const std::int64_t kq = k / 4;
  for (std::int64_t q = 0; q < kq; ++q) {
    const auto w0 = Vec<std::int8_t>::load_aligned(w);
    const auto w1 = Vec<std::int8_t>::load_aligned(w + 32);
    w += 64;
    for (int r = 0; r < MR; ++r) {
      const auto av = avx2::broadcast4(ar[r] + 4 * q);
      acc0[r] = avx2::dot4_add(acc0[r], av, w0, ones);
      acc1[r] = avx2::dot4_add(acc1[r], av, w1, ones);
      avx2::schedule_barrier(acc0[r], acc1[r]);
    }
  }
  if (const int rem = static_cast<int>(k % 4)) {
    const auto w0 = Vec<std::int8_t>::load_aligned(w);
    const auto w1 = Vec<std::int8_t>::load_aligned(w + 32);
    for (int r = 0; r < MR; ++r) {
      const auto av = avx2::broadcast4_partial(ar[r] + 4 * kq, rem);
      acc0[r] = avx2::dot4_add(acc0[r], av, w0, ones);
      acc1[r] = avx2::dot4_add(acc1[r], av, w1, ones);
    }
  }
  for (int r = 0; r < MR; ++r) {
    if (cols == 16) {
      ve.store(acc0[r], acc1[r], c + r * ldc);
    } else {
      alignas(64) typename Epi::Out tmp[16];
      ve.store(acc0[r], acc1[r], tmp);
      std::memcpy(c + r * ldc, tmp, static_cast<std::size_t>(cols) * sizeof(tmp[0]));
    }
  }
}

/// Rows [m0, m1) x panels [p0, p1), single-threaded, blocked so that a column
/// block of packed weights stays in L2 while 4-row slices of A sweep it.
template <class Epi>
void gemm_block(std::int64_t m0, std::int64_t m1, std::int64_t p0, std::int64_t p1,
                const std::uint8_t* A, std::int64_t lda, std::int32_t za,
                const PackedWeightsU8S8& B, const Epi& epi, typename Epi::Out* C, std::int64_t ldc,
                bool a_padded) {
  constexpr int MR = GemmU8S8Tiles::kMR;
  const std::int64_t N = B.n(), K = a_padded ? B.k_padded() : B.k();
  const std::int64_t panel_bytes = B.k_padded() * 16;
  const std::int64_t nc = std::max<std::int64_t>(1, GemmU8S8Tiles::kL2WeightBytes / panel_bytes);
  const float* fl = epilogue_floats(epi);
  for (std::int64_t pb = p0; pb < p1; pb += nc) {
    const std::int64_t pe = std::min(p1, pb + nc);
    for (std::int64_t m = m0; m < m1; m += MR) {
      const int rows = static_cast<int>(std::min<std::int64_t>(MR, m1 - m));
      for (std::int64_t p = pb; p < pe; ++p) {
        const std::int64_t n0 = p * 16;
        const int cols = static_cast<int>(std::min<std::int64_t>(16, N - n0));
        // Per-channel parameters, padded to 16 for the vector loads.
        alignas(64) std::int32_t bias_pad[16];
        alignas(64) float fl_pad[16];
        const std::int32_t* bias16 = epi.bias ? epi.bias + n0 : nullptr;
        const float* fl16 = fl ? fl + n0 : fl_pad;
        if (cols < 16 || !fl) {
          for (int j = 0; j < 16; ++j) {
            bias_pad[j] = (epi.bias && j < cols) ? epi.bias[n0 + j] : 0;
            fl_pad[j] = (fl && j < cols) ? fl[n0 + j] : 0.f;
          }
          if (epi.bias) bias16 = bias_pad;
          fl16 = fl_pad;
        }
        const VecEpilogue<Epi> ve(epi, bias16, fl16, B.row_sums() + n0, za);
        const std::uint8_t* a = A + m * lda;
        auto* c = C + m * ldc + n0;
        const std::int8_t* w = B.panel(p);
        switch (rows) {
          case 4:
            micro_tile<4, Epi>(K, a, lda, w, ve, c, ldc, cols);
            break;
          case 3:
            micro_tile<3, Epi>(K, a, lda, w, ve, c, ldc, cols);
            break;
          case 2:
            micro_tile<2, Epi>(K, a, lda, w, ve, c, ldc, cols);
            break;
          default:
            micro_tile<1, Epi>(K, a, lda, w, ve, c, ldc, cols);
            break;
        }
      }
    }
  }
}

}  // namespace detail_gemm

}  // namespace compressor::kernels::simd

#endif
