// Public sparse-weight x dense-activation kernels for unstructured-pruned
// layers: Y (M x N) = X (M x K, rows = pixels, e.g. NHWC or im2col) * W^T with
// W compressed once (SparseWeightsF32 / SparseWeightsS8, CSR).
//   sparse_gemm_f32    float, + bias, optional ReLU
//   sparse_gemm_u8s8   uint8 activations (zero point) x int8 weights with the
//                      dense kernels' epilogues (RequantOut, DequantOut, Int32Out;
//                      RowMax4 of these on rows by pool window)
// Work is proportional to the nonzeros, plus a transpose of X and Y per block
// of 32 rows. Threaded with OpenMP over row blocks, handed out dynamically
// (parallel_units.hpp), and over ranges of output channels too when the
// blocks alone would leave threads idle (sparse_units()); scratch in
// SparseScratch (grown once, reused).
// The path is kernel_path()'s: fp32 runs its AVX-512 block kernel on avx512
// and avx512_vnni, the AVX2 one on avx2 and avx_vnni; int8 runs its zmm
// vpdpbusd kernel on 64-row blocks on avx512_vnni, its ymm vpdpbusd kernel on
// avx_vnni and the AVX2 one on avx2 and avx512; scalar runs the references.
// Every path equals the reference bit for bit (simd/sparse_gemm.hpp).
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "compressor/core/aligned_buffer.hpp"
#include "compressor/core/error.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/parallel_units.hpp"
#include "compressor/kernels/ref/sparse_gemm.hpp"
#include "compressor/kernels/simd/sparse_gemm.hpp"

namespace compressor::kernels {

/// Per-thread panels and tiles of the sparse kernels; one per concurrent caller.
class SparseScratch {
 public:
  /// Makes room for `threads` threads of `bytes` each, none holding a packed
  /// panel; call outside parallel regions.
  void reserve(int threads, std::size_t bytes) {
    if (static_cast<int>(buffers_.size()) < threads)
      buffers_.resize(static_cast<std::size_t>(threads));
    for (auto& b : buffers_) b.reserve_discard(bytes);
    packed_.assign(buffers_.size(), -1);
  }
  std::uint8_t* thread_buffer(int t) { return buffers_[static_cast<std::size_t>(t)].data(); }
  /// Records that thread t's panel now holds row block `block`; true if it
  /// held another one (the panel must be packed).
  bool repack(int t, std::int64_t block) {
    std::int64_t& held = packed_[static_cast<std::size_t>(t)];
    const bool stale = held != block;
    held = block;
    return stale;
  }

