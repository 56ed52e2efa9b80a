// ConvU8S8: the int8 NHWC convolution an int8 inference module runs.
//
// Built once from int8 OHWI weights, per-output-channel weight scales and an
// int32 bias (at scale s_in * s_w[o]); forward() takes a uint8 NHWC input with
// its QuantParams and writes uint8 NHWC output with its QuantParams (or float
// for a last layer), with optional fused ReLU. 1x1 stride-1 convolutions run
// the GEMM on the input itself; 1x1 strided ones (ResNet's downsamples) too,
// their rows found through a table of pixel pointers (when C % 4 == 0, so a
// row's k groups end inside the pixel); every other one unfolds the input into a
// uint8 im2col matrix whose padding holds the input zero point (real 0), one
// L2-sized block of rows at a time, each block multiplied by the thread that
// unfolded it. Scratch memory lives in a ConvScratch that grows once and is
// reused: no allocation per call in steady state. forward_max_pool2 runs the
// conv and a 2x2 max pool after it in one pass.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "compressor/core/aligned_buffer.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/conv_u8s8_common.hpp"
#include "compressor/kernels/gemm.hpp"
#include "compressor/kernels/im2col.hpp"
#include "compressor/kernels/requant.hpp"

namespace compressor::kernels {

/// Caller-owned scratch of ConvU8S8 (one per concurrent caller).
struct ConvScratch {
  AlignedBuffer<std::uint8_t> cols;         // im2col matrix
  AlignedBuffer<const std::uint8_t*> rows;  // input pixel of each output pixel (1x1 strided)
  AlignedBuffer<float> channel;             // per-channel multipliers / scales
};

class ConvU8S8 : public detail::ConvU8S8Common<ConvU8S8, ConvScratch> {
 public:
  static constexpr const char* kName = "ConvU8S8";
  static constexpr const char* kOutputName = "ConvU8S8 output";

  ConvU8S8() = default;

  /// weights (O, KH, KW, I) int8 on weight grid `grid` (int8_traits.hpp);
  /// weight_scales: O values; bias: O int32 values at scale s_in * s_w[o], or
  /// empty.
  ConvU8S8(TensorView<const std::int8_t> weights, std::span<const float> weight_scales,
           std::span<const std::int32_t> bias, std::int64_t stride, std::int64_t pad,
           WeightGrid grid = WeightGrid::narrow)
      : ConvU8S8Common(weights, weight_scales, bias, stride, pad),
        packed_(weights.data(), g_.out_c, g_.k(), g_.k(), grid) {}

  const PackedWeightsU8S8& packed() const { return packed_; }
  // forward() and forward_max_pool2(): ConvU8S8Common's (uint8 out
  // requantized, or float out; conv + 2x2 max pool on run_pooled()).

 private:
  friend class detail::ConvU8S8Common<ConvU8S8, ConvScratch>;

