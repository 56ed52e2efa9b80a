// Public int8 GEMM: C (M x N) = epi(A (M x K, uint8, zero point za) * W^T),
// W packed once into PackedWeightsU8S8. Names say type and epilogue:
//   gemm_u8s8_requant   -> uint8  (RequantOut, optional fused ReLU via qmin)
//   gemm_u8s8_dequant   -> float  (DequantOut, last layer)
//   gemm_u8s8_s32       -> int32  (Int32Out)
// Each call runs the kernel of the path in use (kernels/isa.hpp: kernel_path(),
// read once per call; gemm_kernel() picks the micro-kernel for the weights).
// Threaded with OpenMP over row blocks (or column panels when M is small),
// handed out dynamically (parallel_units.hpp); single-threaded when called
// from inside a parallel region. A needs only K readable bytes per row; C
// rows are written for N columns (stride ldc).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "compressor/core/aligned_buffer.hpp"
#include "compressor/core/error.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/gemm_rows.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/packed_weights.hpp"
#include "compressor/kernels/parallel_units.hpp"
#include "compressor/kernels/simd/gemm_u8s8.hpp"

namespace compressor::kernels {

namespace detail {

/// Portable kernel on the packed layout: the scalar path. Output row m / P
/// takes the max of rows m..m+P-1's accumulators (P = 1 but for RowMax4).
template <GemmEpilogue Epi, class Rows>
void gemm_u8s8_portable(std::int64_t m0, std::int64_t m1, std::int64_t p0, std::int64_t p1, Rows A,
                        std::int32_t za, const PackedWeightsU8S8& B, const Epi& epi,
                        typename Epi::Out* C, std::int64_t ldc) {
  constexpr int P = gemm_rows_per_output<Epi>;
  const std::int64_t n_end = std::min(B.n(), p1 * 16);
  for (std::int64_t m = m0; m < m1; m += P) {
    for (std::int64_t n = p0 * 16; n < n_end; ++n) {
      std::int32_t max = 0;
      for (int r = 0; r < P; ++r) {
        const std::uint8_t* a = A.row(m + r);
        std::int32_t acc = (epi.bias ? epi.bias[n] : 0) - za * B.row_sums()[n];
        for (std::int64_t k = 0; k < B.k(); ++k) acc += a[k] * B.at(n, k);
        max = r == 0 ? acc : std::max(max, acc);
      }
      C[m / P * ldc + n] = epi.apply(max, n);
    }
  }
}

/// Per-thread buffers of the GEMM (grown once, reused), one per slot:
/// kGemmTailSlot holds a zero-padded copy of the last rows of an unpadded A,
/// kGemmCopySlot a copied row block of A (gemm_copies_a).
inline constexpr int kGemmTailSlot = 0, kGemmCopySlot = 1;
inline std::uint8_t* gemm_scratch(std::size_t bytes, int slot) {
  thread_local AlignedBuffer<std::uint8_t> buf[2];
  buf[slot].reserve_discard(bytes);
  return buf[slot].data();
}

/// A GEMM whose A has at least this many bytes copies each row block of A
/// into a buffer of its thread before the panels sweep it. An A this large
/// comes from memory (it outgrows the caches, and the benchmarks reread it
/// every call): the tiles' first sweep over a block then read 12 rows at
/// once at 4 bytes a step, which the prefetchers serve worse than a copy's
/// one sequential stream. On the Zen 4 VM, CifarCnn's conv2 at batch 128
/// (19 MB of A) ran 70-75% -> 76-82% of the VNNI peak on 1 and 2 threads,
/// the 9.4 MB conv3 as before or faster; software prefetches instead of
/// the copy gained at most 2% (docs/performance.md, 2026-12-06).
inline constexpr std::int64_t kGemmCopyMinBytes = std::int64_t{8} << 20;

/// The size gemm_copies_a uses: kGemmCopyMinBytes unless a
/// ScopedGemmCopyMinBytes says otherwise.
inline std::int64_t& gemm_copy_min_bytes() {
  static std::int64_t bytes = kGemmCopyMinBytes;
  return bytes;
}

/// Whether a GEMM of M rows copies A's row blocks (see kGemmCopyMinBytes):
/// only where more than one panel group sweeps each block, and not for the
/// RowMax4 epilogue, whose output rows are 4 input rows.
template <GemmEpilogue Epi>
bool gemm_copies_a(std::int64_t M, const PackedWeightsU8S8& B) {
  return gemm_rows_per_output<Epi> == 1 && B.panels() > GemmU8S8Tiles::kPanelsZmm &&
         M * B.k() >= gemm_copy_min_bytes();
}

/// Rows [m0, m1) x panels [p0, p1) on one thread, with kernel `kernel`
/// (gemm_kernel(kernel_path(), B), read once per call by the caller); rows
/// [m_whole, M) of A have only K readable bytes (see simd::detail_gemm::GemmArgs).
/// copy_a: copy each row block of A first (gemm_copies_a; C's rows are A's).
template <GemmEpilogue Epi, class Rows>
void gemm_u8s8_range(GemmKernel kernel, std::int64_t m0, std::int64_t m1, std::int64_t p0,
                     std::int64_t p1, Rows A, std::int32_t za, const PackedWeightsU8S8& B,
                     const Epi& epi, typename Epi::Out* C, std::int64_t ldc, std::int64_t m_whole,
                     bool copy_a = false) {
  if (copy_a && kernel != GemmKernel::portable) {
    const std::int64_t K = B.k(), kp = B.k_padded();
    const std::int64_t mc = GemmU8S8Tiles::row_block(kp, gemm_kernel_rows(kernel));
    std::uint8_t* block = gemm_scratch(static_cast<std::size_t>(mc * kp), kGemmCopySlot);
    for (std::int64_t mb = m0; mb < m1; mb += mc) {
      const std::int64_t me = std::min(m1, mb + mc);
      for (std::int64_t m = mb; m < me; ++m) {
        std::uint8_t* row = block + (m - mb) * kp;
        std::memcpy(row, A.row(m), static_cast<std::size_t>(K));
        std::memset(row + K, 0, static_cast<std::size_t>(kp - K));
      }
      gemm_u8s8_range(kernel, 0, me - mb, p0, p1, StridedRowsU8{block, kp}, za, B, epi,
                      C + mb * ldc, ldc, me - mb);
    }
    return;
  }
  if (kernel == GemmKernel::portable) {
    gemm_u8s8_portable(m0, m1, p0, p1, A, za, B, epi, C, ldc);
    return;
  }
  std::uint8_t* tail = nullptr;
  if (m_whole < m1)
    tail = gemm_scratch(static_cast<std::size_t>(gemm_kernel_rows(kernel) * B.k_padded()),
                        kGemmTailSlot);
  namespace g = simd::detail_gemm;
  const g::GemmArgs<Epi, Rows> args{A, za, B, epi, C, ldc, m_whole};
  switch (kernel) {
    case GemmKernel::ymm_maddubs:
      g::gemm_block_ymm_maddubs(args, m0, m1, p0, p1, tail);
      break;
    case GemmKernel::ymm_widen:
      g::gemm_block_ymm_widen(args, m0, m1, p0, p1, tail);
      break;
    case GemmKernel::ymm_vnni:
      g::gemm_block_ymm_vnni(args, m0, m1, p0, p1, tail);
      break;
    case GemmKernel::zmm_maddubs:
      g::gemm_block_zmm_maddubs(args, m0, m1, p0, p1, tail);
      break;
    case GemmKernel::zmm_vnni:
      g::gemm_block_zmm_vnni(args, m0, m1, p0, p1, tail);
      break;
    case GemmKernel::zmm_widen:
      g::gemm_block_zmm_widen(args, m0, m1, p0, p1, tail);
      break;
    case GemmKernel::portable:
      break;
  }
}

/// Rows [0, result) of an M-row A (stride lda, K valid bytes per row) can be
/// read as kp bytes without leaving A: row m needs m * lda + kp <= (M - 1) * lda + K.
inline std::int64_t rows_readable_padded(std::int64_t M, std::int64_t lda, std::int64_t K,
                                         std::int64_t kp, bool a_padded) {
  if (a_padded || kp == K) return M;
  return std::max<std::int64_t>(0, M - (kp - K + lda - 1) / lda);
}

/// The threads a GEMM call of M rows runs on: one inside a parallel region
/// (parallel_units then runs inline), else at most one per
/// kMinMacsPerThread multiply-adds.
inline std::int64_t gemm_threads(std::int64_t M, const PackedWeightsU8S8& B) {
  return in_parallel() ? 1 : threads_for_macs(M * B.k_padded() * B.n());
}

/// The GEMM's split over `threads` threads: rows of A (true) or weight
/// panels. Splitting rows makes every thread read all N x K weights and
/// M / T rows of A; splitting panels, all of A and N / T of the weights.
/// Split the larger operand, when it has a row tile per thread; one thread
/// takes the smaller operand's way (fewer passes over the larger one).
inline bool gemm_splits_rows(std::int64_t M, const PackedWeightsU8S8& B, GemmKernel kernel,
                             std::int64_t threads) {
  if (threads <= 1) return M >= B.n();
  const std::int64_t row_tiles = (M + gemm_kernel_rows(kernel) - 1) / gemm_kernel_rows(kernel);
  return (M >= B.n() && row_tiles >= threads) || B.panels() < threads;
}

/// The split of a conv that unfolds its rows (im2col): as the GEMM's, and
/// by rows also when the weights are the larger operand if there are two of
/// the kernel's row tiles per thread. Split by rows, each thread unfolds its
/// own rows into its own cache; split by panels, both threads read the one
/// unfolded matrix, half of it written by the other core. On the Zen 5 VM
/// at 2 threads, batch-1 3x3 convs of 49 and 64 output pixels ran 1.2-1.4x
/// faster by rows (ResNet-18's 7x7 256 -> 256 conv 56 -> 43-45 us,
/// CifarCnn's 8x8 128 -> 256 one 40-41 -> 32-33 us), the batch-8 4x4 ones
/// 1.03-1.08x, while the bare GEMM on the same shapes, whose A every thread
/// reads from memory either way, ran 4-10% slower by rows than by panels.
/// Fewer tiles than that split unevenly (16 rows in 12-row tiles: 12 + 4,
/// measured 8% slower than panels).
inline bool conv_splits_rows(std::int64_t M, const PackedWeightsU8S8& B, GemmKernel kernel,
                             std::int64_t threads) {
  if (gemm_splits_rows(M, B, kernel, threads)) return true;
  const std::int64_t row_tiles = (M + gemm_kernel_rows(kernel) - 1) / gemm_kernel_rows(kernel);
  return threads > 1 && row_tiles >= 2 * threads;
}

/// Rows per work unit when the GEMM splits rows over `threads`: one L2 row
/// block on one thread; with more threads about 6 units per thread (so that
/// a thread that loses its core leaves units to the others; 6 measured
/// better than 3 on the batch-8 ResNet-18 shapes at 2 threads,
/// docs/performance.md), each still a multiple of the kernel's tile rows,
/// and smaller where whole units would leave a thread idle in the last
/// round (ResNet-18's 7 x 7 convs at batch 8, 33 tiles: 11 units of 3 tiles
/// ran 6 on one thread and 5 on the other; in tiles of 1, 2-7% faster on
/// the Zen 4 VM).
inline std::int64_t gemm_unit_rows(std::int64_t M, const PackedWeightsU8S8& B, GemmKernel kernel,
                                   std::int64_t threads) {
  const std::int64_t MR = gemm_kernel_rows(kernel);
  const std::int64_t block = GemmU8S8Tiles::row_block(B.k_padded(), gemm_kernel_rows(kernel));
  if (threads <= 1) return block;
  const std::int64_t tiles = (M + MR - 1) / MR;
  // Units of t tiles end in a round where threads may idle: the call takes
  // ceil(ceil(tiles / t) / threads) * t tile times. Take the largest t up
  // to ~6 units per thread that is within 3% of the best (t = 1).
  const auto span = [&](std::int64_t t) {
    return ((tiles + t - 1) / t + threads - 1) / threads * t;
  };
  const std::int64_t best = span(1);
  std::int64_t t =
      std::clamp((tiles + 6 * threads - 1) / (6 * threads), std::int64_t{1}, block / MR);
  while (t > 1 && span(t) * 100 > best * 103) --t;
  return t * MR;
}

/// The threaded GEMM on any row source (arguments checked by the caller):
/// rows split into units or, for few rows, weight panels. With RowMax4, M
/// is a multiple of 4 and C has M / 4 rows.
template <GemmEpilogue Epi, class Rows>
void gemm_u8s8_rows(std::int64_t M, Rows A, std::int32_t za, const PackedWeightsU8S8& B,
                    const Epi& epi, typename Epi::Out* C, std::int64_t ldc, std::int64_t m_whole) {
  if (M == 0) return;
  const GemmKernel kernel = gemm_kernel(kernel_path(), B);
  const std::int64_t panels = B.panels();
  const std::int64_t threads = gemm_threads(M, B);
  const bool copy_a = gemm_copies_a<Epi>(M, B);
  if (gemm_splits_rows(M, B, kernel, threads)) {
    constexpr int P = gemm_rows_per_output<Epi>;  // units of whole output rows
    const std::int64_t rows = (gemm_unit_rows(M, B, kernel, threads) + P - 1) / P * P;
    parallel_units((M + rows - 1) / rows,
                   [&](std::int64_t u) {
                     gemm_u8s8_range(kernel, u * rows, std::min(M, (u + 1) * rows), 0, panels, A,
                                     za, B, epi, C, ldc, m_whole, copy_a);
                   },
                   threads);
  } else {
    // Contiguous groups of panels, ~2 per thread: threads writing
    // neighbouring panels of the same rows of C share a cache line at every
    // boundary (always so for uint8 C, for int32 C when it is not 64-byte
    // aligned; one panel per unit measured 1.6x slower on ResNet-18's layer3
    // downsample at batch 1, 2 threads, with C 16 bytes off a line).
    const std::int64_t per = std::max<std::int64_t>(1, panels / (2 * threads));
    parallel_units((panels + per - 1) / per,
                   [&](std::int64_t u) {
                     gemm_u8s8_range(kernel, 0, M, u * per, std::min(panels, (u + 1) * per), A, za,
                                     B, epi, C, ldc, m_whole,
                                     copy_a && std::min(panels, (u + 1) * per) - u * per >
                                                   GemmU8S8Tiles::kPanelsZmm);
                   },
                   threads);
  }
}

}  // namespace detail

/// Sets the size of A from which the GEMM copies its row blocks
/// (detail::kGemmCopyMinBytes) for the scope's lifetime; for tests, which
/// run the copy on small matrices. Not thread-safe.
class ScopedGemmCopyMinBytes {
 public:
  explicit ScopedGemmCopyMinBytes(std::int64_t bytes) : saved_(detail::gemm_copy_min_bytes()) {
    detail::gemm_copy_min_bytes() = bytes;
  }
  ~ScopedGemmCopyMinBytes() { detail::gemm_copy_min_bytes() = saved_; }
  ScopedGemmCopyMinBytes(const ScopedGemmCopyMinBytes&) = delete;
  ScopedGemmCopyMinBytes& operator=(const ScopedGemmCopyMinBytes&) = delete;

