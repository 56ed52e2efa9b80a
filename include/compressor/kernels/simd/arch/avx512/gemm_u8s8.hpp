// The zmm u8 x s8 -> s32 GEMM micro-kernels (MR rows x NP 16-channel panels)
// and their fused epilogues, as target-attributed intrinsics (simd/target.hpp):
//
//   ZmmVnniTile     AVX512-VNNI, any weights: vpdpbusd (zmm)
//   ZmmMaddubsTile  AVX-512BW, narrow weights: vpmaddubsw + vpmaddwd(ones) + vpaddd
//   ZmmWidenTile    AVX-512BW, any weights: u8, s8 -> int16 pairs by shifts,
//                   vpmaddwd + vpaddd (the zmm form of ymm::YmmWidenTile)
//
// A packed k group of a panel (16 channels x 4 k) is exactly one zmm. Per k
// group a tile loads one zmm per panel, then per row broadcasts 4
// activations (vpbroadcastd) and multiplies them with each panel's zmm: with
// NP = 2 panels every broadcast feeds two vpdpbusd (GemmU8S8Tiles::kMRZmm).
// Epilogues store with masks (no temporary buffer for a partial panel) and
// requantize by the rule literally: vcvtdq2ps, vmulps, vmaxps (NaN -> qmin),
// vminps, vcvtps2dq, vpaddd zp, vpmovdb.
#pragma once

#include <cstdint>
#include <cstring>

#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/int8_traits.hpp"
#include "compressor/kernels/simd/target.hpp"