  template <class Epi>
  void run(TensorView<const std::uint8_t> x, std::int32_t zx, const Epi& epi, typename Epi::Out* y,
           ConvScratch& s) const {
    check_input_zero_point(zx);
    const std::int64_t H = x.dim(1), W = x.dim(2);
    const std::int64_t M = x.dim(0) * g_.out_h(H) * g_.out_w(W);
    if (M == 0) return;
    if (g_.is_pointwise()) {
      gemm_u8s8(M, x.data(), g_.in_c, zx, packed_, epi, y, g_.out_c);
      return;
    }
    if (g_.kh == 1 && g_.kw == 1 && g_.pad_h == 0 && g_.pad_w == 0 &&
        packed_.k_padded() == g_.in_c) {
      const std::int64_t OH = g_.out_h(H), OW = g_.out_w(W);
      s.rows.reserve_discard(static_cast<std::size_t>(M));
      const std::uint8_t** rows = s.rows.data();
      for (std::int64_t b = 0; b < x.dim(0); ++b)
        for (std::int64_t oh = 0; oh < OH; ++oh) {
          const std::uint8_t* p = x.data() + ((b * H + oh * g_.stride_h) * W) * g_.in_c;
          for (std::int64_t ow = 0; ow < OW; ++ow) *rows++ = p + ow * g_.stride_w * g_.in_c;
        }
      detail::gemm_u8s8_rows(M, IndirectRowsU8{s.rows.data()}, zx, packed_, epi, y, g_.out_c, M);
      return;
    }
    const std::int64_t ld = packed_.k_padded();
    const auto zp = static_cast<std::uint8_t>(zx);
    const GemmKernel kernel = gemm_kernel(kernel_path(), packed_);
    const std::int64_t threads = detail::gemm_threads(M, packed_);
    if (detail::conv_splits_rows(M, packed_, kernel, threads)) {
      // Each unit of rows (at most an L2 row block) is unfolded and
      // multiplied by the same thread while it is still in cache, into a
      // block of its own thread that every unit of the thread reuses: an
      // M-row matrix would take a fresh block of memory per unit (19 MB for
      // CifarCnn's conv2 at batch 128), whose first writes fetch it from
      // DRAM and whose lines go back there (measured: 74% of the vpdpbusd
      // peak against 88% for the GEMM alone; docs/performance.md).
      const std::int64_t rows = detail::gemm_unit_rows(M, packed_, kernel, threads);
      const std::int64_t units = (M + rows - 1) / rows;
      const bool nested = in_parallel();  // then parallel_units runs inline
      const std::int64_t slots = nested ? 1 : std::min(threads, units);
      s.cols.reserve_discard(static_cast<std::size_t>(slots * rows * ld));
      std::uint8_t* cols = s.cols.data();
      detail::parallel_units(
          units,
          [&](std::int64_t u) {
            const std::int64_t m = u * rows, me = std::min(M, m + rows);
            std::uint8_t* block = cols + (nested ? 0 : thread_index()) * rows * ld;
            im2col_u8(g_, H, W, x.data(), zp, m, me, block, ld);
            detail::gemm_u8s8_range(kernel, 0, me - m, 0, packed_.panels(),
                                    StridedRowsU8{block, ld}, zx, packed_, epi, y + m * g_.out_c,
                                    g_.out_c, me - m);
          },
          threads);
      return;
    }
    // Few rows: every thread needs all of them. Split the GEMM over weight
    // panels, each thread on its own unfolded copy.
    if (threads > 1) {
      by_panels_each_unfolding(
          M, kernel, threads, s, M * ld, 0,
          [&](std::uint8_t* block, const std::uint8_t**) {
            im2col_u8(g_, H, W, x.data(), zp, 0, M, block, ld);
            return StridedRowsU8{block, ld};
          },
          zx, epi, y);
      return;
    }
    gemm_u8s8(M, unfold_all(x, zp, s), ld, zx, packed_, epi, y, g_.out_c, /*a_padded=*/true);
  }

