// The ymm u8 x s8 -> s32 GEMM micro-kernels (MR rows x one 16-channel panel)
// and their fused epilogues, as target-attributed intrinsics (simd/target.hpp):
//
//   YmmMaddubsTile  AVX2, narrow weights: vpmaddubsw + vpmaddwd(ones) + vpaddd
//   YmmWidenTile    AVX2, any weights: u8, s8 -> int16 pairs by shifts, vpmaddwd + vpaddd
//   YmmVnniTile     AVX-VNNI, any weights: vpdpbusd (ymm)
//
// The tiles share one driver (simd/gemm_u8s8.hpp). Per group of 4 k a tile
// loads the panel's 64 weight bytes, then per row broadcasts 4 activations
// (vpbroadcastd) and multiplies. The accumulators start at bias[n] - za *
// rowsum[n] (the zero-point correction with the packed weights' row sums),
// computed once per panel with the epilogue's constants (YmmPanel).
#pragma once

#include <cstdint>
#include <cstring>

#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/int8_traits.hpp"
#include "compressor/kernels/simd/target.hpp"

namespace compressor::kernels::simd::ymm {

/// Stores rows x cols values of Out from tmp (row stride 16) to c.
template <class Out>
inline void store_partial(const Out* tmp, int rows, Out* c, std::int64_t ldc, int cols) {
  for (int r = 0; r < rows; ++r)
    std::memcpy(c + r * ldc, tmp + 16 * r, static_cast<std::size_t>(cols) * sizeof(Out));
}

/// The 4 bytes at p as an int32.
inline std::int32_t load4(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

/// 16 per-channel floats, zero past cols.
COMPRESSOR_INLINE_AVX2 void load16(const float* p, int cols, __m256& v0, __m256& v1) {
  if (cols == 16) {
    v0 = _mm256_loadu_ps(p);
    v1 = _mm256_loadu_ps(p + 8);
  } else {
    alignas(32) float t[16] = {};
    std::memcpy(t, p, static_cast<std::size_t>(cols) * sizeof(t[0]));
    v0 = _mm256_load_ps(t);
    v1 = _mm256_load_ps(t + 8);
  }
}

/// GCC 12 hoists the broadcasts and products of an unrolled step ahead of
/// the accumulations, runs out of registers and spills accumulators in the
/// inner loop. An empty asm on each row's accumulators keeps the source order
/// (no instruction). Clang schedules the loop well by itself.
COMPRESSOR_INLINE_AVX2 void schedule_barrier([[maybe_unused]] __m256i& a,
                                             [[maybe_unused]] __m256i& b) {
#if defined(__GNUC__) && !defined(__clang__)
  asm("" : "+x"(a), "+x"(b));
#endif
}

/// acc += the 4 u8 x s8 products of each int32 lane (AVX-VNNI vpdpbusd), in
/// acc's register: see zmm::dpbusd (GCC 12 otherwise copies accumulators
/// around the loop). Clang needs no help.
COMPRESSOR_INLINE_AVX_VNNI void dpbusd(__m256i& acc, __m256i a, __m256i w) {
#if defined(__GNUC__) && !defined(__clang__)
  __m256i t = acc;  // (an array element as the asm operand would keep the array in memory)
  asm("%{vex%} vpdpbusd %2, %1, %0" : "+x"(t) : "x"(a), "x"(w));
  acc = t;
#else
  acc = _mm256_dpbusd_avx_epi32(acc, a, w);
#endif
}

/// acc += p (vpaddd) in acc's register. In a loop whose accumulators live in
/// registers GCC 12 often adds into the other operand's register and copies
/// the result back (a vmovdqa per accumulator and iteration, and spills);
/// the asm names the destination. Clang needs no help.
COMPRESSOR_INLINE_AVX2 void add_into(__m256i& acc, __m256i p) {
#if defined(__GNUC__) && !defined(__clang__)
  __m256i t = acc;  // (an array element as the asm operand would keep the array in memory)
  asm("vpaddd %1, %0, %0" : "+x"(t) : "x"(p));
  acc = t;
#else
  acc = _mm256_add_epi32(acc, p);
#endif
}

/// The accumulators' initial values bias[n] - za * rowsum[n] of a panel's 16
/// channels (zero past cols).
struct YmmInit {
  __m256i c0, c1;
  COMPRESSOR_TARGET_AVX2 YmmInit(const std::int32_t* bias, const std::int32_t* sums16,
                                 std::int32_t za, int cols) {
    alignas(32) std::int32_t b[16] = {};
    if (bias) std::memcpy(b, bias, static_cast<std::size_t>(cols) * sizeof(b[0]));
    const __m256i nza = _mm256_set1_epi32(-za);
    c0 = _mm256_add_epi32(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(b)),
        _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums16)), nza));
    c1 = _mm256_add_epi32(
        _mm256_load_si256(reinterpret_cast<const __m256i*>(b + 8)),
        _mm256_mullo_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sums16 + 8)), nza));
  }
};

