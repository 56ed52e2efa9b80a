// EfRegressor: ejection fraction from an echo clip. A ResNet-18 trunk
// ("backbone.", torchvision names) runs on every frame of an (N, T, H, W, 3)
// clip; the per-frame average-pooled features are pooled over T (by default
// their mean) and a Linear head ("head.weight", "head.bias") maps them to one
// value per clip, (N, 1). torchvision resnet18 weights load by prefix:
// "conv1.weight" -> "backbone.conv1.weight".
//
// Temporal pooling: EF = (EDV - ESV) / EDV is a ratio of the largest and the
// smallest cavity over the clip, which a mean over T of per-frame features can
// only approximate (the clip's scale does not cancel in a linear head on
// means). TemporalPoolMode::mean_max_min also hands the head each feature's
// max and min over T (3F inputs); docs/ef_model.md has the measured effect.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "compressor/models/resnet.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/temporal_pool.hpp"

namespace compressor::models {

struct EfRegressorOptions {
  double width = 1.0;  ///< ResNet-18 width multiplier
  /// Pooling of the per-frame features over T (mean: the reference design).
  nn::TemporalPoolMode pool = nn::TemporalPoolMode::mean;
};

class EfRegressor : public nn::Module {
 public:
  explicit EfRegressor(const EfRegressorOptions& o = {}) {
    ResNetOptions ro;
    ro.width = o.width;
    ro.include_head = false;
    auto& trunk = register_module("backbone", std::make_unique<ResNet18>(ro));
    auto& pool = register_module("pool", std::make_unique<nn::TemporalPool>(o.pool));
    register_module("head",
                    std::make_unique<nn::Linear>(pool.out_features(trunk.num_features()), 1));
    set_input_grad(false);  // nothing needs the gradient of the clips
  }

  std::string_view type_name() const override { return "EfRegressor"; }
  Module& backbone() const { return child(0); }
  nn::TemporalPool& pool() const { return static_cast<nn::TemporalPool&>(child(1)); }
  Module& head() const { return child(2); }

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
    return head().forward(pool().forward(f.reshape(Shape{n_, t_, f.dim(1)})));
  }

  TensorView<const float> backward(TensorView<const float> grad_out) override {
    const auto gp = pool().backward(head().backward(grad_out));  // (N, T, F)
    const auto gx = backbone().backward(gp.reshape(Shape{n_ * t_, gp.dim(2)}));
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
};

}  // namespace compressor::models
