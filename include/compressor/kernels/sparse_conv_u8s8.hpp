// SparseConvU8S8: ConvU8S8 (conv_u8s8.hpp) with the weights kept as their
// nonzeros (SparseWeightsS8) and multiplied by sparse_gemm_u8s8: the int8
// deploy-time form of an unstructured-pruned conv or linear layer.
//
// Same construction arguments and the same forward() contract as ConvU8S8,
// and the same numbers: the accumulator is the exact integer sum
// bias - za * sum_k w + sum_k x * w (the zero-point correction by row sums,
// as the dense kernels do it), requantized (RequantOut, with the multiplier
// requant_multiplier(s_in, s_w[o], s_out)) or dequantized (DequantOut) by the
// dense kernels' epilogues, so the output is bit-identical to ConvU8S8's on
// the same weights, on every ISA path. 1x1 stride-1 unpadded convolutions
// (and linear layers) multiply the input itself; every other geometry
// unfolds it with the dense conv's im2col_u8 (padding taps = the input zero
// point), one block of the kernel's pixels at a time, by the thread that
// multiplies it (sparse_gemm_u8s8_blocks), except on the avx512_vnni path
// with a multiple of 64 input channels, where that thread packs the block's
// panel from the input in place, through a table of each pixel's taps (a
// row of the zero point for the padding taps). forward_max_pool2 runs the conv
// and a 2x2 max pool in one pass, as ConvU8S8's does (the kernels take each
// block's rows by pool window and requantize the max of each window's sums;
// the rows unfolded, or in place as above).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "compressor/core/aligned_buffer.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/kernels/conv_geometry.hpp"
#include "compressor/kernels/conv_u8s8_common.hpp"
#include "compressor/kernels/im2col.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/requant.hpp"
#include "compressor/kernels/sparse_gemm.hpp"
#include "compressor/kernels/sparse_weights.hpp"

namespace compressor::kernels {

/// Caller-owned scratch of SparseConvU8S8 (one per concurrent caller).
struct SparseConvScratch {
  AlignedBuffer<float> channel;  // per-channel multipliers / scales
  SparseScratch gemm;            // the sparse kernel's panels, tiles and unfolded pixel blocks
};

class SparseConvU8S8 : public detail::ConvU8S8Common<SparseConvU8S8, SparseConvScratch> {
 public:
  static constexpr const char* kName = "SparseConvU8S8";
  static constexpr const char* kOutputName = "SparseConvU8S8 output";

  SparseConvU8S8() = default;

  /// As ConvU8S8's: weights (O, KH, KW, I) int8 on `grid`, O weight scales,
  /// O int32 biases at s_in * s_w[o] or none.
  SparseConvU8S8(TensorView<const std::int8_t> weights, std::span<const float> weight_scales,
                 std::span<const std::int32_t> bias, std::int64_t stride, std::int64_t pad,
                 WeightGrid grid = WeightGrid::narrow)
      : ConvU8S8Common(weights, weight_scales, bias, stride, pad),
        w_(weights.data(), g_.out_c, g_.k(), g_.k(), grid) {}

  const SparseWeightsS8& weights() const { return w_; }
  // forward() and forward_max_pool2(): ConvU8S8Common's (uint8 out
  // requantized, or float out; conv + 2x2 max pool on run_pooled()), with
  // the same epilogue arguments as ConvU8S8, hence the same numbers.

 private:
  friend class detail::ConvU8S8Common<SparseConvU8S8, SparseConvScratch>;

  template <class Epi>
  void run(TensorView<const std::uint8_t> x, std::int32_t zx, const Epi& epi, typename Epi::Out* y,
           SparseConvScratch& s) const {
    check_input_zero_point(zx);
    const std::int64_t H = x.dim(1), W = x.dim(2);
    const std::int64_t M = x.dim(0) * g_.out_h(H) * g_.out_w(W);
    if (M == 0) return;
    if (g_.is_pointwise()) {
      sparse_gemm_u8s8(M, x.data(), g_.in_c, zx, w_, epi, y, g_.out_c, s.gemm);
      return;
    }
    const std::uint8_t* in = x.data();
    const auto pad = static_cast<std::uint8_t>(zx);
    if (reads_taps_in_place()) {
      // The zmm kernels pack their panel 64 bytes at a time, and with 64k
      // input channels each 64 bytes of an unfolded row are 64 bytes of one
      // input pixel (or padding): the thread that packs a block reads them
      // where they are, through a table of the block's taps, instead of
      // unfolding the block first (docs/performance.md, "The sparse conv
      // reads its input in place").
      const std::int64_t OH = g_.out_h(H), OW = g_.out_w(W);
      sparse_gemm_u8s8_blocks(
          M,
          [&](std::int64_t m, std::int64_t rows, std::uint8_t* buf) {
            return taps_in_place(in, H, W, pad, rows, buf, [&](std::int64_t i) {
              const std::int64_t p = m + i;
              return Pixel{p / (OH * OW), p / OW % OH, p % OW};
            });
          },
          zx, w_, epi, y, g_.out_c, s.gemm);
      return;
    }
    // Each block of pixels is unfolded by the thread that packs it, into its
    // own buffer, where it is still in cache for the panel transpose.
    sparse_gemm_u8s8_blocks(
        M,
        [&](std::int64_t m, std::int64_t rows, std::uint8_t* buf) {
          im2col_u8(g_, H, W, in, pad, m, m + rows, buf, g_.k());
          return static_cast<const std::uint8_t*>(buf);
        },
        zx, w_, epi, y, g_.out_c, s.gemm);
  }