  /// The GEMM of M rows split over weight panels on `threads` threads, each
  /// thread on rows of its own: unfold(block, table) fills the thread's
  /// block (block_bytes) and table (table_rows pointers) once per call and
  /// returns its row source. Split by panels, every thread reads all the
  /// rows; unfolded once, half of them would come from the other core's
  /// cache, line by line (a transfer costs ~210 ns on the Zen 5 VM),
  /// which cost more than unfolding them again: docs/performance.md, "Few
  /// rows, unfolded by every thread".
  template <class Epi, class Unfold>
  void by_panels_each_unfolding(std::int64_t M, GemmKernel kernel, std::int64_t threads,
                                ConvScratch& s, std::int64_t block_bytes, std::int64_t table_rows,
                                const Unfold& unfold, std::int32_t zx, const Epi& epi,
                                typename Epi::Out* y) const {
    constexpr std::int64_t kMaxSlots = 64;
    threads = std::min(threads, kMaxSlots);
    s.cols.reserve_discard(static_cast<std::size_t>(threads * block_bytes));
    s.rows.reserve_discard(
        static_cast<std::size_t>(std::max<std::int64_t>(1, threads * table_rows)));
    using Rows = decltype(unfold(s.cols.data(), s.rows.data()));
    std::array<Rows, kMaxSlots> rows_of{};
    std::array<bool, kMaxSlots> ready{};
    const std::int64_t panels = packed_.panels();
    // Contiguous groups of ~2 panels per thread, as gemm_u8s8_rows's.
    const std::int64_t per = std::max<std::int64_t>(1, panels / (2 * threads));
    detail::parallel_units(
        (panels + per - 1) / per,
        [&](std::int64_t u) {
          const auto t = static_cast<std::size_t>(thread_index());
          if (!ready[t]) {
            rows_of[t] = unfold(s.cols.data() + static_cast<std::int64_t>(t) * block_bytes,
                                s.rows.data() + static_cast<std::int64_t>(t) * table_rows);
            ready[t] = true;
          }
          detail::gemm_u8s8_range(kernel, 0, M, u * per, std::min(panels, (u + 1) * per),
                                  rows_of[t], zx, packed_, epi, y, g_.out_c, M);
        },
        threads);
  }

  /// Every output pixel of x unfolded into s.cols (row stride k_padded()),
  /// threaded over output rows (OW pixels each; at least ~32 KB of rows per
  /// thread: less costs more to start).
  std::uint8_t* unfold_all(TensorView<const std::uint8_t> x, std::uint8_t zp,
                           ConvScratch& s) const {
    const std::int64_t H = x.dim(1), W = x.dim(2), OW = g_.out_w(W), ld = packed_.k_padded();
    const std::int64_t rows = x.dim(0) * g_.out_h(H);
    s.cols.reserve_discard(static_cast<std::size_t>(rows * OW * ld));
    std::uint8_t* cols = s.cols.data();
    parallel_for(
        rows,
        [&](std::int64_t b, std::int64_t e) {
          im2col_u8(g_, H, W, x.data(), zp, b * OW, e * OW, cols + b * OW * ld, ld);
        },
        std::max<std::int64_t>(1, (std::int64_t{1} << 15) / std::max<std::int64_t>(1, OW * ld)));
    return cols;
  }

  /// The first conv pixel (n, 2ph, 0) of pooled output row r = (n, ph).
  static std::int64_t window_row_pixel(std::int64_t r, std::int64_t PH, std::int64_t OH,
                                       std::int64_t OW) {
    return ((r / PH) * OH + 2 * (r % PH)) * OW;
  }

  /// The 4 GEMM rows of each 2x2 window of conv output rows 2ph, 2ph + 1
  /// (unfolded at `two`, OW pixels each, row stride ld) into table.
  static void window_rows(const std::uint8_t* two, std::int64_t OW, std::int64_t PW,
                          std::int64_t ld, const std::uint8_t** table) {
    for (std::int64_t pw = 0; pw < PW; ++pw) {
      const std::uint8_t* p = two + 2 * pw * ld;
      table[4 * pw] = p;
      table[4 * pw + 1] = p + ld;
      table[4 * pw + 2] = p + OW * ld;
      table[4 * pw + 3] = p + (OW + 1) * ld;
    }
  }