/// The per-panel constants of an epilogue and its stores of rows (<= MR)
/// rows x cols (<= 16) channels from accumulators a0 (channels 0-7) and a1
/// (8-15).
template <class Epi>
struct YmmEpilogue;

template <>
struct YmmEpilogue<Int32Out> {
  COMPRESSOR_TARGET_AVX2 YmmEpilogue(const Int32Out&, std::int64_t, int) {}
  template <int MR>
  COMPRESSOR_TARGET_AVX2 void store(const __m256i (&a0)[MR], const __m256i (&a1)[MR],
                                    std::int32_t* c, std::int64_t ldc, int rows, int cols) const {
    if (cols == 16) {
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        if (r >= rows) break;
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc), a0[r]);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + r * ldc + 8), a1[r]);
      }
    } else {
      alignas(32) std::int32_t t[MR * 16];
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(t + 16 * r), a0[r]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(t + 16 * r + 8), a1[r]);
      }
      store_partial(t, rows, c, ldc, cols);
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
struct YmmEpilogue<RequantOut> {
  __m256 m0, m1;
  __m256i zp, qmin, qmax;
  bool bounded;
  COMPRESSOR_TARGET_AVX2 YmmEpilogue(const RequantOut& e, std::int64_t n0, int cols)
      : zp(_mm256_set1_epi16(static_cast<std::int16_t>(e.zero_point))),
        qmin(_mm256_set1_epi8(static_cast<char>(e.qmin))),
        qmax(_mm256_set1_epi8(static_cast<char>(e.qmax))) {
    load16(e.multiplier + n0, cols, m0, m1);
    const __m256 one = _mm256_set1_ps(1.f), minus_one = _mm256_set1_ps(-1.f);
    const __m256 in = _mm256_and_ps(
        _mm256_and_ps(_mm256_cmp_ps(m0, one, _CMP_LT_OQ), _mm256_cmp_ps(m0, minus_one, _CMP_GT_OQ)),
        _mm256_and_ps(_mm256_cmp_ps(m1, one, _CMP_LT_OQ),
                      _mm256_cmp_ps(m1, minus_one, _CMP_GT_OQ)));
    bounded = _mm256_movemask_ps(in) == 0xFF;
  }
  template <bool kBounded>
  COMPRESSOR_TARGET_AVX2 static __m256i round(__m256i acc, __m256 m) {
    const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), m);
    if constexpr (kBounded)
      return _mm256_cvtps_epi32(v);
    else
      return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_set1_ps(65536.f), v));  // NaN stays NaN
  }
  /// Rows a and b (equal for a single row) -> 32 bytes: row a's 16 | row b's 16.
  template <bool kBounded>
  COMPRESSOR_TARGET_AVX2 __m256i two_rows(__m256i a0, __m256i a1, __m256i b0, __m256i b1) const {
    // packs: a0-3 a8-11 | a4-7 a12-15, each saturated to int16, + zp saturating.
    const __m256i a =
        _mm256_adds_epi16(_mm256_packs_epi32(round<kBounded>(a0, m0), round<kBounded>(a1, m1)), zp);
    const __m256i b =
        _mm256_adds_epi16(_mm256_packs_epi32(round<kBounded>(b0, m0), round<kBounded>(b1, m1)), zp);
    // a0-3 a8-11 b0-3 b8-11 | a4-7 a12-15 b4-7 b12-15 -> a0-15 | b0-15
    const __m256i x = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(a, b),
                                                  _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    return _mm256_min_epu8(_mm256_max_epu8(x, qmin), qmax);
  }
  template <int MR>
  COMPRESSOR_TARGET_AVX2 void store(const __m256i (&a0)[MR], const __m256i (&a1)[MR],
                                    std::uint8_t* c, std::int64_t ldc, int rows, int cols) const {
    if (bounded)
      store_rows<MR, true>(a0, a1, c, ldc, rows, cols);
    else
      store_rows<MR, false>(a0, a1, c, ldc, rows, cols);
  }
  template <int MR, bool kBounded>
  COMPRESSOR_TARGET_AVX2 void store_rows(const __m256i (&a0)[MR], const __m256i (&a1)[MR],
                                         std::uint8_t* c, std::int64_t ldc, int rows,
                                         int cols) const {
    alignas(32) std::uint8_t t[(MR + 1) / 2 * 32];
    COMPRESSOR_UNROLL
    for (int r = 0; r < MR; r += 2) {
      if (r >= rows) break;
      const int s = r + 1 < MR ? r + 1 : r;
      const __m256i q = two_rows<kBounded>(a0[r], a1[r], a0[s], a1[s]);
      if (cols == 16) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(c + r * ldc), _mm256_castsi256_si128(q));
        if (r + 1 < rows)
          _mm_storeu_si128(reinterpret_cast<__m128i*>(c + (r + 1) * ldc),
                           _mm256_extracti128_si256(q, 1));
      } else {
        _mm256_store_si256(reinterpret_cast<__m256i*>(t + 16 * r), q);
      }
    }
    if (cols < 16) store_partial(t, rows, c, ldc, cols);
  }
};