 private:
  std::int64_t saved_;
};

/// C = epi(A * W^T) for the generic epilogue types of epilogue.hpp.
/// a_padded: every row of A, the last included, has B.k_padded() readable
/// bytes (any values: the packed weights are zero there), as im2col rows do;
/// the kernel then needs no partial k group.
template <GemmEpilogue Epi>
void gemm_u8s8(std::int64_t M, const std::uint8_t* A, std::int64_t lda, std::int32_t a_zero_point,
               const PackedWeightsU8S8& B, const Epi& epi, typename Epi::Out* C, std::int64_t ldc,
               bool a_padded = false) {
  require<ShapeError>(M >= 0 && lda >= (a_padded ? B.k_padded() : B.k()) && ldc >= B.n(),
                      "gemm_u8s8: A is ", M, "x", B.k(), " with row stride ", lda, ", C is ", M,
                      "x", B.n(), " with row stride ", ldc,
                      " (strides must be >= the row lengths)");
  require(a_zero_point >= 0 && a_zero_point <= 255, "gemm_u8s8: activation zero point ",
          a_zero_point, " is outside [0, 255]");
  const std::int64_t m_whole = detail::rows_readable_padded(M, lda, B.k(), B.k_padded(), a_padded);
  detail::gemm_u8s8_rows(M, StridedRowsU8{A, lda}, a_zero_point, B, epi, C, ldc, m_whole);
}

inline void gemm_u8s8_requant(std::int64_t M, const std::uint8_t* A, std::int64_t lda,
                              std::int32_t a_zero_point, const PackedWeightsU8S8& B,
                              const RequantOut& epi, std::uint8_t* C, std::int64_t ldc) {
  gemm_u8s8(M, A, lda, a_zero_point, B, epi, C, ldc);
}

inline void gemm_u8s8_dequant(std::int64_t M, const std::uint8_t* A, std::int64_t lda,
                              std::int32_t a_zero_point, const PackedWeightsU8S8& B,
                              const DequantOut& epi, float* C, std::int64_t ldc) {
  gemm_u8s8(M, A, lda, a_zero_point, B, epi, C, ldc);
}

inline void gemm_u8s8_s32(std::int64_t M, const std::uint8_t* A, std::int64_t lda,
                          std::int32_t a_zero_point, const PackedWeightsU8S8& B,
                          const std::int32_t* bias, std::int32_t* C, std::int64_t ldc) {
  gemm_u8s8(M, A, lda, a_zero_point, B, Int32Out{bias}, C, ldc);
}

}  // namespace compressor::kernels