namespace compressor::kernels::simd::zmm {

/// The 4 bytes at p as an int32.
inline std::int32_t load4(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

/// The first cols (0..16) lanes.
inline __mmask16 lanes(int cols) {
  return cols >= 16 ? static_cast<__mmask16>(0xFFFF)
                    : static_cast<__mmask16>((1u << (cols > 0 ? cols : 0)) - 1u);
}

/// acc += the 4 u8 x s8 products of each int32 lane (vpdpbusd), in acc's
/// register. GCC 12 treats the intrinsic's result as a new value and, in a
/// loop of many accumulators, copies every accumulator to another register
/// (or the stack) and back each iteration (measured: 38% of the vpdpbusd
/// peak); the asm names the destination. Clang needs no help.
COMPRESSOR_INLINE_AVX512_VNNI void dpbusd(__m512i& acc, __m512i a, __m512i w) {
#if defined(__GNUC__) && !defined(__clang__)
  __m512i t = acc;  // (an array element as the asm operand would keep the array in memory)
  asm("vpdpbusd %2, %1, %0" : "+v"(t) : "v"(a), "v"(w));
  acc = t;
#else
  acc = _mm512_dpbusd_epi32(acc, a, w);
#endif
}

/// acc += p (vpaddd) in acc's register: see ymm::add_into (GCC 12 otherwise
/// adds into p's register and copies the sum back). Clang needs no help.
COMPRESSOR_INLINE_AVX512 void add_into(__m512i& acc, __m512i p) {
#if defined(__GNUC__) && !defined(__clang__)
  __m512i t = acc;  // (an array element as the asm operand would keep the array in memory)
  asm("vpaddd %1, %0, %0" : "+v"(t) : "v"(p));
  acc = t;
#else
  acc = _mm512_add_epi32(acc, p);
#endif
}

/// See ymm::schedule_barrier: keeps GCC from hoisting every broadcast of an
/// unrolled step ahead of the multiplies (and spilling accumulators).
COMPRESSOR_INLINE_AVX512 void schedule_barrier([[maybe_unused]] __m512i& a) {
#if defined(__GNUC__) && !defined(__clang__)
  asm("" : "+v"(a));
#endif
}

// GCC 12's _mm512_max_ps, _mm512_min_ps, _mm512_cvtepi32_ps,
// _mm512_cvtps_epi32 and _mm512_max_epi32 pass a self-initialized "undefined" vector that
// -Wmaybe-uninitialized flags once inlined; their all-lanes maskz forms are
// the same instructions.
COMPRESSOR_INLINE_AVX512 __m512 max_ps(__m512 a, __m512 b) {
  return _mm512_maskz_max_ps(static_cast<__mmask16>(0xFFFF), a, b);
}
COMPRESSOR_INLINE_AVX512 __m512 min_ps(__m512 a, __m512 b) {
  return _mm512_maskz_min_ps(static_cast<__mmask16>(0xFFFF), a, b);
}
COMPRESSOR_INLINE_AVX512 __m512 cvt_ps(__m512i a) {
  return _mm512_maskz_cvtepi32_ps(static_cast<__mmask16>(0xFFFF), a);
}
COMPRESSOR_INLINE_AVX512 __m512i cvt_epi32(__m512 a) {
  return _mm512_maskz_cvtps_epi32(static_cast<__mmask16>(0xFFFF), a);
}
COMPRESSOR_INLINE_AVX512 __m512i max_epi32(__m512i a, __m512i b) {
  return _mm512_maskz_max_epi32(static_cast<__mmask16>(0xFFFF), a, b);
}

/// Per-panel constants of an epilogue and its store of one row of 16 lanes.
template <class Epi>
struct ZmmEpilogue;

template <>
struct ZmmEpilogue<Int32Out> {
  COMPRESSOR_TARGET_AVX512 ZmmEpilogue(const Int32Out&, std::int64_t, __mmask16) {}
  COMPRESSOR_TARGET_AVX512 void store(__m512i acc, std::int32_t* c, __mmask16 m) const {
    _mm512_mask_storeu_epi32(c, m, acc);
  }
};

template <>
struct ZmmEpilogue<RequantOut> {
  __m512 m, lo, hi;
  __m512i zp;
  COMPRESSOR_TARGET_AVX512 ZmmEpilogue(const RequantOut& e, std::int64_t n0, __mmask16 k)
      : m(_mm512_maskz_loadu_ps(k, e.multiplier + n0)),
        lo(_mm512_set1_ps(static_cast<float>(e.qmin - e.zero_point))),
        hi(_mm512_set1_ps(static_cast<float>(e.qmax - e.zero_point))),
        zp(_mm512_set1_epi32(e.zero_point)) {}
  /// round_scaled: v = acc * m; max(v, lo) (vmaxps gives lo for NaN v);
  /// min(v, hi); round half even (MXCSR); + zp; into [qmin, qmax] c [0, 255].
  COMPRESSOR_TARGET_AVX512 void store(__m512i acc, std::uint8_t* c, __mmask16 k) const {
    __m512 v = _mm512_mul_ps(cvt_ps(acc), m);
    v = min_ps(max_ps(v, lo), hi);
    _mm512_mask_cvtepi32_storeu_epi8(c, k, _mm512_add_epi32(cvt_epi32(v), zp));
  }
};

template <>
struct ZmmEpilogue<DequantOut> {
  __m512 s;
  bool relu;
  COMPRESSOR_TARGET_AVX512 ZmmEpilogue(const DequantOut& e, std::int64_t n0, __mmask16 k)
      : s(_mm512_maskz_loadu_ps(k, e.scale + n0)), relu(e.relu) {}
  /// max(y, 0) as vmaxps: +0 for -0 and NaN, as the reference's y > 0 ? y : 0.
  COMPRESSOR_TARGET_AVX512 void store(__m512i acc, float* c, __mmask16 k) const {
    __m512 y = _mm512_mul_ps(cvt_ps(acc), s);
    if (relu) y = max_ps(y, _mm512_setzero_ps());
    _mm512_mask_storeu_ps(c, k, y);
  }
};

/// RowMax4<B>: B's constants and store (store_tile takes the max of the rows).
template <class B>
struct ZmmEpilogue<RowMax4<B>> : ZmmEpilogue<B> {
  using ZmmEpilogue<B>::ZmmEpilogue;
};

/// Init and epilogue constants of up to kPanelsZmm panels (channels n0 ..
/// n0 + cols): the accumulators start at bias[n] - za * rowsum[n].
template <class Epi>
struct ZmmPanel {
  static constexpr int kNP = GemmU8S8Tiles::kPanelsZmm;
  __m512i init[kNP];
  ZmmEpilogue<Epi> epi[kNP];
  __mmask16 mask[kNP];

  COMPRESSOR_TARGET_AVX512 ZmmPanel(const Epi& e, const std::int32_t* sums, std::int32_t za,
                                    std::int64_t n0, int cols)
      : epi{make(e, n0, cols, 0), make(e, n0, cols, 1)} {
    COMPRESSOR_UNROLL
    for (int j = 0; j < kNP; ++j) {
      mask[j] = lanes(cols - 16 * j);
      init[j] = _mm512_setzero_si512();
      if (mask[j] == 0) continue;  // a single panel: nothing of the second is read
      const __m512i b =
          e.bias ? _mm512_maskz_loadu_epi32(mask[j], e.bias + n0 + 16 * j) : _mm512_setzero_si512();
      const __m512i s = _mm512_maskz_loadu_epi32(mask[j], sums + n0 + 16 * j);
      init[j] = _mm512_sub_epi32(b, _mm512_mullo_epi32(_mm512_set1_epi32(za), s));
    }
  }
  COMPRESSOR_TARGET_AVX512 static ZmmEpilogue<Epi> make(const Epi& e, std::int64_t n0, int cols,
                                                        int j) {
    const int n = cols - 16 * j;
    return ZmmEpilogue<Epi>(e, n > 0 ? n0 + 16 * j : n0, lanes(n));
  }
  static_assert(kNP == 2, "ZmmPanel's initializer lists two panels");
};

/// Stores rows (<= MR) rows of NP panels, from a copy of the accumulators:
/// given the accumulator array itself, clang 14 keeps its memory image up to
/// date inside the k loop (24 stores per 24 vpdpbusd in the 12 x 2 tile),
/// the main part of its VNNI kernels' slowness (docs/performance.md). GCC
/// compiles both forms alike.
/// With RowMax4 output row i is the epilogue of the max of rows 4i..4i+3
/// (vpmaxsd; MR and rows multiples of 4).
template <int MR, int NP, class Epi>
COMPRESSOR_INLINE_AVX512 void store_tile(const __m512i (&acc)[NP][MR], const ZmmPanel<Epi>* pc,
                                         typename Epi::Out* c, std::int64_t ldc, int rows) {
  constexpr int P = gemm_rows_per_output<Epi>;
  static_assert(MR % P == 0, "a tile of RowMax4 holds whole groups of 4 rows");
  constexpr int MO = MR / P;
  __m512i out[NP][MO];
  COMPRESSOR_UNROLL
  for (int j = 0; j < NP; ++j) COMPRESSOR_UNROLL
  for (int r = 0; r < MO; ++r) {
    if constexpr (P == 1) {
      out[j][r] = acc[j][r];
    } else {
      out[j][r] = max_epi32(max_epi32(acc[j][4 * r], acc[j][4 * r + 1]),
                            max_epi32(acc[j][4 * r + 2], acc[j][4 * r + 3]));
    }
  }
  COMPRESSOR_UNROLL
  for (int r = 0; r < MO; ++r) {
    if (r * P >= rows) break;
    COMPRESSOR_UNROLL
    for (int j = 0; j < NP; ++j) pc->epi[j].store(out[j][r], c + r * ldc + 16 * j, pc->mask[j]);
  }
}

/// AVX512-VNNI, any weights: per k group and row one vpdpbusd per panel.
struct ZmmVnniTile {
  static constexpr int kMR = GemmU8S8Tiles::kMRZmm;
  static constexpr int kNP = GemmU8S8Tiles::kPanelsZmm;
  template <class Epi>
  using Panel = ZmmPanel<Epi>;

  /// MR rows a[0..MR) (4 * kq readable bytes each) x NP panels starting at
  /// w, panel_bytes apart; stores the first rows rows, the panels' columns.
  template <int MR, int NP, class Epi>
  COMPRESSOR_TARGET_AVX512_VNNI static void run(std::int64_t kq, const std::uint8_t* const* a,
                                                const std::int8_t* w, std::int64_t panel_bytes,
                                                const ZmmPanel<Epi>* pc, typename Epi::Out* c,
                                                std::int64_t ldc, int rows, int /*cols*/) {
    __m512i acc[NP][MR];
    COMPRESSOR_UNROLL
    for (int j = 0; j < NP; ++j) COMPRESSOR_UNROLL
    for (int r = 0; r < MR; ++r) acc[j][r] = pc->init[j];
    for (std::int64_t q = 0; q < kq; ++q) {
      __m512i wv[NP];
      COMPRESSOR_UNROLL
      for (int j = 0; j < NP; ++j) wv[j] = _mm512_load_si512(w + j * panel_bytes + 64 * q);
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        const __m512i av = _mm512_set1_epi32(load4(a[r] + 4 * q));
        COMPRESSOR_UNROLL
        for (int j = 0; j < NP; ++j) dpbusd(acc[j][r], av, wv[j]);
      }
    }
    store_tile<MR, NP, Epi>(acc, pc, c, ldc, rows);
  }
};

/// AVX-512BW without VNNI, narrow weights: vpmaddubsw + vpmaddwd(ones) + vpaddd
/// on zmm (exact on the narrow grid, like the AVX2 kernel).
struct ZmmMaddubsTile {
  static constexpr int kMR = GemmU8S8Tiles::kMRZmm;
  static constexpr int kNP = GemmU8S8Tiles::kPanelsZmm;
  template <class Epi>
  using Panel = ZmmPanel<Epi>;

