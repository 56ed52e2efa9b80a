// Conv2d: 2-D convolution on NHWC activations with OHWI weights, computed as
// GEMMs on the library's fp32 kernels on every SIMD path (kernel_path() is
// avx2 or above: the AVX2 or AVX-512 micro-kernel), on an implicit im2col (kernels/conv_f32.hpp:
// the column matrix is read from the padded input, never stored): the forward product when
// in_channels % 16
// == 0 or a kernel row has at least 16 floats (else explicit im2col + sgemm),
// the weight gradient always, and with in_channels % 16 == 0 the input
// gradient of a stride-1 convolution, the full convolution of the output
// gradient with the flipped kernel (else GEMM + col2im). On the scalar path:
// im2col + Eigen GEMM (our scalar GEMM is the reference, a plain triple
// loop; Eigen is many times faster). The path is read once per forward and
// kept for its backward. A 1x1 stride-1 convolution is a plain GEMM.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "compressor/kernels/conv_f32.hpp"
#include "compressor/kernels/sgemm.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/gemm.hpp"
#include "compressor/nn/im2col.hpp"
#include "compressor/nn/init.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

struct Conv2dOptions {
  std::int64_t in_channels = 0;
  std::int64_t out_channels = 0;
  std::int64_t kernel_size = 1;
  std::int64_t stride = 1;
  std::int64_t padding = 0;
  bool bias = true;
};

/// The geometry of a convolution with options o on an (N, H, W, C) input;
/// throws ShapeError naming both when the input does not fit. Shared by
/// Conv2d and the deploy-time convolutions built from it.
inline ConvGeometry conv_geometry(const Conv2dOptions& o, const Shape& in) {
  if (in.rank() != 4 || in[3] != o.in_channels)
    throw ShapeError(detail::concat("Conv2d(", o.in_channels, "->", o.out_channels,
                                    "): expected an NHWC input (N, H, W, ", o.in_channels,
                                    "), got ", in.str()));
  ConvGeometry g{in[0],         in[1],    in[2],     in[3], o.kernel_size,
                 o.kernel_size, o.stride, o.padding, 0,     0};
  const std::int64_t hp = g.h + 2 * g.pad - g.kh, wp = g.w + 2 * g.pad - g.kw;
  if (hp < 0 || wp < 0)
    throw ShapeError(detail::concat("Conv2d: input ", in.str(), " smaller than kernel ", g.kh, "x",
                                    g.kw, " with padding ", g.pad));
  g.oh = hp / g.stride + 1;
  g.ow = wp / g.stride + 1;
  return g;
}

class Conv2d : public Module, public WeightedLayer {
 public:
  explicit Conv2d(const Conv2dOptions& o) : opt_(o) {
    require(o.in_channels > 0 && o.out_channels > 0 && o.kernel_size > 0 && o.stride > 0 &&
                o.padding >= 0,
            "Conv2d: invalid options in=", o.in_channels, " out=", o.out_channels,
            " kernel=", o.kernel_size, " stride=", o.stride, " padding=", o.padding);
    weight_.resize(Shape{o.out_channels, o.kernel_size, o.kernel_size, o.in_channels});
    const std::int64_t fan_in = o.in_channels * o.kernel_size * o.kernel_size;
    init::pytorch_default_uniform(weight_, fan_in);
    register_parameter("weight", weight_, weight_grad_, Layout::ohwi);
    if (o.bias) {
      bias_.resize(Shape{o.out_channels});
      init::pytorch_default_uniform(bias_, fan_in);
      register_parameter("bias", bias_, bias_grad_);
    }
  }
  Conv2d(std::int64_t in, std::int64_t out, std::int64_t kernel, std::int64_t stride = 1,
         std::int64_t padding = 0, bool bias = true)
      : Conv2d(Conv2dOptions{in, out, kernel, stride, padding, bias}) {}

  std::string_view type_name() const override { return "Conv2d"; }
  const Conv2dOptions& options() const { return opt_; }

