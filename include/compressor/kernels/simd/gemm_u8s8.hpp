// The u8 x s8 -> s32 GEMM's SIMD kernels and the one driver they share.
// C = epi(A * W^T): A uint8 (M x K, rows found through a row source of
// gemm_rows.hpp, read as is, no packing), W packed once (PackedWeightsU8S8).
//
// GemmKernel names the micro-kernels; gemm_kernel(path, B) picks the best one
// a path may run for B's weights (kernels/isa.hpp): a vpmaddubsw kernel only
// where every weight is on the narrow grid, the widening or VNNI kernel
// otherwise. All compute the same integers, so the output is bit-identical
// on every path.
//
// The driver (gemm_sweep) is generic code; each kernel's entry point
// (gemm_block_*) carries its target attribute and `flatten`, which inlines
// the driver, the tile and the epilogue into one function compiled for that
// instruction set, whatever the includer's -m flags.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/gemm_rows.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/packed_weights.hpp"
#include "compressor/kernels/simd/arch/avx2/gemm_u8s8.hpp"
#include "compressor/kernels/simd/arch/avx512/gemm_u8s8.hpp"
#include "compressor/kernels/simd/target.hpp"

namespace compressor::kernels {

/// The u8s8 GEMM micro-kernels.
enum class GemmKernel : std::uint8_t {
  portable,     ///< scalar loops on the packed layout (Path::scalar)
  ymm_maddubs,  ///< AVX2 vpmaddubsw, narrow weights, 4 x 16
  ymm_widen,    ///< AVX2 int16 vpmaddwd, any weights, 4 x 16
  ymm_vnni,     ///< AVX-VNNI vpdpbusd ymm, 6 x 16
  zmm_maddubs,  ///< AVX-512BW vpmaddubsw zmm, narrow weights, 12 x 32
  zmm_vnni,     ///< AVX512-VNNI vpdpbusd zmm, 12 x 32
  zmm_widen,    ///< AVX-512BW int16 vpmaddwd zmm, any weights, 8 x 32
};

constexpr std::string_view gemm_kernel_name(GemmKernel k) {
  switch (k) {
    case GemmKernel::portable:
      return "portable";
    case GemmKernel::ymm_maddubs:
      return "gemm_u8s8_4x16c4__avx2";
    case GemmKernel::ymm_widen:
      return "gemm_u8s8_4x16c4_widen__avx2";
    case GemmKernel::ymm_vnni:
      return "gemm_u8s8_6x16c4__avxvnni";
    case GemmKernel::zmm_maddubs:
      return "gemm_u8s8_12x32c4__avx512bw";
    case GemmKernel::zmm_vnni:
      return "gemm_u8s8_12x32c4__avx512vnni";
    case GemmKernel::zmm_widen:
      return "gemm_u8s8_8x32c4_widen__avx512bw";
  }
  return "?";
}

/// The kernel `path` runs for weights B. Full-grid weights on the paths
/// without VNNI take a widening kernel (ymm on avx2, zmm on avx512).
inline GemmKernel gemm_kernel(Path path, const PackedWeightsU8S8& B) {
  const bool narrow = B.fits_narrow();
  switch (path) {
    case Path::scalar:
      return GemmKernel::portable;
    case Path::avx2:
      return narrow ? GemmKernel::ymm_maddubs : GemmKernel::ymm_widen;
    case Path::avx_vnni:
      return GemmKernel::ymm_vnni;
    case Path::avx512:
      return narrow ? GemmKernel::zmm_maddubs : GemmKernel::zmm_widen;
    case Path::avx512_vnni:
      return GemmKernel::zmm_vnni;
  }
  return GemmKernel::portable;
}

/// Rows per tile of a kernel (row blocks and thread units are multiples).
constexpr int gemm_kernel_rows(GemmKernel k) {
  switch (k) {
    case GemmKernel::portable:
    case GemmKernel::ymm_maddubs:
      return GemmU8S8Tiles::kMR;
    case GemmKernel::ymm_widen:
      return GemmU8S8Tiles::kMRWiden;
    case GemmKernel::ymm_vnni:
      return GemmU8S8Tiles::kMRAvxVnni;
    case GemmKernel::zmm_maddubs:
    case GemmKernel::zmm_vnni:
      return GemmU8S8Tiles::kMRZmm;
    case GemmKernel::zmm_widen:
      return GemmU8S8Tiles::kMRZmmWiden;
  }
  return GemmU8S8Tiles::kMR;
}

namespace simd::detail_gemm {

/// One GEMM call's operands. A's rows [0, m_whole) have B.k_padded()
/// readable bytes (the bytes past K meet zero weights); the rows past it
/// only K: their tiles run on a zero-padded copy in a per-thread buffer.
template <class Epi, class Rows>
struct GemmArgs {
  Rows A;
  std::int32_t za;
  const PackedWeightsU8S8& B;
  const Epi& epi;
  typename Epi::Out* C;
  std::int64_t ldc;
  std::int64_t m_whole;
};

/// Rows per tile of Tile with epilogue Epi: Tile::kMR, rounded down to a
/// multiple of the epilogue's rows per output (RowMax4: 6 -> 4).
template <class Tile, class Epi>
inline constexpr int tile_rows = Tile::kMR / gemm_rows_per_output<Epi>* gemm_rows_per_output<Epi>;

/// Runs Tile::run<R> for `rows` rows with the smallest R of MR, 8, 4, 2, 1
/// that holds them (the rows past `rows` repeat row 0 and are not stored);
/// with RowMax4 (rows a multiple of 4) R stops at 4.
template <class Tile, int NP, class Epi, int MR>
inline void run_rows(int rows, std::int64_t kq, const std::uint8_t* const* a, const std::int8_t* w,
                     std::int64_t panel_bytes, const typename Tile::template Panel<Epi>* pc,
                     typename Epi::Out* c, std::int64_t ldc, int cols) {
  constexpr int next = MR > 8 ? 8 : MR > 4 ? 4 : MR > 2 ? 2 : 1;
  if constexpr (MR == gemm_rows_per_output<Epi>) {
    Tile::template run<MR, NP, Epi>(kq, a, w, panel_bytes, pc, c, ldc, rows, cols);
  } else {
    if (rows > next)
      Tile::template run<MR, NP, Epi>(kq, a, w, panel_bytes, pc, c, ldc, rows, cols);
    else
      run_rows<Tile, NP, Epi, next>(rows, kq, a, w, panel_bytes, pc, c, ldc, cols);
  }
}

/// Panels [p, p + NP) x rows [mb, me).
template <class Tile, int NP, class Epi, class Rows>
inline void sweep_panels(const GemmArgs<Epi, Rows>& g, std::int64_t p, std::int64_t mb,
                         std::int64_t me, std::uint8_t* tail) {
  constexpr int MR = tile_rows<Tile, Epi>;
  constexpr int P = gemm_rows_per_output<Epi>;
  const PackedWeightsU8S8& B = g.B;
  const std::int64_t K = B.k(), kp = B.k_padded(), kq = kp / 4, n0 = p * 16;
  const int cols = static_cast<int>(std::min<std::int64_t>(16 * NP, B.n() - n0));
  const typename Tile::template Panel<Epi> pc(g.epi, B.row_sums(), g.za, n0, cols);
  const std::int8_t* w = B.panel(p);
  const std::int64_t panel_bytes = kp * 16;
  for (std::int64_t m = mb; m < me; m += MR) {
    const int rows = static_cast<int>(std::min<std::int64_t>(MR, me - m));
    const std::uint8_t* a[MR];
    if (m + rows > g.m_whole) {
      for (int r = 0; r < rows; ++r) {
        std::memcpy(tail + r * kp, g.A.row(m + r), static_cast<std::size_t>(K));
        std::memset(tail + r * kp + K, 0, static_cast<std::size_t>(kp - K));
        a[r] = tail + r * kp;
      }
    } else {
      for (int r = 0; r < rows; ++r) a[r] = g.A.row(m + r);
    }
    for (int r = rows; r < MR; ++r) a[r] = a[0];
    run_rows<Tile, NP, Epi, MR>(rows, kq, a, w, panel_bytes, &pc, g.C + m / P * g.ldc + n0, g.ldc,
                                cols);
  }
}

/// Rows [m0, m1) x panels [p0, p1), single-threaded: row blocks of A that
/// stay in L2 while each panel group (in L1) sweeps them. tail: MR * kp
/// bytes. Row r of A goes to row r / gemm_rows_per_output<Epi> of C (m0 and
/// m1 multiples of it).
template <class Tile, class Epi, class Rows>
inline void gemm_sweep(const GemmArgs<Epi, Rows>& g, std::int64_t m0, std::int64_t m1,
                       std::int64_t p0, std::int64_t p1, std::uint8_t* tail) {
  constexpr int NP = Tile::kNP;
  const std::int64_t mc = GemmU8S8Tiles::row_block(g.B.k_padded(), tile_rows<Tile, Epi>);
  for (std::int64_t mb = m0; mb < m1; mb += mc) {
    const std::int64_t me = std::min(m1, mb + mc);
    for (std::int64_t p = p0; p < p1; p += NP) {
      if (NP > 1 && p + NP > p1)
        sweep_panels<Tile, 1>(g, p, mb, me, tail);
      else
        sweep_panels<Tile, NP>(g, p, mb, me, tail);
    }
  }
}

// The entry points, one per kernel: each compiles the whole sweep for its
// instruction set.
#define COMPRESSOR_FLATTEN __attribute__((flatten))

template <class Epi, class Rows>
COMPRESSOR_TARGET_AVX2 COMPRESSOR_FLATTEN void gemm_block_ymm_maddubs(
    const GemmArgs<Epi, Rows>& g, std::int64_t m0, std::int64_t m1, std::int64_t p0,
    std::int64_t p1, std::uint8_t* tail) {
  gemm_sweep<ymm::YmmMaddubsTile>(g, m0, m1, p0, p1, tail);
}

template <class Epi, class Rows>
COMPRESSOR_TARGET_AVX2 COMPRESSOR_FLATTEN void gemm_block_ymm_widen(
    const GemmArgs<Epi, Rows>& g, std::int64_t m0, std::int64_t m1, std::int64_t p0,
    std::int64_t p1, std::uint8_t* tail) {
  gemm_sweep<ymm::YmmWidenTile>(g, m0, m1, p0, p1, tail);
}

template <class Epi, class Rows>
COMPRESSOR_TARGET_AVX_VNNI COMPRESSOR_FLATTEN void gemm_block_ymm_vnni(
    const GemmArgs<Epi, Rows>& g, std::int64_t m0, std::int64_t m1, std::int64_t p0,
    std::int64_t p1, std::uint8_t* tail) {
  gemm_sweep<ymm::YmmVnniTile>(g, m0, m1, p0, p1, tail);
}

template <class Epi, class Rows>
COMPRESSOR_TARGET_AVX512 COMPRESSOR_FLATTEN void gemm_block_zmm_maddubs(
    const GemmArgs<Epi, Rows>& g, std::int64_t m0, std::int64_t m1, std::int64_t p0,
    std::int64_t p1, std::uint8_t* tail) {
  gemm_sweep<zmm::ZmmMaddubsTile>(g, m0, m1, p0, p1, tail);
}

template <class Epi, class Rows>
COMPRESSOR_TARGET_AVX512_VNNI COMPRESSOR_FLATTEN void gemm_block_zmm_vnni(
    const GemmArgs<Epi, Rows>& g, std::int64_t m0, std::int64_t m1, std::int64_t p0,
    std::int64_t p1, std::uint8_t* tail) {
  gemm_sweep<zmm::ZmmVnniTile>(g, m0, m1, p0, p1, tail);
}

template <class Epi, class Rows>
COMPRESSOR_TARGET_AVX512 COMPRESSOR_FLATTEN void gemm_block_zmm_widen(
    const GemmArgs<Epi, Rows>& g, std::int64_t m0, std::int64_t m1, std::int64_t p0,
    std::int64_t p1, std::uint8_t* tail) {
  gemm_sweep<zmm::ZmmWidenTile>(g, m0, m1, p0, p1, tail);
}

#undef COMPRESSOR_FLATTEN

}  // namespace simd::detail_gemm

}  // namespace compressor::kernels