 private:
  std::vector<AlignedBuffer<std::uint8_t>> buffers_;
  std::vector<std::int64_t> packed_;  // the row block each buffer's panel holds, -1: none
};

namespace detail {
inline constexpr std::int64_t kSparseRows = 32;  // = simd::kSparseBlock (64 on zmm int8)

inline std::size_t align64(std::size_t n) {
  return (n + 63) / 64 * 64;
}

inline void check_sparse_args(const char* what, std::int64_t M, std::int64_t ldx, std::int64_t ldy,
                              std::int64_t K, std::int64_t N) {
  require<ShapeError>(M >= 0 && ldx >= K && ldy >= N, what, ": X is ", M, "x", K,
                      " with row stride ", ldx, ", Y is ", M, "x", N, " with row stride ", ldy,
                      " (strides must be >= the row lengths)");
}

/// The time of one multiply-add of the int8 sparse kernels in dense-GEMM
/// multiply-adds, for threads_for_macs: ResNet-18's 28 x 28 x 64 -> 64 conv
/// at one frame, 90% sparse, computes 3.1 M products in 41 us on 1 thread
/// (avx512_vnni, Zen 5), the dense conv 28.9 M in 72 us: 5.6x. 4 is what
/// the sweep of docs/performance.md ("Small layers on one thread") chose.
inline constexpr std::int64_t kSparseMacCost = 4;

/// The work units of an M x N sparse product on `threads` threads: its
/// blocks of `block_rows` (32, or 64 for the zmm int8 kernel), each cut into
/// `chunks` ranges of `chunk` output channels (the last range shorter). A
/// unit's cost hardly depends on its rows (the kernels always compute a
/// whole block), so the blocks alone load the threads evenly
/// when they are a multiple of the thread count or many (3 or more per
/// thread: the last round is a small part). Otherwise (ResNet-18's last
/// stage on one 112x112 frame: 4x4 pixels, one block) each block is cut into
/// one range per thread, multiples of 8 channels; a thread packs a block's
/// panel once for the ranges of it that it takes in a row.
struct SparseUnits {
  std::int64_t blocks = 0, chunks = 1, chunk = 0;
};

inline SparseUnits sparse_units(std::int64_t M, std::int64_t N, int threads,
                                std::int64_t block_rows = kSparseRows) {
  SparseUnits u;
  u.blocks = (M + block_rows - 1) / block_rows;
  u.chunk = N;
  if (threads > 1 && u.blocks % threads != 0 && u.blocks < 3 * threads && N >= 16) {
    u.chunk = ((N + threads - 1) / threads + 7) / 8 * 8;
    u.chunks = (N + u.chunk - 1) / u.chunk;
  }
  return u;
}

/// Runs unit(m, rows, n0, n1, pack, buffer) over sparse_units(M, N, ...):
/// output channels [n0, n1) of rows [m, m + rows); pack: the buffer's panel
/// does not hold these rows yet. Threaded, on at most max_threads threads.
template <class Unit>
void for_sparse_units(std::int64_t M, std::int64_t N, SparseScratch& scratch, std::size_t bytes,
                      Unit unit, std::int64_t block_rows = kSparseRows,
                      std::int64_t max_threads = INT64_MAX) {
  // Called from inside a parallel region, parallel_units runs inline on this
  // caller's own scratch: buffer 0.
  const bool nested = in_parallel();
  const int threads =
      nested ? 1 : static_cast<int>(std::min<std::int64_t>(num_threads(), max_threads));
  const SparseUnits u = sparse_units(M, N, threads, block_rows);
  scratch.reserve(threads, bytes);
  parallel_units(
      u.blocks * u.chunks,
      [&](std::int64_t i) {
        const int t = nested ? 0 : thread_index();
        const std::int64_t b = i / u.chunks, m = b * block_rows, n0 = i % u.chunks * u.chunk;
        unit(m, static_cast<int>(std::min(block_rows, M - m)), n0, std::min(N, n0 + u.chunk),
             scratch.repack(t, b), scratch.thread_buffer(t));
      },
      threads);  // at most the buffers reserved
}
}  // namespace detail

inline void sparse_gemm_f32(std::int64_t M, const float* X, std::int64_t ldx,
                            const SparseWeightsF32& W, const float* bias, bool relu, float* Y,
                            std::int64_t ldy, SparseScratch& scratch) {
  detail::check_sparse_args("sparse_gemm_f32", M, ldx, ldy, W.k(), W.n());
#if COMPRESSOR_X86
  const Path path = kernel_path();
  if (path_has_avx2(path)) {
    const bool wide = path_has_avx512(path);
    const std::size_t panel = detail::align64(static_cast<std::size_t>(W.k() * 32) * sizeof(float));
    const std::size_t tile = static_cast<std::size_t>(W.n() * 32) * sizeof(float);
    detail::for_sparse_units(M, W.n(), scratch, panel + tile,
                             [&](std::int64_t m, int rows, std::int64_t n0, std::int64_t n1,
                                 bool pack, std::uint8_t* buf) {
                               auto* p = reinterpret_cast<float*>(buf);
                               auto* t = reinterpret_cast<float*>(buf + panel);
                               if (wide)
                                 simd::sparse_block_f32_avx512(X + m * ldx, ldx, rows, W, bias,
                                                               relu, Y + m * ldy, ldy, p, t, n0, n1,
                                                               pack);
                               else
                                 simd::sparse_block_f32_avx2(X + m * ldx, ldx, rows, W, bias, relu,
                                                             Y + m * ldy, ldy, p, t, n0, n1, pack);
                             });
    return;
  }
#endif
  (void)scratch;
  ref::sparse_gemm_f32(M, X, ldx, W, bias, relu, Y, ldy);
}

namespace detail {
/// sparse_gemm_u8s8 on the rows rows_of(m, rows, buffer) returns per block:
/// a pointer to rows [m, m + rows) at stride ldx, or their SparseRowsU8;
/// buffer: `buffer_row_bytes` per row of the block, per thread (0: rows_of
/// never writes it).
template <GemmEpilogue Epi, class RowsOf>
void sparse_u8s8_by_blocks(std::int64_t M, RowsOf& rows_of, std::int64_t ldx,
                           std::int64_t buffer_row_bytes, std::int32_t x_zero_point,
                           const SparseWeightsS8& W, const Epi& epi, typename Epi::Out* Y,
                           std::int64_t ldy, SparseScratch& scratch) {
  check_sparse_args("sparse_gemm_u8s8", M, ldx, ldy, W.k(), W.n());
  require(x_zero_point >= 0 && x_zero_point <= 255, "sparse_gemm_u8s8: activation zero point ",
          x_zero_point, " is outside [0, 255]");
  constexpr std::int64_t P = gemm_rows_per_output<Epi>;  // rows per output row
  require<ShapeError>(M % P == 0, "sparse_gemm_u8s8: RowMax4 needs a multiple of 4 rows, got ", M);
  const auto block_rows = [&](std::int64_t m, std::int64_t r, std::uint8_t* buf) {
    const auto x = rows_of(m, r, buf);
    if constexpr (std::is_same_v<std::remove_cv_t<decltype(x)>, SparseRowsU8>)
      return x;
    else
      return SparseRowsU8{x, ldx, nullptr};
  };
  using Out = typename Epi::Out;
#if COMPRESSOR_X86
  const Path path = kernel_path();
  if (path_has_avx2(path)) {
    const bool zmm = path == Path::avx512_vnni;
    const std::int64_t block = zmm ? simd::kSparseBlockZmm : simd::kSparseBlock;
    const std::size_t panel = align64(static_cast<std::size_t>(W.k() * block));
    const std::size_t tile = align64(static_cast<std::size_t>(W.n() * block) * sizeof(Out));
    auto* kernel = zmm                      ? &simd::sparse_block_u8s8_avx512_vnni<Epi>
                   : path == Path::avx_vnni ? &simd::sparse_block_u8s8_avx_vnni<Epi>
                                            : &simd::sparse_block_u8s8_avx2<Epi>;
    // A block of at most 16 rows (a whole small layer, or the last block)
    // goes to the 16-row kernel on zmm, by k-groups or by quads (its panel,
    // ceil(K / 4) * 64 or K * 16 bytes, fits in the K * 64 of the 64-row
    // kernel's).
    auto* small = zmm ? &simd::sparse_block16_u8s8_avx512_vnni<Epi> : nullptr;
    // The kernels compute whole blocks (rows rounded up) times the nonzeros,
    // each product at about kSparseMacCost times a dense one's time.
    const std::int64_t threads =
        threads_for_macs(kSparseMacCost * ((M + block - 1) / block * block) * W.nnz());
    for_sparse_units(
        M, W.n(), scratch, panel + tile + static_cast<std::size_t>(buffer_row_bytes * block),
        [&](std::int64_t m, int r, std::int64_t n0, std::int64_t n1, bool pack, std::uint8_t* buf) {
          // The rows are read only to pack the panel.
          const SparseRowsU8 x = pack ? block_rows(m, r, buf + panel + tile) : SparseRowsU8{};
          (small != nullptr && r <= simd::kSparseBlockSmall ? small : kernel)(
              x, r, x_zero_point, W, epi, Y + m / P * ldy, ldy, buf,
              reinterpret_cast<Out*>(buf + panel), n0, n1, pack);
        },
        block, threads);
    return;
  }
#endif
  // The reference, block by block (it computes each row on its own).
  scratch.reserve(1, static_cast<std::size_t>(buffer_row_bytes * kSparseRows));
  for (std::int64_t m = 0; m < M; m += kSparseRows) {
    const std::int64_t r = std::min(kSparseRows, M - m);
    ref::sparse_gemm_u8s8(r, block_rows(m, r, scratch.thread_buffer(0)), x_zero_point, W, epi,
                          Y + m / P * ldy, ldy);
  }
}
}  // namespace detail

template <GemmEpilogue Epi>
void sparse_gemm_u8s8(std::int64_t M, const std::uint8_t* X, std::int64_t ldx,
                      std::int32_t x_zero_point, const SparseWeightsS8& W, const Epi& epi,
                      typename Epi::Out* Y, std::int64_t ldy, SparseScratch& scratch) {
  auto rows_of = [X, ldx](std::int64_t m, std::int64_t, std::uint8_t*) { return X + m * ldx; };
  detail::sparse_u8s8_by_blocks(M, rows_of, ldx, 0, x_zero_point, W, epi, Y, ldy, scratch);
}

/// sparse_gemm_u8s8 on rows that a callback provides one block at a time, so
/// that X need not exist as a whole: rows_of(m, rows, buffer) writes rows
/// [m, m + rows) of X, K = W.k() bytes each, into `buffer` (row stride K;
/// room for the kernel's block of up to 64 rows, one buffer per thread) and
/// returns buffer. The sparse conv unfolds each block of pixels there
/// (im2col_u8), where it is still in cache when the panel is packed, instead
/// of the whole im2col matrix first. rows_of is called from the worker
/// threads, for different blocks at once. With RowMax4<E> (M a multiple of
/// 4) output row i is E of the max of rows 4i..4i+3 (a conv's 2x2 pool
/// windows, SparseConvU8S8::forward_max_pool2), and Y has M / 4 rows.
template <GemmEpilogue Epi, class RowsOf>
void sparse_gemm_u8s8_blocks(std::int64_t M, RowsOf&& rows_of, std::int32_t x_zero_point,
                             const SparseWeightsS8& W, const Epi& epi, typename Epi::Out* Y,
                             std::int64_t ldy, SparseScratch& scratch) {
  detail::sparse_u8s8_by_blocks(M, rows_of, W.k(), W.k(), x_zero_point, W, epi, Y, ldy, scratch);
}

}  // namespace compressor::kernels