  /// run() for forward_max_pool2: Epi = RowMax4<...>, y the pooled output.
  /// Each block's rows go by pool window (row 4j + t: tap (t / 2, t % 2) of
  /// window j): the thread that packs the block unfolds its windows' conv
  /// pixels, two runs per pooled row it touches (the top and the bottom
  /// conv row), and hands the kernel a table of the rows in window order.
  template <class Epi>
  void run_pooled(TensorView<const std::uint8_t> x, std::int32_t zx, const Epi& epi,
                  typename Epi::Out* y, SparseConvScratch& s) const {
    check_input_zero_point(zx);
    const std::int64_t H = x.dim(1), W = x.dim(2), OH = g_.out_h(H), OW = g_.out_w(W);
    const std::int64_t PH = OH / 2, PW = OW / 2, M4 = 4 * x.dim(0) * PH * PW;
    if (M4 == 0) return;
    const std::int64_t K = g_.k();
    const std::uint8_t* in = x.data();
    const auto pad = static_cast<std::uint8_t>(zx);
    if (reads_taps_in_place()) {
      // As run()'s: row 4j + t of a block is tap (t / 2, t % 2) of window j.
      auto taps_of = [&](std::int64_t m, std::int64_t rows, std::uint8_t* buf) {
        return taps_in_place(in, H, W, pad, rows, buf, [&](std::int64_t i) {
          const std::int64_t r = m + i, w = r / 4, t = r % 4;
          const std::int64_t pr = w / PW;  // pooled row: image pr / PH, row pr % PH
          return Pixel{pr / PH, 2 * (pr % PH) + t / 2, 2 * (w % PW) + t % 2};
        });
      };
      detail::sparse_u8s8_by_blocks(M4, taps_of, K, K, zx, w_, epi, y, g_.out_c, s.gemm);
      return;
    }
    auto rows_of = [&](std::int64_t m, std::int64_t rows, std::uint8_t* buf) {
      // The unfolded pixels, then the table (8-byte aligned; the buffer has
      // K + 16 bytes per row).
      const auto table = reinterpret_cast<const std::uint8_t**>(buf + (rows * K + 7) / 8 * 8);
      std::uint8_t* d = buf;
      const std::int64_t w0 = m / 4, w1 = (m + rows) / 4;
      for (std::int64_t w = w0; w < w1;) {
        // Windows [w, w + n) of pooled row r (image r / PH, row r % PH).
        const std::int64_t r = w / PW, pw = w % PW, n = std::min(w1 - w, PW - pw);
        const std::int64_t p = ((r / PH) * OH + 2 * (r % PH)) * OW + 2 * pw;  // top-left pixel
        im2col_u8(g_, H, W, in, pad, p, p + 2 * n, d, K);
        im2col_u8(g_, H, W, in, pad, p + OW, p + OW + 2 * n, d + 2 * n * K, K);
        for (std::int64_t j = 0; j < n; ++j) {
          const std::uint8_t* top = d + 2 * j * K;
          const std::uint8_t** t = table + 4 * (w - w0 + j);
          t[0] = top;
          t[1] = top + K;
          t[2] = top + 2 * n * K;
          t[3] = top + (2 * n + 1) * K;
        }
        d += 4 * n * K;
        w += n;
      }
      return SparseRowsU8{nullptr, 0, table};
    };
    detail::sparse_u8s8_by_blocks(M4, rows_of, K, K + 16, zx, w_, epi, y, g_.out_c, s.gemm);
  }

  /// True where run() and run_pooled() pack from the input in place
  /// (SparseRowsU8's tap form): the avx512_vnni path, whose kernels read 64
  /// bytes at a time, with a multiple of 64 input channels.
  bool reads_taps_in_place() const {
    return kernel_path() == Path::avx512_vnni && g_.in_c % 64 == 0;
  }

  struct Pixel {
    std::int64_t n, oh, ow;  // image, output row and column
  };

  /// The tap form of a block's `rows` rows, row i being output pixel
  /// pixel_of(i): in buf (K = T * C bytes per row of the block, room for C
  /// bytes of padding and then T pointers per row, C >= 64), a row of the
  /// zero point `pad` for the padding taps and the table of every row's
  /// taps, in (kh, kw) order as im2col_u8's.
  template <class PixelOf>
  SparseRowsU8 taps_in_place(const std::uint8_t* in, std::int64_t H, std::int64_t W,
                             std::uint8_t pad, std::int64_t rows, std::uint8_t* buf,
                             PixelOf pixel_of) const {
    const std::int64_t T = g_.kh * g_.kw, C = g_.in_c;
    std::memset(buf, pad, static_cast<std::size_t>(C));
    const auto taps = reinterpret_cast<const std::uint8_t**>(buf + C);
    for (std::int64_t i = 0; i < rows; ++i) {
      const Pixel px = pixel_of(i);
      const std::uint8_t** t = taps + i * T;
      for (std::int64_t kh = 0; kh < g_.kh; ++kh) {
        const std::int64_t ih = px.oh * g_.stride_h - g_.pad_h + kh;
        for (std::int64_t kw = 0; kw < g_.kw; ++kw) {
          const std::int64_t iw = px.ow * g_.stride_w - g_.pad_w + kw;
          *t++ = ih >= 0 && ih < H && iw >= 0 && iw < W ? in + ((px.n * H + ih) * W + iw) * C : buf;
        }
      }
    }
    SparseRowsU8 r;
    r.taps = taps;
    r.n_taps = T;
    r.tap_bytes = C;
    return r;
  }

  SparseWeightsS8 w_;
};

}  // namespace compressor::kernels