  // WeightedLayer
  Tensor<float>& weight() override { return weight_; }
  Tensor<float>& bias() override { return bias_; }
  bool has_bias() const override { return opt_.bias; }
  void enable_bias() override {
    if (opt_.bias) return;
    opt_.bias = true;
    bias_ = Tensor<float>(Shape{opt_.out_channels}, 0.f);
    register_parameter("bias", bias_, bias_grad_);
  }
  std::int64_t in_channels() const override { return opt_.in_channels; }
  std::int64_t out_channels() const override { return opt_.out_channels; }
  int in_axis() const override { return 3; }
  KernelGeometry kernel() const override {
    return {opt_.kernel_size, opt_.kernel_size, opt_.stride, opt_.padding};
  }
  std::unique_ptr<Module> select_output_channels(
      std::span<const std::int64_t> keep) const override {
    check_channel_selection(keep, opt_.out_channels, "Conv2d output channels");
    return selected(0, keep);
  }
  std::unique_ptr<Module> select_input_channels(std::span<const std::int64_t> keep) const override {
    check_channel_selection(keep, opt_.in_channels, "Conv2d input channels");
    return selected(3, keep);
  }

  /// Output shape for an (N, H, W, C) input; throws ShapeError on mismatch.
  ConvGeometry geometry(const Shape& in) const { return conv_geometry(opt_, in); }

