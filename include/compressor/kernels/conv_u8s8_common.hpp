// What the dense and the sparse int8 convolutions (ConvU8S8, SparseConvU8S8)
// share: the geometry from OHWI weights, the per-output-channel weight scales
// and int32 biases, and the three forward contracts (uint8 out requantized
// with RequantOut, float out with DequantOut, uint8 out of the conv and a
// 2x2 max pool with RowMax4<RequantOut>). Derived supplies the weight format
// and run(x, input zero point, epilogue, y, scratch), the convolution itself,
// run_pooled(...), the same with the pool, and its names for messages
// (kName, kOutputName); its scratch type has a float buffer `channel` for the
// per-channel multipliers. One definition of the epilogue arguments keeps the
// two bit-identical.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/kernels/conv_geometry.hpp"
#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/requant.hpp"

namespace compressor::kernels::detail {

template <class Derived, class Scratch>
class ConvU8S8Common {
 public:
  const ConvGeometry& geometry() const { return g_; }
  Shape output_shape(const Shape& in) const { return g_.output_shape(in); }

  /// uint8 -> uint8 with requantization; relu clamps at the output zero point.
  void forward(TensorView<const std::uint8_t> x, QuantParams in, TensorView<std::uint8_t> y,
               QuantParams out, bool relu, Scratch& s) const {
    check_same_shape(y.shape(), output_shape(x.shape()), Derived::kOutputName);
    self().run(x, in.zero_point, requant_epilogue(in, out, relu, s), y.data(), s);
  }

  /// The output shape of forward_max_pool2 for an NHWC input: the conv's,
  /// halved (rounded down) in height and width.
  Shape pooled_output_shape(const Shape& in) const {
    const Shape c = output_shape(in);
    require<ShapeError>(c[1] >= 2 && c[2] >= 2, Derived::kName, ": a 2x2 max pool needs a conv ",
                        "output of at least 2x2, got ", c, " for input ", in);
    return Shape{c[0], c[1] / 2, c[2] / 2, c[3]};
  }

  /// forward() (uint8 out, optional ReLU) followed by a 2x2 max pool of
  /// stride 2 without padding (max_pool_u8(., 2, 2, 0): an odd last row or
  /// column of the conv output is dropped), bit for bit, in one pass: the
  /// GEMM's rows go by pool window, the 4 conv pixels of a window in a row,
  /// and its epilogue requantizes the max of each window's accumulators
  /// (RowMax4; requantization is nondecreasing in the accumulator), so a
  /// quarter of the outputs are requantized and stored and the conv output
  /// never exists.
  void forward_max_pool2(TensorView<const std::uint8_t> x, QuantParams in,
                         TensorView<std::uint8_t> y, QuantParams out, bool relu, Scratch& s) const {
    check_same_shape(y.shape(), pooled_output_shape(x.shape()),
                     std::string(Derived::kName) + " pooled output");
    const RequantOut epi = requant_epilogue(in, out, relu, s);
    for (std::int64_t o = 0; o < g_.out_c; ++o)
      require(epi.multiplier[o] >= 0.f, Derived::kName, ": the 2x2 max pool needs ",
              "requantization multipliers >= 0, got ", epi.multiplier[o], " for channel ", o);
    self().run_pooled(x, in.zero_point, RowMax4<RequantOut>{epi}, y.data(), s);
  }

  /// uint8 -> float (a last layer): y = s_in * s_w[o] * acc, then ReLU if asked.
  void forward(TensorView<const std::uint8_t> x, QuantParams in, TensorView<float> y, bool relu,
               Scratch& s) const {
    check_same_shape(y.shape(), output_shape(x.shape()), Derived::kOutputName);
    float* scale = channel_params(s);
    for (std::int64_t o = 0; o < g_.out_c; ++o)
      scale[o] = accumulator_scale(in.scale, w_scales_[static_cast<std::size_t>(o)]);
    self().run(x, in.zero_point, DequantOut{bias_ptr(), scale, relu}, y.data(), s);
  }

 protected:
  ConvU8S8Common() = default;
  /// weights (O, KH, KW, I) int8; weight_scales: O values; bias: O int32
  /// values at scale s_in * s_w[o], or empty.
  ConvU8S8Common(TensorView<const std::int8_t> weights, std::span<const float> weight_scales,
                 std::span<const std::int32_t> bias, std::int64_t stride, std::int64_t pad) {
    require<ShapeError>(weights.rank() == 4, Derived::kName,
                        ": weights must be OHWI (rank 4), got ", weights.shape());
    g_ = ConvGeometry{
        weights.dim(3), weights.dim(0), weights.dim(1), weights.dim(2), stride, stride, pad, pad};
    g_.validate();
    require<ShapeError>(static_cast<std::int64_t>(weight_scales.size()) == g_.out_c &&
                            (bias.empty() || static_cast<std::int64_t>(bias.size()) == g_.out_c),
                        Derived::kName, ": weights ", weights.shape(), " need ", g_.out_c,
                        " weight scales and 0 or ", g_.out_c, " biases, got ", weight_scales.size(),
                        " and ", bias.size());
    w_scales_.assign(weight_scales.begin(), weight_scales.end());
    bias_.assign(bias.begin(), bias.end());
  }

  /// forward()'s requantizing epilogue (multipliers in s.channel).
  RequantOut requant_epilogue(QuantParams in, QuantParams out, bool relu, Scratch& s) const {
    require(out.zero_point >= 0 && out.zero_point <= 255, Derived::kName, ": output zero point ",
            out.zero_point, " is outside [0, 255]");
    float* mult = channel_params(s);
    for (std::int64_t o = 0; o < g_.out_c; ++o)
      mult[o] = requant_multiplier(in.scale, w_scales_[static_cast<std::size_t>(o)], out.scale);
    return RequantOut{bias_ptr(), mult, out.zero_point, relu ? out.zero_point : 0, 255};
  }

  /// Throws unless zx is a uint8 zero point (the input's).
  static void check_input_zero_point(std::int32_t zx) {
    require(zx >= 0 && zx <= 255, Derived::kName, ": input zero point ", zx,
            " is outside [0, 255]");
  }

  ConvGeometry g_;

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
  const std::int32_t* bias_ptr() const { return bias_.empty() ? nullptr : bias_.data(); }
  float* channel_params(Scratch& s) const {
    s.channel.reserve_discard(static_cast<std::size_t>(g_.out_c));
    return s.channel.data();
  }

  std::vector<float> w_scales_;
  std::vector<std::int32_t> bias_;
};

}  // namespace compressor::kernels::detail