  template <int MR, int NP, class Epi>
  COMPRESSOR_TARGET_AVX512 static void run(std::int64_t kq, const std::uint8_t* const* a,
                                           const std::int8_t* w, std::int64_t panel_bytes,
                                           const ZmmPanel<Epi>* pc, typename Epi::Out* c,
                                           std::int64_t ldc, int rows, int /*cols*/) {
    __m512i acc[NP][MR];
    COMPRESSOR_UNROLL
    for (int j = 0; j < NP; ++j) COMPRESSOR_UNROLL
    for (int r = 0; r < MR; ++r) acc[j][r] = pc->init[j];
    const __m512i ones = _mm512_set1_epi16(1);
    for (std::int64_t q = 0; q < kq; ++q) {
      __m512i wv[NP];
      COMPRESSOR_UNROLL
      for (int j = 0; j < NP; ++j) wv[j] = _mm512_load_si512(w + j * panel_bytes + 64 * q);
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        const __m512i av = _mm512_set1_epi32(load4(a[r] + 4 * q));
        COMPRESSOR_UNROLL
        for (int j = 0; j < NP; ++j) {
          __m512i p = _mm512_madd_epi16(_mm512_maddubs_epi16(av, wv[j]), ones);
          schedule_barrier(p);
          acc[j][r] = _mm512_add_epi32(acc[j][r], p);
        }
      }
    }
    store_tile<MR, NP, Epi>(acc, pc, c, ldc, rows);
  }
};

