// fp32 GEMM: C (M x N, row stride ldc) = [C +] A (M x K) * B (K x N) on the
// micro-kernel of the path kernel_path() names (simd/sgemm.hpp): the AVX2 one
// (MR x 16, ymm) on avx2 and avx_vnni, the AVX-512 one (MR x 32, zmm) on
// avx512 and avx512_vnni, the scalar reference (ref/sgemm.hpp) on scalar. The public sgemm() takes
// strided A and B (StridedMatrix), so products with transposed operands need no copies;
// conv_f32.hpp runs the same driver with an implicit im2col matrix as A or B.
//
// Blocking: B is consumed in panels of NR columns; K in blocks that never
// cross a "run" of A's columns (a run is contiguous in memory: all of K for a
// strided A, one kernel row for an implicit im2col A), of at most
// max_k_block columns (fewer when A is packed); a B panel block stays in L1 while it sweeps a block
// of A rows held in L2. Partial sums go back to C between k blocks, which
// keeps the summation order of the scalar reference (bit-exact, see tests).
// A is read in place when its rows are contiguous in k, else (an A^T operand,
// the weight gradient's dY^T) packed per unit and k block. B is packed once
// into contiguous panels when its columns are strided or M >= 1024 (each B
// element is then reused often enough to pay for the copy), but a strided B
// that at most two row blocks read is packed one panel's k block at a time,
// just before its use; otherwise its rows are read in place, a partial last
// panel through a zero-padded copy.
//
// Threaded over (row block, panel group) units handed out dynamically
// (parallel_units.hpp); each element of C is computed by one unit in a fixed
// order, so results do not depend on the thread count. Single-threaded when
// called inside a parallel region. Every path sums each element in the
// reference's order, so the result does not depend on the path either.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "compressor/core/aligned_buffer.hpp"
#include "compressor/core/error.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/parallel_units.hpp"
#include "compressor/kernels/ref/sgemm.hpp"
#include "compressor/kernels/sgemm_operands.hpp"
#include "compressor/kernels/simd/sgemm.hpp"