template <>
struct YmmEpilogue<DequantOut> {
  __m256 s0, s1;
  bool relu;
  COMPRESSOR_TARGET_AVX2 YmmEpilogue(const DequantOut& e, std::int64_t n0, int cols)
      : relu(e.relu) {
    load16(e.scale + n0, cols, s0, s1);
  }
  /// max(y, 0) as vmaxps: +0 for -0 and NaN, as the reference's y > 0 ? y : 0.
  COMPRESSOR_TARGET_AVX2 __m256 apply(__m256i a, __m256 s) const {
    const __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(a), s);
    return relu ? _mm256_max_ps(y, _mm256_setzero_ps()) : y;
  }
  template <int MR>
  COMPRESSOR_TARGET_AVX2 void store(const __m256i (&a0)[MR], const __m256i (&a1)[MR], float* c,
                                    std::int64_t ldc, int rows, int cols) const {
    if (cols == 16) {
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        if (r >= rows) break;
        _mm256_storeu_ps(c + r * ldc, apply(a0[r], s0));
        _mm256_storeu_ps(c + r * ldc + 8, apply(a1[r], s1));
      }
    } else {
      alignas(32) float t[MR * 16];
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        _mm256_store_ps(t + 16 * r, apply(a0[r], s0));
        _mm256_store_ps(t + 16 * r + 8, apply(a1[r], s1));
      }
      store_partial(t, rows, c, ldc, cols);
    }
  }
};

/// RowMax4<B>: B's constants and stores (store_tile takes the max of the rows).
template <class B>
struct YmmEpilogue<RowMax4<B>> : YmmEpilogue<B> {
  using YmmEpilogue<B>::YmmEpilogue;
};

/// Init and epilogue constants of one panel (the driver's Panel type).
template <class Epi>
struct YmmPanel {
  YmmInit init;
  YmmEpilogue<Epi> epi;
  COMPRESSOR_TARGET_AVX2 YmmPanel(const Epi& e, const std::int32_t* sums, std::int32_t za,
                                  std::int64_t n0, int cols)
      : init(e.bias ? e.bias + n0 : nullptr, sums + n0, za, cols), epi(e, n0, cols) {}
};

