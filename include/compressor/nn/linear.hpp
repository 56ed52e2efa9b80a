// Linear: y = x W^T + b for x of shape (N, in_features); W is (out, in) as in
// PyTorch. Its GEMMs run on the library's fp32 kernels (kernels::sgemm) on
// every SIMD path, as Conv2d's, and on Eigen on the scalar one: Eigen's GEMM
// threads with OpenMP, whose workers, spinning after a region, would hold a
// core that the library's own worker pool wants next (docs/performance.md,
// "A thread pool of our own").
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "compressor/kernels/sgemm.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/init.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

class Linear : public Module, public WeightedLayer {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true)
      : in_(in_features), out_features_(out_features), has_bias_(bias) {
    require(in_ > 0 && out_features_ > 0, "Linear: invalid sizes in=", in_, " out=", out_features_);
    weight_.resize(Shape{out_features_, in_});
    init::pytorch_default_uniform(weight_, in_);
    register_parameter("weight", weight_, weight_grad_);
    if (bias) {
      bias_.resize(Shape{out_features_});
      init::pytorch_default_uniform(bias_, in_);
      register_parameter("bias", bias_, bias_grad_);
    }
  }

  std::string_view type_name() const override { return "Linear"; }
  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_features_; }

  // WeightedLayer
  bool has_bias() const override { return has_bias_; }
  Tensor<float>& weight() override { return weight_; }
  Tensor<float>& bias() override { return bias_; }
  void enable_bias() override {
    if (has_bias_) return;
    has_bias_ = true;
    bias_ = Tensor<float>(Shape{out_features_}, 0.f);
    register_parameter("bias", bias_, bias_grad_);
  }
  std::int64_t in_channels() const override { return in_; }
  std::int64_t out_channels() const override { return out_features_; }
  int in_axis() const override { return 1; }
  KernelGeometry kernel() const override { return {}; }
  std::unique_ptr<Module> select_output_channels(
      std::span<const std::int64_t> keep) const override {
    check_channel_selection(keep, out_features_, "Linear output features");
    return selected(0, keep);
  }
  std::unique_ptr<Module> select_input_channels(std::span<const std::int64_t> keep) const override {
    check_channel_selection(keep, in_, "Linear input features");
    return selected(1, keep);
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<Linear>(in_, out_features_, has_bias_);
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    if (x.rank() != 2 || x.dim(1) != in_)
      throw ShapeError(detail::concat("Linear(", in_, "->", out_features_, "): expected input (N, ",
                                      in_, "), got ", x.shape().str()));
    x_ = x;
    const std::int64_t n = x.dim(0);
    out_.resize(Shape{n, out_features_});
    path_ = kernels::kernel_path();
    if (kernels::path_has_avx2(path_)) {
      using kernels::StridedMatrix;
      kernels::sgemm(n, out_features_, in_, StridedMatrix::row_major(x.data(), in_),
                     StridedMatrix::transposed(weight_.data(), in_), out_.data(), out_features_,
                     false, path_);
    } else {
      out_.matrix().noalias() = x.matrix() * weight_.matrix().transpose();
    }
    if (has_bias_) out_.matrix().rowwise() += bias_.vector().transpose();
    return out_;
  }

  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "Linear::backward grad_out");
    const std::int64_t n = x_.dim(0);
    const auto dy = grad_out.matrix();
    // On the path of the forward.
    const bool simd = kernels::path_has_avx2(path_);
    using kernels::StridedMatrix;
    if (simd)  // dW (out x in) += dy^T x
      kernels::sgemm(
          out_features_, in_, n, StridedMatrix::transposed(grad_out.data(), out_features_),
          StridedMatrix::row_major(x_.data(), in_), weight_grad_.data(), in_, true, path_);
    else
      weight_grad_.matrix().noalias() += dy.transpose() * x_.matrix();
    if (has_bias_) bias_grad_.vector() += dy.colwise().sum().transpose();
    if (!input_grad()) return {};
    grad_in_.resize(x_.shape());
    if (simd)  // dx (n x in) = dy W
      kernels::sgemm(
          n, in_, out_features_, StridedMatrix::row_major(grad_out.data(), out_features_),
          StridedMatrix::row_major(weight_.data(), in_), grad_in_.data(), in_, false, path_);
    else
      grad_in_.matrix().noalias() = dy * weight_.matrix();
    return grad_in_;
  }

 private:
  /// A copy with only the kept features along weight axis (0: out, 1: in).
  std::unique_ptr<Linear> selected(int axis, std::span<const std::int64_t> keep) const {
    const auto k = static_cast<std::int64_t>(keep.size());
    std::unique_ptr<Linear> l;
    {
      const init::PreserveGenerator unchanged;
      l = std::make_unique<Linear>(axis == 1 ? k : in_, axis == 0 ? k : out_features_, has_bias_);
    }
    gather_axis(weight_, axis, keep, l->weight_);
    if (has_bias_) {
      if (axis == 0)
        gather_axis(bias_, 0, keep, l->bias_);
      else
        l->bias_ = bias_;
    }
    return l;
  }

  std::int64_t in_, out_features_;
  bool has_bias_;
  Tensor<float> weight_, weight_grad_, bias_, bias_grad_;
  Tensor<float> out_, grad_in_;
  TensorView<const float> x_;
  kernels::Path path_ = kernels::Path::scalar;  // of the last forward
};

}  // namespace compressor::nn
