// EfRegressor: ejection fraction from an echo clip. A ResNet-18 trunk
// ("backbone.", torchvision names) runs on every frame of an (N, T, H, W, 3)
// clip; the per-frame average-pooled features are averaged over T and a
// Linear head ("head.weight", "head.bias") maps them to one value per clip,
// (N, 1). torchvision resnet18 weights load by prefix: "conv1.weight" ->
// "backbone.conv1.weight".
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "compressor/models/resnet.hpp"
#include "compressor/nn/linear.hpp"

namespace compressor::models {

struct EfRegressorOptions {
  double width = 1.0;  ///< ResNet-18 width multiplier
};

class EfRegressor : public nn::Module {
 public:
  explicit EfRegressor(const EfRegressorOptions& o = {}) {
    ResNetOptions ro;
    ro.width = o.width;
    ro.include_head = false;
    auto& trunk = register_module("backbone", std::make_unique<ResNet18>(ro));
    register_module("head", std::make_unique<nn::Linear>(trunk.num_features(), 1));
    set_input_grad(false);  // nothing needs the gradient of the clips
  }

  std::string_view type_name() const override { return "EfRegressor"; }
  Module& backbone() const { return child(0); }
  Module& head() const { return child(1); }

  /// Sets the head's bias, e.g. to the training-set mean EF, so training
  /// starts at the mean predictor rather than at 0.
  void set_output_bias(float b) {
    auto* lin = dynamic_cast<nn::Linear*>(&head());
    require(lin != nullptr, "EfRegressor::set_output_bias: head is not a Linear");
    lin->bias().fill(b);
  }

  /// Folds y -> scale * y + shift into the head, e.g. to turn a model trained
  /// on standardised targets into one that predicts the original unit.
  void fold_output_affine(float scale, float shift) {
    auto* lin = dynamic_cast<nn::Linear*>(&head());
    require(lin != nullptr, "EfRegressor::fold_output_affine: head is not a Linear");
    for (auto& w : lin->weight().flat()) w *= scale;
    for (auto& b : lin->bias().flat()) b = b * scale + shift;
  }

  TensorView<const float> forward(TensorView<const float> x) override {
    if (x.rank() != 5)
      throw ShapeError(
          detail::concat("EfRegressor: expected clips (N, T, H, W, C), got ", x.shape().str()));
    in_shape_ = x.shape();
    n_ = x.dim(0);
    t_ = x.dim(1);
    require<ShapeError>(n_ > 0 && t_ > 0, "EfRegressor: empty clip batch ", x.shape().str());
    const auto frames = x.reshape(Shape{n_ * t_, x.dim(2), x.dim(3), x.dim(4)});
    const auto f = backbone().forward(frames);  // (N*T, F)
    const std::int64_t nf = f.dim(1);
    pooled_.resize(Shape{n_, nf});
    const float inv = 1.f / static_cast<float>(t_);
    for (std::int64_t i = 0; i < n_; ++i) {
      float* dst = pooled_.data() + i * nf;
      std::fill_n(dst, nf, 0.f);
      for (std::int64_t t = 0; t < t_; ++t) {
        const float* src = f.data() + (i * t_ + t) * nf;
        for (std::int64_t j = 0; j < nf; ++j) dst[j] += src[j];
      }
      for (std::int64_t j = 0; j < nf; ++j) dst[j] *= inv;
    }
    return head().forward(pooled_);
  }

  TensorView<const float> backward(TensorView<const float> grad_out) override {
    const auto gp = head().backward(grad_out);  // (N, F)
    const std::int64_t nf = gp.dim(1);
    g_frames_.resize(Shape{n_ * t_, nf});
    const float inv = 1.f / static_cast<float>(t_);
    for (std::int64_t i = 0; i < n_; ++i)
      for (std::int64_t t = 0; t < t_; ++t)
        for (std::int64_t j = 0; j < nf; ++j)
          g_frames_[(i * t_ + t) * nf + j] = gp[i * nf + j] * inv;
    const auto gx = backbone().backward(g_frames_);
    if (!input_grad()) return {};
    return gx.reshape(in_shape_);
  }

  void set_input_grad(bool on) override {
    Module::set_input_grad(on);
    backbone().set_input_grad(on);
  }

 private:
  std::int64_t n_ = 0, t_ = 0;
  Shape in_shape_;
  Tensor<float> pooled_, g_frames_;
};

}  // namespace compressor::models