/// The epilogue's store of a tile's accumulators, from copies. Given the
/// accumulator arrays themselves (their address goes to the store, which is
/// not inlined), clang 14 keeps their memory image up to date inside the k
/// loop: a store per accumulator and k group (1.2x slower widening kernel
/// here; the AVX-VNNI kernel's loop had 12 stores per 12 vpdpbusd). GCC
/// compiles both forms alike. With RowMax4 output row i is the epilogue of
/// the max of rows 4i..4i+3 (vpmaxsd; MR and rows multiples of 4).
template <int MR, class Epi>
COMPRESSOR_INLINE_AVX2 void store_tile(const YmmPanel<Epi>* pc, const __m256i (&acc0)[MR],
                                       const __m256i (&acc1)[MR], typename Epi::Out* c,
                                       std::int64_t ldc, int rows, int cols) {
  constexpr int P = gemm_rows_per_output<Epi>;
  static_assert(MR % P == 0, "a tile of RowMax4 holds whole groups of 4 rows");
  constexpr int MO = MR / P;
  __m256i out0[MO], out1[MO];
  COMPRESSOR_UNROLL
  for (int r = 0; r < MO; ++r) {
    if constexpr (P == 1) {
      out0[r] = acc0[r];
      out1[r] = acc1[r];
    } else {
      out0[r] = _mm256_max_epi32(_mm256_max_epi32(acc0[4 * r], acc0[4 * r + 1]),
                                 _mm256_max_epi32(acc0[4 * r + 2], acc0[4 * r + 3]));
      out1[r] = _mm256_max_epi32(_mm256_max_epi32(acc1[4 * r], acc1[4 * r + 1]),
                                 _mm256_max_epi32(acc1[4 * r + 2], acc1[4 * r + 3]));
    }
  }
  pc->epi.template store<MO>(out0, out1, c, ldc, rows / P, cols);
}

/// AVX2, narrow weights: per k group and row, vpmaddubsw (exact: pair sums
/// within int16 on the narrow grid) + vpmaddwd(ones) + vpaddd.
struct YmmMaddubsTile {
  static constexpr int kMR = GemmU8S8Tiles::kMR;
  static constexpr int kNP = 1;
  template <class Epi>
  using Panel = YmmPanel<Epi>;

  /// MR rows a[0..MR) (4 * kq readable bytes each) x panel w; stores the
  /// first rows rows and cols columns.
  template <int MR, int NP, class Epi>
  COMPRESSOR_TARGET_AVX2 static void run(std::int64_t kq, const std::uint8_t* const* a,
                                         const std::int8_t* w, std::int64_t /*panel_bytes*/,
                                         const YmmPanel<Epi>* pc, typename Epi::Out* c,
                                         std::int64_t ldc, int rows, int cols) {
    __m256i acc0[MR], acc1[MR];
    COMPRESSOR_UNROLL
    for (int r = 0; r < MR; ++r) {
      acc0[r] = pc->init.c0;
      acc1[r] = pc->init.c1;
    }
    const __m256i ones = _mm256_set1_epi16(1);
    for (std::int64_t q = 0; q < kq; ++q) {
      const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w));
      const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 32));
      w += 64;
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        const __m256i av = _mm256_set1_epi32(load4(a[r] + 4 * q));
        __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, w0), ones);
        __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, w1), ones);
        schedule_barrier(p0, p1);
        acc0[r] = _mm256_add_epi32(acc0[r], p0);
        acc1[r] = _mm256_add_epi32(acc1[r], p1);
      }
    }
    store_tile<MR>(pc, acc0, acc1, c, ldc, rows, cols);
  }
};

/// AVX-VNNI, any weights: per k group and row one vpdpbusd per 8 channels
/// (u8 x s8 products summed in int32: no saturation).
struct YmmVnniTile {
  static constexpr int kMR = GemmU8S8Tiles::kMRAvxVnni;
  static constexpr int kNP = 1;
  template <class Epi>
  using Panel = YmmPanel<Epi>;

