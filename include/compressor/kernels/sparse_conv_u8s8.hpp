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
// multiplies it (sparse_gemm_u8s8_blocks).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "compressor/core/aligned_buffer.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/kernels/conv_geometry.hpp"
#include "compressor/kernels/conv_u8s8_common.hpp"
#include "compressor/kernels/im2col.hpp"
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
  // forward(): ConvU8S8Common's (uint8 out requantized, or float out), with
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
    // Each block of pixels is unfolded by the thread that packs it, into its
    // own buffer, where it is still in cache for the panel transpose.
    const std::uint8_t* in = x.data();
    const auto pad = static_cast<std::uint8_t>(zx);
    sparse_gemm_u8s8_blocks(
        M,
        [&](std::int64_t m, std::int64_t rows, std::uint8_t* buf) {
          im2col_u8(g_, H, W, in, pad, m, m + rows, buf, g_.k());
          return static_cast<const std::uint8_t*>(buf);
        },
        zx, w_, epi, y, g_.out_c, s.gemm);
  }

  SparseWeightsS8 w_;
};

}  // namespace compressor::kernels