  /// True when the forward product on path p runs on the implicit-im2col
  /// kernel (kernels/conv_f32.hpp): a SIMD path, and in_channels % 16 == 0
  /// or a kernel row of at least 16 floats (the 7x7 stem's 21). Otherwise
  /// (a 3x3 kernel on 3 channels: rows of 9 floats, too short for the
  /// micro-kernel's k loop) explicit im2col + GEMM. On a SIMD path the
  /// weight gradient always reads the padded input in place.
  bool implicit_im2col(kernels::Path p = kernels::kernel_path()) const {
    return kernels::path_has_avx2(p) &&
           (opt_.in_channels % 16 == 0 || opt_.kernel_size * opt_.in_channels >= 16);
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<Conv2d>(opt_); }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    g_ = geometry(x.shape());
    x_ = x;
    const std::int64_t m = g_.rows(), k = g_.cols(), o = opt_.out_channels;
    out_.resize(Shape{g_.n, g_.oh, g_.ow, o});
    auto y = out_.matrix(m, o);
    path_ = kernels::kernel_path();
    if (kernels::path_has_avx2(path_)) {
      if (g_.pad > 0) pad_nhwc(x.data(), g_.n, g_.h, g_.w, g_.c, g_.pad, x_pad_);
      if (implicit_im2col(path_)) {
        kernels::conv2d_f32_forward(padded_input(), input_geometry(), weight_.data(), o, y.data(),
                                    path_);
      } else {
        using kernels::StridedMatrix;
        kernels::sgemm(m, o, k, StridedMatrix::row_major(cols(x).data(), k),
                       StridedMatrix::transposed(weight_.data(), k), y.data(), o, false, path_);
      }
    } else {
      gemm_assign(y, cols(x), weight_.matrix(o, k).transpose());
    }
    if (opt_.bias) {
      const auto b = bias_.vector().transpose();
      parallel_for(
          m, [&](std::int64_t r0, std::int64_t r1) { y.middleRows(r0, r1 - r0).rowwise() += b; },
          256);
    }
    return out_;
  }

  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "Conv2d::backward grad_out");
    const std::int64_t m = g_.rows(), k = g_.cols(), o = opt_.out_channels;
    const auto dy = grad_out.matrix(m, o);
    using kernels::StridedMatrix;
    // On the path of the forward (its buffers: the padded input or the columns).
    const bool simd = kernels::path_has_avx2(path_);
    if (simd) {
      kernels::conv2d_f32_weight_grad(padded_input(), input_geometry(), dy.data(), o,
                                      weight_grad_.data(), path_);
    } else {
      const auto col = (g_.is_pointwise() ? x_ : TensorView<const float>(cols_)).matrix(m, k);
      weight_grad_.matrix(o, k).noalias() += dy.transpose() * col;
    }
    if (opt_.bias) bias_grad_.vector() += dy.colwise().sum().transpose();
    if (!input_grad()) return {};
    grad_in_.resize(x_.shape());
    if (simd && opt_.in_channels % 16 == 0 && g_.stride == 1 && g_.pad < g_.kh) {
      // Stride 1: dx is the "full" convolution of dy (padded by kh-1-pad)
      // with the kernel flipped in space and its channel axes swapped.
      const std::int64_t q = g_.kh - 1 - g_.pad;
      pad_nhwc(grad_out.data(), g_.n, g_.oh, g_.ow, o, q, dy_pad_);
      const kernels::Im2colGeometry gt{g_.n, g_.oh + 2 * q, g_.ow + 2 * q, o, g_.kh, g_.kw,
                                       1,    g_.h,          g_.w};
      kernels::conv2d_f32_input_grad(dy_pad_.data(), gt, weight_.data(), g_.c, grad_in_.data(),
                                     path_);
      return grad_in_;
    }
    if (!g_.is_pointwise()) dcols_.resize(Shape{m, k});
    float* dcols = g_.is_pointwise() ? grad_in_.data() : dcols_.data();
    if (simd)
      kernels::sgemm(m, k, o, StridedMatrix::row_major(dy.data(), o),
                     StridedMatrix::row_major(weight_.data(), k), dcols, k, false, path_);
    else
      gemm_assign(TensorView<float>(dcols, Shape{m, k}).matrix(), dy, weight_.matrix(o, k));
    if (!g_.is_pointwise()) col2im(dcols_.data(), g_, grad_in_.data());
    return grad_in_;
  }

 private:
  /// A copy with only the kept channels along weight axis (0: out, 3: in).
  std::unique_ptr<Conv2d> selected(int axis, std::span<const std::int64_t> keep) const {
    Conv2dOptions o = opt_;
    (axis == 0 ? o.out_channels : o.in_channels) = static_cast<std::int64_t>(keep.size());
    std::unique_ptr<Conv2d> c;
    {
      const init::PreserveGenerator unchanged;
      c = std::make_unique<Conv2d>(o);
    }
    gather_axis(weight_, axis, keep, c->weight_);
    if (opt_.bias) {
      if (axis == 0)
        gather_axis(bias_, 0, keep, c->bias_);
      else
        c->bias_ = bias_;
    }
    return c;
  }

  /// The (M x K) column matrix of x: x itself for a pointwise convolution.
  TensorView<const float>::MatrixMap cols(TensorView<const float> x) {
    if (g_.is_pointwise()) return x.matrix(g_.rows(), g_.cols());
    cols_.resize(Shape{g_.rows(), g_.cols()});
    im2col(x.data(), g_, cols_.data());
    return std::as_const(cols_).matrix();
  }

  /// The input with its zero padding (the copy forward() made; x itself
  /// when there is no padding).
  const float* padded_input() const { return g_.pad == 0 ? x_.data() : x_pad_.data(); }

  kernels::Im2colGeometry input_geometry() const {
    return {g_.n, g_.h + 2 * g_.pad, g_.w + 2 * g_.pad, g_.c, g_.kh, g_.kw, g_.stride, g_.oh,
            g_.ow};
  }

  Conv2dOptions opt_;
  Tensor<float> weight_, weight_grad_, bias_, bias_grad_;
  Tensor<float> out_, grad_in_, cols_, dcols_, x_pad_, dy_pad_;
  TensorView<const float> x_;
  ConvGeometry g_{};
  kernels::Path path_ = kernels::Path::scalar;  // of the last forward
};

}  // namespace compressor::nn
