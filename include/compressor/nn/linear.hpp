// Linear: y = x W^T + b for x of shape (N, in_features); W is (out, in) as in
// PyTorch.
#pragma once

#include <cstdint>
#include <string_view>

#include "compressor/nn/init.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

class Linear : public Module {
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
  bool has_bias() const { return has_bias_; }
  Tensor<float>& weight() { return weight_; }
  Tensor<float>& bias() { return bias_; }

  TensorView<const float> forward(TensorView<const float> x) override {
    if (x.rank() != 2 || x.dim(1) != in_)
      throw ShapeError(detail::concat("Linear(", in_, "->", out_features_, "): expected input (N, ",
                                      in_, "), got ", x.shape().str()));
    x_ = x;
    out_.resize(Shape{x.dim(0), out_features_});
    out_.matrix().noalias() = x.matrix() * weight_.matrix().transpose();
    if (has_bias_) out_.matrix().rowwise() += bias_.vector().transpose();
    return out_;
  }

  TensorView<const float> backward(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "Linear::backward grad_out");
    const auto dy = grad_out.matrix();
    weight_grad_.matrix().noalias() += dy.transpose() * x_.matrix();
    if (has_bias_) bias_grad_.vector() += dy.colwise().sum().transpose();
    if (!input_grad()) return {};
    grad_in_.resize(x_.shape());
    grad_in_.matrix().noalias() = dy * weight_.matrix();
    return grad_in_;
  }

 private:
  std::int64_t in_, out_features_;
  bool has_bias_;
  Tensor<float> weight_, weight_grad_, bias_, bias_grad_;
  Tensor<float> out_, grad_in_;
  TensorView<const float> x_;
};

}  // namespace compressor::nn