  template <int MR, int NP, class Epi>
  COMPRESSOR_TARGET_AVX_VNNI static void run(std::int64_t kq, const std::uint8_t* const* a,
                                             const std::int8_t* w, std::int64_t /*panel_bytes*/,
                                             const YmmPanel<Epi>* pc, typename Epi::Out* c,
                                             std::int64_t ldc, int rows, int cols) {
    __m256i acc0[MR], acc1[MR];
    COMPRESSOR_UNROLL
    for (int r = 0; r < MR; ++r) {
      acc0[r] = pc->init.c0;
      acc1[r] = pc->init.c1;
    }
    for (std::int64_t q = 0; q < kq; ++q) {
      const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w));
      const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 32));
      w += 64;
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        const __m256i av = _mm256_set1_epi32(load4(a[r] + 4 * q));
        dpbusd(acc0[r], av, w0);
        dpbusd(acc1[r], av, w1);
      }
    }
    store_tile<MR>(pc, acc0, acc1, c, ldc, rows, cols);
  }
};

/// AVX2, any weights (the full grid, where vpmaddubsw could saturate): u8
/// activations and s8 weights widened to int16 and multiplied by vpmaddwd
/// (two exact products per int32 lane), as XNNPACK's widening kernels do,
/// but widened in place with shifts rather than vpmovzx/vpmovsx (lane-
/// crossing shuffles: one port on Zen 3, and the first version of this
/// kernel was bound by them at 1.8x the vpmaddubsw kernel's time).
/// A lane of a k group holds the bytes (x0 x1 x2 x3) of one channel (weights)
/// or the row's four activations broadcast (a0 a1 a2 a3). As int16 pairs:
/// even (x0, x2) = (lane << 8) >> 8 (arithmetic for weights, `and 0xff` for
/// activations), odd (x1, x3) = lane >> 8. vpmaddwd(a_even, w_even) +
/// vpmaddwd(a_odd, w_odd) is the lane's 4-product sum, so each accumulator
/// holds 8 channels as in the vpmaddubsw kernel: the same 2 multiplies per
/// 32 MACs, 4 rows per tile, plus an and and a shift per row and 6 shifts
/// per k group.
struct YmmWidenTile {
  static constexpr int kMR = GemmU8S8Tiles::kMRWiden;
  static constexpr int kNP = 1;
  template <class Epi>
  using Panel = YmmPanel<Epi>;

  template <int MR, int NP, class Epi>
  COMPRESSOR_TARGET_AVX2 static void run(std::int64_t kq, const std::uint8_t* const* a,
                                         const std::int8_t* w, std::int64_t /*panel_bytes*/,
                                         const YmmPanel<Epi>* pc, typename Epi::Out* c,
                                         std::int64_t ldc, int rows, int cols) {
    __m256i acc0[MR], acc1[MR];
    COMPRESSOR_UNROLL
    for (int r = 0; r < MR; ++r) {
      acc0[r] = pc->init.c0;
      acc1[r] = pc->init.c1;
    }
    const __m256i low = _mm256_set1_epi16(0xff);
    for (std::int64_t q = 0; q < kq; ++q) {
      const __m256i x0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w));
      const __m256i x1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 32));
      w += 64;
      const __m256i we0 = _mm256_srai_epi16(_mm256_slli_epi16(x0, 8), 8);
      const __m256i wo0 = _mm256_srai_epi16(x0, 8);
      const __m256i we1 = _mm256_srai_epi16(_mm256_slli_epi16(x1, 8), 8);
      const __m256i wo1 = _mm256_srai_epi16(x1, 8);
      COMPRESSOR_UNROLL
      for (int r = 0; r < MR; ++r) {
        const __m256i av = _mm256_set1_epi32(load4(a[r] + 4 * q));
        const __m256i ae = _mm256_and_si256(av, low);
        const __m256i ao = _mm256_srli_epi16(av, 8);
        add_into(acc0[r], _mm256_madd_epi16(ae, we0));
        add_into(acc0[r], _mm256_madd_epi16(ao, wo0));
        add_into(acc1[r], _mm256_madd_epi16(ae, we1));
        add_into(acc1[r], _mm256_madd_epi16(ao, wo1));
      }
    }
    store_tile<MR>(pc, acc0, acc1, c, ldc, rows, cols);
  }
};

}  // namespace compressor::kernels::simd::ymm
