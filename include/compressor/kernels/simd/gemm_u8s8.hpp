// The AVX2 u8 x s8 -> s32 GEMM micro-kernel (MR rows x 16 output channels)
// with its fused epilogues. C = epi(A * W^T): A uint8 (M x K, rows found
// through a row source of gemm_rows.hpp, read as is, no packing), W packed
// once (PackedWeightsU8S8).
//
// Per group of 4 k: two 32-byte weight loads, then per row one vpbroadcastd of
// 4 activations and, per weight vector, vpmaddubsw + vpmaddwd(ones) + vpaddd.
// The zero-point correction uses the precomputed weight row sums:
// sum_k (a - za) w = sum_k a w - za * rowsum[n]; the accumulators start at
// bias[n] - za * rowsum[n], computed once per panel.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/gemm_rows.hpp"
#include "compressor/kernels/packed_weights.hpp"
#include "compressor/kernels/simd/arch/avx2/u8s8.hpp"

#if COMPRESSOR_KERNELS_AVX2

namespace compressor::kernels::simd {

namespace detail_gemm {

using avx2::Vec;
using VI = Vec<std::int32_t>;
using VF = Vec<float>;

/// The per-panel part of every epilogue: the accumulators' initial values
/// bias[n] - za * rowsum[n] for the panel's 16 channels (zero past N).
struct PanelInit {
  VI c0, c1;
  PanelInit(const std::int32_t* bias, const std::int32_t* sums16, std::int32_t za, int cols) {
    alignas(32) std::int32_t b[16] = {};
    if (bias) std::memcpy(b, bias, static_cast<std::size_t>(cols) * sizeof(b[0]));
    const VI nza(-za);
    c0 = VI::load_aligned(b) + VI::load_unaligned(sums16) * nza;
    c1 = VI::load_aligned(b + 8) + VI::load_unaligned(sums16 + 8) * nza;
  }
};

/// 16 per-channel floats of a panel, zero past N.
inline void load16(const float* p, int cols, VF& v0, VF& v1) {
  if (cols == 16) {
    v0 = VF::load_unaligned(p);
    v1 = VF::load_unaligned(p + 8);
  } else {
    alignas(32) float t[16] = {};
    std::memcpy(t, p, static_cast<std::size_t>(cols) * sizeof(t[0]));
    v0 = VF::load_aligned(t);
    v1 = VF::load_aligned(t + 8);
  }
}

/// Stores rows x 16 values of Out from tmp (row stride 16) to c, cols of each.
template <class Out>
inline void store_partial(const Out* tmp, int rows, Out* c, std::int64_t ldc, int cols) {
  for (int r = 0; r < rows; ++r)
    std::memcpy(c + r * ldc, tmp + 16 * r, static_cast<std::size_t>(cols) * sizeof(Out));
}

/// The per-panel constants of an epilogue and its stores of an MR x 16 tile.
template <class Epi>
struct PanelEpilogue;

template <>
struct PanelEpilogue<Int32Out> {
  PanelEpilogue(const Int32Out&, std::int64_t, int) {}
  template <int MR>
  void store(const VI (&a0)[MR], const VI (&a1)[MR], std::int32_t* c, std::int64_t ldc,
             int cols) const {
    if (cols == 16) {
      for (int r = 0; r < MR; ++r) {
        a0[r].store_unaligned(c + r * ldc);
        a1[r].store_unaligned(c + r * ldc + 8);
      }
    } else {
      alignas(32) std::int32_t t[MR * 16];
      for (int r = 0; r < MR; ++r) {
        a0[r].store_aligned(t + 16 * r);
        a1[r].store_aligned(t + 16 * r + 8);
      }
      store_partial(t, MR, c, ldc, cols);
    }
  }
};

/// requantize() on vectors, in the integer domain after the float product:
/// q = clamp(sat8(sat16(round(min(65536, float(acc) * m))) +sat zp), qmin, qmax).
/// This equals the rule's clamp-in-float-then-round: the bounds are integers,
/// so clamping before or after the (monotone) rounding gives the same value;
/// 65536 and the int16 / uint8 saturations only act on values that the
/// clamp sends to qmin or qmax anyway; NaN converts to INT32_MIN and ends at
/// qmin, as the rule's vmaxps does. When every multiplier of the panel has
/// |m| < 1 the product lies strictly inside int32 (|float(acc)| <= 2^31) and
/// the min is dropped: the float ops share the multiply ports with the
/// vpmaddubsw / vpmaddwd of the neighbouring tiles (a quarter fewer here).
template <>
struct PanelEpilogue<RequantOut> {
  VF m0, m1;
  Vec<std::int16_t> zp;
  Vec<std::uint8_t> qmin, qmax;
  bool bounded;
  PanelEpilogue(const RequantOut& e, std::int64_t n0, int cols)
      : zp(static_cast<std::int16_t>(e.zero_point)),
        qmin(static_cast<std::uint8_t>(e.qmin)),
        qmax(static_cast<std::uint8_t>(e.qmax)) {
    load16(e.multiplier + n0, cols, m0, m1);
    const VF one(1.f), minus_one(-1.f);
    bounded = xsimd::all(m0 < one && m0 > minus_one && m1 < one && m1 > minus_one);
  }
  template <bool kBounded>
  static VI round(VI acc, VF m) {
    const VF v = xsimd::batch_cast<float>(acc) * m;
    if constexpr (kBounded)
      return xsimd::nearbyint_as_int(v);
    else
      return xsimd::nearbyint_as_int(avx2::min_ps_nan_right(VF(65536.f), v));
  }
  /// Rows r and r + 1 (equal for a single row) -> 32 bytes: row r | row r + 1.
  template <bool kBounded>
  Vec<std::uint8_t> two_rows(VI a0, VI a1, VI b0, VI b1) const {
    const auto q = avx2::pack_rows_u8(round<kBounded>(a0, m0), round<kBounded>(a1, m1),
                                      round<kBounded>(b0, m0), round<kBounded>(b1, m1), zp);
    return xsimd::min(xsimd::max(q, qmin), qmax);
  }
  template <int MR>
  void store(const VI (&a0)[MR], const VI (&a1)[MR], std::uint8_t* c, std::int64_t ldc,
             int cols) const {
    if (bounded)
      store_rows<MR, true>(a0, a1, c, ldc, cols);
    else
      store_rows<MR, false>(a0, a1, c, ldc, cols);
  }
  template <int MR, bool kBounded>
  void store_rows(const VI (&a0)[MR], const VI (&a1)[MR], std::uint8_t* c, std::int64_t ldc,
                  int cols) const {
    alignas(32) std::uint8_t t[(MR + 1) / 2 * 32];
    for (int r = 0; r < MR; r += 2) {
      const int s = r + 1 < MR ? r + 1 : r;
      const auto q = two_rows<kBounded>(a0[r], a1[r], a0[s], a1[s]);
      if (cols == 16) {
        avx2::store_halves(q, c + r * ldc, r + 1 < MR ? c + (r + 1) * ldc : nullptr);
      } else {
        q.store_aligned(t + 16 * r);
      }
    }
    if (cols < 16) store_partial(t, MR, c, ldc, cols);
  }
};

template <>
struct PanelEpilogue<DequantOut> {
  VF s0, s1;
  bool relu;
  PanelEpilogue(const DequantOut& e, std::int64_t n0, int cols) : relu(e.relu) {
    load16(e.scale + n0, cols, s0, s1);
  }
  VF apply(VI a, VF s) const {
    const VF y = xsimd::batch_cast<float>(a) * s;
    return relu ? xsimd::max(y, VF(0.f)) : y;
  }
  template <int MR>
  void store(const VI (&a0)[MR], const VI (&a1)[MR], float* c, std::int64_t ldc, int cols) const {
    if (cols == 16) {
      for (int r = 0; r < MR; ++r) {
        apply(a0[r], s0).store_unaligned(c + r * ldc);
        apply(a1[r], s1).store_unaligned(c + r * ldc + 8);
      }
    } else {
      alignas(32) float t[MR * 16];
      for (int r = 0; r < MR; ++r) {
        apply(a0[r], s0).store_aligned(t + 16 * r);
        apply(a1[r], s1).store_aligned(t + 16 * r + 8);
      }
      store_partial(t, MR, c, ldc, cols);
    }
  }
};

/// One MR x 16 tile over K = 4 * kq: rows a[0..MR) (4 * kq readable bytes
/// each), packed panel w, accumulators starting at init; stores cols (<= 16)
/// columns.
template <int MR, class Epi>
inline void micro_tile(std::int64_t kq, const std::uint8_t* const* a, const std::int8_t* w,
                       const PanelInit& init, const PanelEpilogue<Epi>& pe, typename Epi::Out* c,
                       std::int64_t ldc, int cols) {
  VI acc0[MR], acc1[MR];
  for (int r = 0; r < MR; ++r) {
    acc0[r] = init.c0;
    acc1[r] = init.c1;
  }
  const Vec<std::int16_t> ones(1);
  const std::uint8_t* ar[MR];
  for (int r = 0; r < MR; ++r) ar[r] = a[r];
  for (std::int64_t q = 0; q < kq; ++q) {
    const auto w0 = Vec<std::int8_t>::load_aligned(w);
    const auto w1 = Vec<std::int8_t>::load_aligned(w + 32);
    w += 64;
    for (int r = 0; r < MR; ++r) {
      const auto av = avx2::broadcast4(ar[r] + 4 * q);
      auto p0 = avx2::madd(avx2::maddubs(av, w0), ones);
      auto p1 = avx2::madd(avx2::maddubs(av, w1), ones);
      avx2::schedule_barrier(p0, p1);
      acc0[r] += p0;
      acc1[r] += p1;
    }
  }
  pe.template store<MR>(acc0, acc1, c, ldc, cols);
}

/// micro_tile for rows (< MR) rows.
template <int MR, class Epi>
inline void edge_tile(int rows, std::int64_t kq, const std::uint8_t* const* a, const std::int8_t* w,
                      const PanelInit& init, const PanelEpilogue<Epi>& pe, typename Epi::Out* c,
                      std::int64_t ldc, int cols) {
  if constexpr (MR > 1) {
    if (rows == MR - 1) return micro_tile<MR - 1, Epi>(kq, a, w, init, pe, c, ldc, cols);
    edge_tile<MR - 1, Epi>(rows, kq, a, w, init, pe, c, ldc, cols);
  }
}

/// Rows [m0, m1) x panels [p0, p1), single-threaded. A's rows (a row source
/// of gemm_rows.hpp, taken by value: each thread keeps its own copy in
/// registers) [m0, m_whole) have kp = B.k_padded() readable bytes (the
/// bytes past K multiply zero weights); rows [m_whole, m1) only K: their
/// tiles run on a zero-padded copy in tail (>= MR * kp bytes).
template <class Epi, class Rows>
void gemm_block(std::int64_t m0, std::int64_t m1, std::int64_t p0, std::int64_t p1, Rows A,
                std::int32_t za, const PackedWeightsU8S8& B, const Epi& epi, typename Epi::Out* C,
                std::int64_t ldc, std::int64_t m_whole, std::uint8_t* tail) {
  constexpr int MR = GemmU8S8Tiles::kMR;
  const std::int64_t N = B.n(), K = B.k(), kp = B.k_padded(), kq = kp / 4;
  // Rows of A per block: mc x kp bytes stay in L2 while each weight panel (in
  // L1) sweeps them.
  const std::int64_t mc = GemmU8S8Tiles::row_block(kp);
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t me = std::min(m1, mb + mc);
    for (std::int64_t p = p0; p < p1; ++p) {
      const std::int64_t n0 = p * 16;
      const int cols = static_cast<int>(std::min<std::int64_t>(16, N - n0));
      const PanelInit init(epi.bias ? epi.bias + n0 : nullptr, B.row_sums() + n0, za, cols);
      const PanelEpilogue<Epi> pe(epi, n0, cols);
      const std::int8_t* w = B.panel(p);
      for (std::int64_t m = mb; m < me; m += MR) {
        const int rows = static_cast<int>(std::min<std::int64_t>(MR, me - m));
        const std::uint8_t* a[MR];
        if (m + rows > m_whole) {
          for (int r = 0; r < rows; ++r) {
            std::memcpy(tail + r * kp, A.row(m + r), static_cast<std::size_t>(K));
            std::memset(tail + r * kp + K, 0, static_cast<std::size_t>(kp - K));
            a[r] = tail + r * kp;
          }
        } else {
          for (int r = 0; r < rows; ++r) a[r] = A.row(m + r);
        }
        auto* c = C + m * ldc + n0;
        if (rows == MR)
          micro_tile<MR, Epi>(kq, a, w, init, pe, c, ldc, cols);
        else
          edge_tile<MR, Epi>(rows, kq, a, w, init, pe, c, ldc, cols);
      }
    }
  }
}

}  // namespace detail_gemm

}  // namespace compressor::kernels::simd

#endif