/// AVX-512BW without VNNI, any weights (the full grid): each k group's
/// bytes widened to int16 pairs, even k (0, 2) and odd k (1, 3) apart:
/// weights by shifts (sign-extended), activations by a mask and a shift
/// (zero-extended); vpmaddwd of each pair sums two exact products into an
/// int32 lane (|product| <= 255 * 127), so no saturation on any grid.
/// The widened weights are made once per k group and serve MR rows
/// (GemmU8S8Tiles::kMRZmmWiden).
struct ZmmWidenTile {
  static constexpr int kMR = GemmU8S8Tiles::kMRZmmWiden;
  static constexpr int kNP = GemmU8S8Tiles::kPanelsZmm;
  template <class Epi>
  using Panel = ZmmPanel<Epi>;

  template <int MR, int NP, class Epi>
  COMPRESSOR_TARGET_AVX512 static void run(std::int64_t kq, const std::uint8_t* const* a,
                                           const std::int8_t* w, std::int64_t panel_bytes,
                                           const ZmmPanel<Epi>* pc, typename Epi::Out* c,
                                           std::int64_t ldc, int rows, int /*cols*/) {
    __m512i acc[NP][MR];
    COMPRESSOR_UNROLL
    for (int j = 0; j < NP; ++j) COMPRESSOR_UNROLL
    for (int r = 0; r < MR; ++r) acc[j][r] = pc->init[j];
    const __m512i low = _mm512_set1_epi16(0xff);
    for (std::int64_t q = 0; q < kq; ++q) {
      __m512i we[NP], wo[NP];
      COMPRESSOR_UNROLL
      for (int j = 0; j < NP; ++j) {
        const __m512i x = _mm512_load_si512(w + j * panel_bytes + 64 * q);
        we[j] = _mm512_srai_epi16(_mm512_slli_epi16(x, 8), 8);
        wo[j] = _mm512_srai_epi16(x, 8);
      }
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        const __m512i av = _mm512_set1_epi32(load4(a[r] + 4 * q));
        const __m512i ae = _mm512_and_si512(av, low);
        const __m512i ao = _mm512_srli_epi16(av, 8);
        COMPRESSOR_UNROLL
        for (int j = 0; j < NP; ++j) {
          add_into(acc[j][r], _mm512_madd_epi16(ae, we[j]));
          add_into(acc[j][r], _mm512_madd_epi16(ao, wo[j]));
        }
      }
    }
    store_tile<MR, NP, Epi>(acc, pc, c, ldc, rows);
  }
};

}  // namespace compressor::kernels::simd::zmm