  /// run() for forward_max_pool2: Epi = RowMax4<...>, y the pooled output.
  template <class Epi>
  void run_pooled(TensorView<const std::uint8_t> x, std::int32_t zx, const Epi& epi,
                  typename Epi::Out* y, ConvScratch& s) const {
    check_input_zero_point(zx);
    const std::int64_t N = x.dim(0), H = x.dim(1), W = x.dim(2);
    const std::int64_t OH = g_.out_h(H), OW = g_.out_w(W), PH = OH / 2, PW = OW / 2;
    const std::int64_t M4 = 4 * N * PH * PW;  // GEMM rows: 4 per output pixel
    if (M4 == 0) return;
    const std::int64_t ld = packed_.k_padded();
    const auto zp = static_cast<std::uint8_t>(zx);
    const GemmKernel kernel = gemm_kernel(kernel_path(), packed_);
    const std::int64_t threads = detail::gemm_threads(M4, packed_);
    const std::int64_t out_rows = N * PH;  // rows of pooled output pixels
    if (detail::conv_splits_rows(M4, packed_, kernel, threads)) {
      // As run(): units of pooled rows, each unfolded (its two conv rows)
      // and multiplied by one thread into a block of that thread.
      const std::int64_t per = std::max<std::int64_t>(
          1, detail::gemm_unit_rows(M4, packed_, kernel, threads) / (4 * PW));
      const std::int64_t units = (out_rows + per - 1) / per;
      const bool nested = in_parallel();
      const std::int64_t slots = nested ? 1 : std::min(threads, units);
      const std::int64_t block_bytes = per * 2 * OW * ld, table_rows = per * 4 * PW;
      s.cols.reserve_discard(static_cast<std::size_t>(slots * block_bytes));
      s.rows.reserve_discard(static_cast<std::size_t>(slots * table_rows));
      detail::parallel_units(
          units,
          [&](std::int64_t u) {
            const std::int64_t r0 = u * per, r1 = std::min(out_rows, r0 + per);
            const std::int64_t t = nested ? 0 : thread_index();
            std::uint8_t* block = s.cols.data() + t * block_bytes;
            const std::uint8_t** table = s.rows.data() + t * table_rows;
            // Pooled row r = (n, ph) reads conv rows 2ph, 2ph + 1 of image
            // n: one range of conv pixels for the unit when OH is even.
            const std::int64_t p0 = window_row_pixel(r0, PH, OH, OW);
            if (OH % 2 == 0)
              im2col_u8(g_, H, W, x.data(), zp, p0, p0 + 2 * OW * (r1 - r0), block, ld);
            for (std::int64_t r = r0; r < r1; ++r) {
              std::uint8_t* two = block + (r - r0) * 2 * OW * ld;
              const std::int64_t p = window_row_pixel(r, PH, OH, OW);
              if (OH % 2 != 0) im2col_u8(g_, H, W, x.data(), zp, p, p + 2 * OW, two, ld);
              window_rows(two, OW, PW, ld, table + (r - r0) * 4 * PW);
            }
            const std::int64_t rows = (r1 - r0) * 4 * PW;
            detail::gemm_u8s8_range(kernel, 0, rows, 0, packed_.panels(), IndirectRowsU8{table}, zx,
                                    packed_, epi, y + r0 * PW * g_.out_c, g_.out_c, rows);
          },
          threads);
      return;
    }
    // Few rows: unfold every conv pixel, then split the GEMM over panels
    // (each thread on its own copy, as run()).
    if (threads > 1) {
      const std::int64_t conv_rows = N * OH * OW;
      by_panels_each_unfolding(
          M4, kernel, threads, s, conv_rows * ld, M4,
          [&](std::uint8_t* block, const std::uint8_t** table) {
            im2col_u8(g_, H, W, x.data(), zp, 0, conv_rows, block, ld);
            for (std::int64_t r = 0; r < out_rows; ++r)
              window_rows(block + window_row_pixel(r, PH, OH, OW) * ld, OW, PW, ld,
                          table + r * 4 * PW);
            return IndirectRowsU8{table};
          },
          zx, epi, y);
      return;
    }
    const std::uint8_t* cols = unfold_all(x, zp, s);
    s.rows.reserve_discard(static_cast<std::size_t>(M4));
    for (std::int64_t r = 0; r < out_rows; ++r)
      window_rows(cols + window_row_pixel(r, PH, OH, OW) * ld, OW, PW, ld,
                  s.rows.data() + r * 4 * PW);
    detail::gemm_u8s8_rows(M4, IndirectRowsU8{s.rows.data()}, zx, packed_, epi, y, g_.out_c, M4);
  }

  PackedWeightsU8S8 packed_;
};

}  // namespace compressor::kernels
