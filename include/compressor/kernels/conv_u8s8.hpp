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
// reused: no allocation per call in steady state.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "compressor/core/aligned_buffer.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"
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

class ConvU8S8 {
 public:
  ConvU8S8() = default;

  /// weights (O, KH, KW, I) int8 on weight grid `grid` (int8_traits.hpp);
  /// weight_scales: O values; bias: O int32 values at scale s_in * s_w[o], or
  /// empty.
  ConvU8S8(TensorView<const std::int8_t> weights, std::span<const float> weight_scales,
           std::span<const std::int32_t> bias, std::int64_t stride, std::int64_t pad,
           WeightGrid grid = WeightGrid::narrow) {
    require<ShapeError>(weights.rank() == 4, "ConvU8S8: weights must be OHWI (rank 4), got ",
                        weights.shape().str());
    g_ = ConvGeometry{
        weights.dim(3), weights.dim(0), weights.dim(1), weights.dim(2), stride, stride, pad, pad};
    g_.validate();
    require<ShapeError>(static_cast<std::int64_t>(weight_scales.size()) == g_.out_c &&
                            (bias.empty() || static_cast<std::int64_t>(bias.size()) == g_.out_c),
                        "ConvU8S8: weights ", weights.shape().str(), " need ", g_.out_c,
                        " weight scales and 0 or ", g_.out_c, " biases, got ", weight_scales.size(),
                        " and ", bias.size());
    packed_ = PackedWeightsU8S8(weights.data(), g_.out_c, g_.k(), g_.k(), grid);
    w_scales_.assign(weight_scales.begin(), weight_scales.end());
    bias_.assign(bias.begin(), bias.end());
  }

  const ConvGeometry& geometry() const { return g_; }
  const PackedWeightsU8S8& packed() const { return packed_; }
  Shape output_shape(const Shape& in) const { return g_.output_shape(in); }

  /// uint8 -> uint8 with requantization; relu clamps at the output zero point.
  void forward(TensorView<const std::uint8_t> x, QuantParams in, TensorView<std::uint8_t> y,
               QuantParams out, bool relu, ConvScratch& s) const {
    check_same_shape(y.shape(), output_shape(x.shape()), "ConvU8S8 output");
    require(out.zero_point >= 0 && out.zero_point <= 255, "ConvU8S8: output zero point ",
            out.zero_point, " is outside [0, 255]");
    float* mult = channel_params(s);
    for (std::int64_t o = 0; o < g_.out_c; ++o)
      mult[o] = requant_multiplier(in.scale, w_scales_[static_cast<std::size_t>(o)], out.scale);
    RequantOut epi{bias_ptr(), mult, out.zero_point, relu ? out.zero_point : 0, 255};
    run(x, in.zero_point, epi, y.data(), s);
  }

  /// uint8 -> float (a last layer): y = s_in * s_w[o] * acc, then ReLU if asked.
  void forward(TensorView<const std::uint8_t> x, QuantParams in, TensorView<float> y, bool relu,
               ConvScratch& s) const {
    check_same_shape(y.shape(), output_shape(x.shape()), "ConvU8S8 output");
    float* scale = channel_params(s);
    for (std::int64_t o = 0; o < g_.out_c; ++o)
      scale[o] = accumulator_scale(in.scale, w_scales_[static_cast<std::size_t>(o)]);
    run(x, in.zero_point, DequantOut{bias_ptr(), scale, relu}, y.data(), s);
  }

 private:
  const std::int32_t* bias_ptr() const { return bias_.empty() ? nullptr : bias_.data(); }
  float* channel_params(ConvScratch& s) const {
    s.channel.reserve_discard(static_cast<std::size_t>(g_.out_c));
    return s.channel.data();
  }

  template <class Epi>
  void run(TensorView<const std::uint8_t> x, std::int32_t zx, const Epi& epi, typename Epi::Out* y,
           ConvScratch& s) const {
    require(zx >= 0 && zx <= 255, "ConvU8S8: input zero point ", zx, " is outside [0, 255]");
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
    s.cols.reserve_discard(static_cast<std::size_t>(M * ld));
    std::uint8_t* cols = s.cols.data();
    const auto zp = static_cast<std::uint8_t>(zx);
    if (detail::gemm_splits_rows(M, packed_)) {
      // Each unit of rows (at most an L2 row block) is unfolded and
      // multiplied by the same thread while it is still in cache.
      const GemmKernel kernel = gemm_kernel(kernel_path(), packed_);
      const std::int64_t rows = detail::gemm_unit_rows(M, packed_, kernel);
      detail::parallel_units((M + rows - 1) / rows, [&](std::int64_t u) {
        const std::int64_t m = u * rows, me = std::min(M, m + rows);
        im2col_u8(g_, H, W, x.data(), zp, m, me, cols + m * ld, ld);
        detail::gemm_u8s8_range(kernel, m, me, 0, packed_.panels(), StridedRowsU8{cols, ld}, zx,
                                packed_, epi, y, g_.out_c, M);
      });
      return;
    }
    // Few rows: every thread needs all of them. Unfold threaded over output
    // rows (OW pixels each), then split the GEMM over weight panels.
    const std::int64_t OW = g_.out_w(W);
    parallel_for(M / OW, [&](std::int64_t b, std::int64_t e) {
      im2col_u8(g_, H, W, x.data(), zp, b * OW, e * OW, cols + b * OW * ld, ld);
    });
    gemm_u8s8(M, cols, ld, zx, packed_, epi, y, g_.out_c, /*a_padded=*/true);
  }

  ConvGeometry g_;
  PackedWeightsU8S8 packed_;
  std::vector<float> w_scales_;
  std::vector<std::int32_t> bias_;
};

}  // namespace compressor::kernels