namespace compressor::kernels {

/// Tile and block sizes of the fp32 GEMM on the AVX2 path.
struct SgemmTilesAvx2 {
  static constexpr int kMR = 6;   // rows of C per micro-tile: 12 ymm accumulators
  static constexpr int kNR = 16;  // columns of C per micro-tile (one B panel): 2 ymm
  /// Largest k block: 768 with A read in place (a 768 x 16 B panel block is
  /// 48 KiB, the L1 of Zen 4/5), 256 with A packed (the weight gradient,
  /// whose K is the pixel count: its packed A block and B panel block stay
  /// small).
  static constexpr std::int64_t max_k_block(bool a_packed) { return a_packed ? 256 : 768; }
  /// Largest row block of A: ~256 KiB of A per k block, a multiple of kMR.
  static constexpr std::int64_t max_row_block(std::int64_t kc) {
    return std::clamp<std::int64_t>((65536 / std::max<std::int64_t>(kc, 1)) / kMR * kMR, kMR, 192);
  }
};

/// Tile and block sizes of the fp32 GEMM on the AVX-512 path.
struct SgemmTilesAvx512 {
  /// Rows per micro-tile: 28 zmm accumulators + 2 B rows + 1 broadcast = 31
  /// of the 32 zmm (12 rows measured 4-13% slower on the conv shapes).
  static constexpr int kMR = 14;
  static constexpr int kNR = 32;  // columns per micro-tile (one B panel): 2 zmm
  /// Largest k block: a 384 x 32 B panel block is 48 KiB (Zen 5's L1).
  static constexpr std::int64_t max_k_block(bool a_packed) { return a_packed ? 256 : 384; }
  /// Largest row block of A: ~256 KiB of A per k block, a multiple of kMR.
  static constexpr std::int64_t max_row_block(std::int64_t kc) {
    return std::clamp<std::int64_t>((65536 / std::max<std::int64_t>(kc, 1)) / kMR * kMR, kMR,
                                    192 / kMR * kMR);
  }
};

/// The panel width (columns per B panel) of the fp32 GEMM on path p: 16 on
/// the AVX2 paths, 32 on the AVX-512 ones (1 on scalar: no panels).
constexpr int sgemm_panel_width(Path p) {
  return path_has_avx512(p) ? SgemmTilesAvx512::kNR : path_has_avx2(p) ? SgemmTilesAvx2::kNR : 1;
}

namespace detail {

inline float* sgemm_scratch(std::size_t n, int slot) {
  thread_local AlignedBuffer<float> buf[4];
  buf[slot].reserve_discard(n);
  return buf[slot].data();
}

inline std::int64_t* sgemm_offsets(std::size_t n, int slot) {
  thread_local AlignedBuffer<std::int64_t> buf[2];
  buf[slot].reserve_discard(n);
  return buf[slot].data();
}

#if COMPRESSOR_X86

/// The micro-kernels of each path, with their tile sizes.
struct SgemmAvx2 : SgemmTilesAvx2 {
  template <bool kIndirect, class... Args>
  static void block(Args... args) {
    simd::detail_sgemm::block_avx2<kMR, kIndirect>(args...);
  }
};
struct SgemmAvx512 : SgemmTilesAvx512 {
  template <bool kIndirect, class... Args>
  static void block(Args... args) {
    simd::detail_sgemm::block_avx512<kMR, kIndirect>(args...);
  }
};

/// A in place, strided: element (i, k) at data[i * rs + k * ks].
struct StridedA {
  StridedMatrix m;
  bool packed() const { return m.col_stride != 1; }
  std::int64_t run(std::int64_t K) const { return K; }
  const float* base() const { return m.data; }
  /// Offsets of rows [m0, m1) at column k0 (in place, ks = col_stride).
  void row_offsets(std::int64_t m0, std::int64_t m1, std::int64_t k0, std::int64_t* off) const {
    for (std::int64_t i = m0; i < m1; ++i) off[i - m0] = i * m.row_stride + k0 * m.col_stride;
  }
  float at(std::int64_t i, std::int64_t k) const { return m.at(i, k); }
  /// Rows [i0, i0 + rows) x columns [k0, k0 + kn) as [k][MR], zero past rows.
  /// An A^T operand (row stride 1, the weight gradient's dY^T) copies MR
  /// contiguous floats per k.
  void pack_tile(std::int64_t i0, std::int64_t rows, std::int64_t k0, std::int64_t kn, float* d,
                 int MR) const {
    if (m.row_stride == 1 && rows == MR) {
      const float* s = m.data + i0 + k0 * m.col_stride;
      for (std::int64_t k = 0; k < kn; ++k, d += MR, s += m.col_stride)
        for (int r = 0; r < MR; ++r) d[r] = s[r];
      return;
    }
    for (std::int64_t k = 0; k < kn; ++k, d += MR) {
      std::int64_t r = 0;
      for (; r < rows; ++r) d[r] = m.at(i0 + r, k0 + k);
      for (; r < MR; ++r) d[r] = 0.f;
    }
  }
};

/// B read in place or packed (see the header comment).
struct StridedB {
  StridedMatrix m;
  static constexpr bool kIndirect = false;
  bool pack(std::int64_t M) const { return m.col_stride != 1 || M >= 1024; }
  float at(std::int64_t k, std::int64_t n) const { return m.at(k, n); }
  /// Row offsets of a k block: not used (direct rows).
  void k_offsets(std::int64_t, std::int64_t, std::int64_t*) const {}
  /// Rows [k0, k0 + kn) of panel columns [n0, n0 + 16), in place.
  simd::detail_sgemm::BRows rows(std::int64_t k0, std::int64_t n0, const std::int64_t*) const {
    return {m.data + k0 * m.row_stride + n0, m.row_stride};
  }
  /// Rows [k0, k0 + kn) of that panel as a [kn][NR] block (the driver's
  /// late packing, see gemm_driver).
  void pack_panel_rows(std::int64_t k0, std::int64_t kn, std::int64_t n0, std::int64_t cols,
                       float* d, int NR) const {
    StridedB{{m.data + k0 * m.row_stride, m.row_stride, m.col_stride}}.pack_panel(n0, cols, kn, d,
                                                                                  NR);
  }
  /// Columns [n0, n0 + cols) of rows [0, K) as a [K][NR] panel, zero past
  /// cols. A transposed operand (row stride 1: the forward's W^T, each
  /// column contiguous) goes through 8 x 8 transposes.
  void pack_panel(std::int64_t n0, std::int64_t cols, std::int64_t K, float* d, int NR) const {
    std::int64_t k = 0;
    if (m.row_stride == 1 && cols == NR)
      for (; k + 8 <= K; k += 8)
        for (int g = 0; g < NR; g += 8)
          simd::detail_sgemm::transpose8x8(m.data + k + (n0 + g) * m.col_stride, m.col_stride,
                                           d + k * NR + g, NR);
    for (d += k * NR; k < K; ++k, d += NR) {
      std::int64_t j = 0;
      for (; j < cols; ++j) d[j] = m.at(k, n0 + j);
      for (; j < NR; ++j) d[j] = 0.f;
    }
  }
};

/// The driver: C = [C +] A * B with A and B given by the sources above or
/// by conv_f32.hpp's implicit im2col sources, on the micro-kernel Kern
/// (SgemmAvx2 or SgemmAvx512).
template <class Kern, class ASrc, class BSrc>
void gemm_driver(std::int64_t M, std::int64_t N, std::int64_t K, const ASrc& A, const BSrc& B,
                 float* C, std::int64_t ldc, bool accumulate) {
  constexpr int MR = Kern::kMR, NR = Kern::kNR;
  constexpr bool kIndirect = BSrc::kIndirect;
  const std::int64_t P = (N + NR - 1) / NR;
  const bool pack_a = A.packed();
  // k blocks: every run of A's columns split into equal parts <= kmax.
  const std::int64_t run = A.run(K), kmax = Kern::max_k_block(pack_a);
  const std::int64_t parts = (run + kmax - 1) / kmax;
  const std::int64_t kc = (run + parts - 1) / parts;
  // Row blocks of whole micro-tiles, no larger than max_row_block, their
  // tile counts differing by at most one. With A read in place and few
  // blocks, their number is a multiple of the thread count: 7 blocks on 2
  // threads left one thread idle for a seventh of the product (ResNet-18's
  // 4x4 layers at batch 32).
  const std::int64_t threads = std::max(1, num_threads());
  const std::int64_t tiles = (M + MR - 1) / MR;
  const std::int64_t tiles_max = Kern::max_row_block(kc) / MR;
  std::int64_t row_blocks = (tiles + tiles_max - 1) / tiles_max;
  if (!pack_a && row_blocks < 8 * threads)
    row_blocks = std::min(tiles, (row_blocks + threads - 1) / threads * threads);
  // Block b holds tiles [b * tiles / row_blocks, (b + 1) * tiles / row_blocks).
  const auto block_row = [&](std::int64_t b) { return std::min(M, b * tiles / row_blocks * MR); };
  const std::int64_t mb = (tiles + row_blocks - 1) / row_blocks * MR;  // largest block

  // B packed as panels [P][K][16], zero past N, when that pays off (always
  // for a source that cannot be read in place, one without rows()), by the
  // source's pack_panel.
  constexpr bool kInPlaceB = requires(const BSrc& b, const std::int64_t* off) {
    b.rows(0, 0, off);
  };
  bool packed_b = false;
  const float* bp = nullptr;
  // Late packing: a B that must be packed (its columns strided: the
  // forward's W^T) but that at most two row blocks read is packed one k
  // block of one panel at a time, by the unit about to use it, into a
  // buffer of its thread (kn x NR floats, 48 KiB at most). Packing all of B
  // first wrote it whole and read it back per row block, which at batch 1
  // (few rows per product) cost as much as the product on small layers: on
  // the Zen 4 VM the fp32 CifarCnn at batch 1 ran 1.35x faster on 1 thread
  // this way, a ResNet-18 frame 1.05x; up to 4 row blocks gained nothing
  // more.
  constexpr bool kLatePackB = requires {
    B.pack_panel_rows(0, 0, 0, 0, nullptr, NR);
  };
  bool late_b = false;
  if constexpr (!kIndirect) {
    if constexpr (kInPlaceB)
      packed_b = B.pack(M);
    else
      packed_b = true;
    late_b = kLatePackB && packed_b && row_blocks <= 2;
    if (late_b) packed_b = false;
    if (packed_b) {
      float* dst = sgemm_scratch(static_cast<std::size_t>(P * K * NR), 0);
      parallel_units(P, [&](std::int64_t p) {
        const std::int64_t n0 = p * NR, cols = std::min<std::int64_t>(NR, N - n0);
        float* d = dst + p * K * NR;
        B.pack_panel(n0, cols, K, d, NR);
      });
      bp = dst;
    }
  }

  // Units: ~8 per thread for dynamic balance. When there are few row blocks
  // the panels are split into groups as well, of near-equal panel counts,
  // so that the unit count is a multiple of the thread count. A group reads
  // its columns of B's rows in place (wide groups keep those reads close to
  // sequential) and, with A packed (the weight gradient), packs its own copy
  // of A's blocks: then as few groups as the threads need (two copies per
  // thread made the 64-channel weight gradient ~10% slower on 2 threads).
  std::int64_t groups;
  if (pack_a) {
    groups = std::min<std::int64_t>((threads + row_blocks - 1) / row_blocks, P);
    while ((row_blocks * groups) % threads != 0 && groups < P) ++groups;
  } else {
    const std::int64_t want = (row_blocks >= 4 * threads ? 8 : 2) * threads;
    groups = std::clamp<std::int64_t>((want + row_blocks - 1) / row_blocks, 1, P);
  }

  parallel_units(row_blocks * groups, [&](std::int64_t u) {
    const std::int64_t m0 = block_row(u / groups), m1 = block_row(u / groups + 1);
    const std::int64_t p0 = (u % groups) * P / groups, p1 = (u % groups + 1) * P / groups;
    if (p0 >= p1 || m0 >= m1) return;
    std::int64_t* aoff = sgemm_offsets(static_cast<std::size_t>(mb + MR), 0);
    std::int64_t* boff = kIndirect ? sgemm_offsets(static_cast<std::size_t>(kc), 1) : nullptr;
    for (std::int64_t r0 = 0; r0 < K; r0 += run) {
      for (std::int64_t k0 = r0; k0 < r0 + run; k0 += kc) {
        const std::int64_t kn = std::min(kc, r0 + run - k0);
        const bool load_c = accumulate || k0 > 0;
        // A's block, rows [m0, m1) x [k0, k0 + kn): in place, or packed as
        // [tile of MR rows][k][MR] so that the broadcasts walk contiguous memory.
        const float* a = A.base();
        std::int64_t a_ks = 1;
        if constexpr (requires { A.k_stride(); }) a_ks = A.k_stride();
        if (pack_a) {
          float* t = sgemm_scratch(static_cast<std::size_t>((m1 - m0 + MR - 1) / MR * MR * kn), 1);
          for (std::int64_t m = m0; m < m1; m += MR) {
            const std::int64_t rows = std::min<std::int64_t>(MR, m1 - m);
            float* d = t + (m - m0) * kn;
            if constexpr (requires { A.pack_tile(m, rows, k0, kn, d, MR); }) {
              A.pack_tile(m, rows, k0, kn, d, MR);
            } else {
              for (std::int64_t k = 0; k < kn; ++k, d += MR) {
                std::int64_t r = 0;
                for (; r < rows; ++r) d[r] = A.at(m + r, k0 + k);
                for (; r < MR; ++r) d[r] = 0.f;
              }
            }
          }
          for (std::int64_t i = 0; i < m1 - m0; ++i) aoff[i] = (i / MR) * MR * kn + i % MR;
          a = t;
          a_ks = MR;
        } else {
          A.row_offsets(m0, m1, k0, aoff);
        }
        if constexpr (kIndirect) B.k_offsets(k0, kn, boff);
        for (std::int64_t p = p0; p < p1; ++p) {
          const std::int64_t n0 = p * NR;
          const int cols = static_cast<int>(std::min<std::int64_t>(NR, N - n0));
          // The panel's rows [k0, k0 + kn): packed, in place, or (a partial
          // last panel read in place) a zero-padded copy.
          simd::detail_sgemm::BRows br{bp, NR};
          if (packed_b) {
            br.b = bp + (p * K + k0) * NR;
          } else if (late_b) {
            if constexpr (kLatePackB) {
              float* t = sgemm_scratch(static_cast<std::size_t>(kn * NR), 2);
              B.pack_panel_rows(k0, kn, n0, cols, t, NR);
              br.b = t;
            }
          } else if constexpr (kInPlaceB) {
            br = B.rows(k0, n0, boff);
            if constexpr (!kIndirect) {
              // The panel's rows of the next k block, fetched while this one
              // runs (the hardware prefetcher missed them: the stem's
              // transposed weight gradient ran at 70% of peak on one thread,
              // 97% with this; on an indirect B, pixel rows, the same cost 4%
              // on 2 threads).
              const std::int64_t ahead = std::min(kc, K - k0 - kn);
              for (std::int64_t k = 0; k < ahead; ++k)
                __builtin_prefetch(br.b + (kn + k) * br.stride);
              if (cols < NR) {
                float* t = sgemm_scratch(static_cast<std::size_t>(kn * NR), 2);
                for (std::int64_t k = 0; k < kn; ++k) {
                  std::memcpy(t + k * NR, br.b + k * br.stride,
                              static_cast<std::size_t>(cols) * sizeof(float));
                  std::fill(t + k * NR + cols, t + (k + 1) * NR, 0.f);
                }
                br = {t, NR};
              }
            }
          }
          Kern::template block<kIndirect>(m1 - m0, kn, a, static_cast<const std::int64_t*>(aoff),
                                          a_ks, br, C + m0 * ldc + n0, ldc, cols, load_c);
        }
      }
    }
  });
}

#endif  // COMPRESSOR_X86

/// Runs fn(SgemmAvx2{}) or fn(SgemmAvx512{}) for path p and returns true, or
/// returns false on the scalar path (the caller runs the reference).
template <class Fn>
bool with_sgemm_kernel(Path p, Fn&& fn) {
#if COMPRESSOR_X86
  if (path_has_avx512(p)) {
    fn(SgemmAvx512{});
    return true;
  }
  if (path_has_avx2(p)) {
    fn(SgemmAvx2{});
    return true;
  }
#else
  (void)p;
  (void)fn;
#endif
  return false;
}

}  // namespace detail

/// C = [C +] A * B with A (M x K), B (K x N), C row-major (M x N, row stride
/// ldc >= N). C must not overlap A or B. Runs on path p (kernel_path() by
/// default; a path the CPU lacks is the caller's error).
inline void sgemm(std::int64_t M, std::int64_t N, std::int64_t K, StridedMatrix A, StridedMatrix B,
                  float* C, std::int64_t ldc, bool accumulate = false, Path p = kernel_path()) {
  require<ShapeError>(M >= 0 && N >= 0 && K >= 0 && ldc >= N, "sgemm: invalid sizes M=", M,
                      " N=", N, " K=", K, " ldc=", ldc);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate)
      for (std::int64_t i = 0; i < M; ++i) std::fill_n(C + i * ldc, N, 0.f);
    return;
  }
  const bool done = detail::with_sgemm_kernel(p, [&](auto kern) {
    detail::gemm_driver<decltype(kern)>(M, N, K, detail::StridedA{A}, detail::StridedB{B}, C, ldc,
                                        accumulate);
  });
  if (!done) ref::sgemm(M, N, K, A, B, C, ldc, accumulate);
}

}  // namespace compressor::kernels
