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
//
// Channel plan: the trunk's entries with the prefix "backbone." (see
// resnet.hpp) and "head" (= 1); option "pool" ("mean" | "mean_max_min").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/models/resnet.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/temporal_pool.hpp"

namespace compressor::models {

struct EfRegressorOptions {
  double width = 1.0;  ///< ResNet-18 width multiplier
  /// Pooling of the per-frame features over T (mean: the reference design).
  nn::TemporalPoolMode pool = nn::TemporalPoolMode::mean;
};

class EfRegressor : public nn::Module, public nn::PlannedModel {
 public:
  static constexpr std::string_view kTypeName = "EfRegressor";

  /// The uniform plan of a width multiplier.
  static nn::ChannelPlan uniform_plan(const EfRegressorOptions& o = {}) {
    ResNetOptions ro;
    ro.width = o.width;
    ro.include_head = false;
    const nn::ChannelPlan trunk = ResNet18::uniform_plan(ro);
    nn::ChannelPlan p;
    p.model = std::string(kTypeName);
    p.options = {{"pool", std::string(nn::to_string(o.pool))}};
    for (const auto& [name, c] : trunk.channels) p.channels.emplace_back("backbone." + name, c);
    p.channels.emplace_back("head", 1);
    return p;
  }

  explicit EfRegressor(const EfRegressorOptions& o = {}) : EfRegressor(uniform_plan(o)) {}

  /// Builds the model of a plan; throws naming the layer on an inconsistent plan.
  explicit EfRegressor(const nn::ChannelPlan& plan) {
    nn::PlanReader r(plan, kTypeName);
    const std::string pool_name = plan.option_string("pool", "mean");
    require(pool_name == "mean" || pool_name == "mean_max_min", "EfRegressor channel plan: ",
            "option 'pool' must be \"mean\" or \"mean_max_min\", got \"", pool_name, "\"");
    mode_ = pool_name == "mean" ? nn::TemporalPoolMode::mean : nn::TemporalPoolMode::mean_max_min;
    auto& trunk = register_module("backbone", std::make_unique<ResNet18>(r, "backbone.", 3));
    auto& pool = register_module("pool", std::make_unique<nn::TemporalPool>(mode_));
    register_module("head",
                    std::make_unique<nn::Linear>(pool.out_features(trunk.num_features()),
                                                 r.fixed("head", 1, "the single EF output")));
    r.finish();
    set_input_grad(false);  // nothing needs the gradient of the clips
  }

  std::string_view type_name() const override { return kTypeName; }
  Module& backbone() const { return child("backbone"); }
  Module& pool() const { return child("pool"); }
  Module& head() const { return child("head"); }
  nn::TemporalPoolMode pool_mode() const { return mode_; }

  /// Sets the head's bias, e.g. to the training-set mean EF, so training
  /// starts at the mean predictor rather than at 0.
  void set_output_bias(float b) {
    auto& lin = head_layer("set_output_bias");
    lin.enable_bias();
    lin.bias().fill(b);
  }

  /// Folds y -> scale * y + shift into the head, e.g. to turn a model trained
  /// on standardised targets into one that predicts the original unit.
  void fold_output_affine(float scale, float shift) {
    auto& lin = head_layer("fold_output_affine");
    lin.enable_bias();
    for (auto& w : lin.weight().flat()) w *= scale;
    for (auto& b : lin.bias().flat()) b = b * scale + shift;
  }

  nn::ChannelPlan channel_plan() override {
    nn::ChannelPlan p;
    p.model = std::string(kTypeName);
    p.options = {{"pool", std::string(nn::to_string(mode_))}};
    p.channels = nn::weighted_channels(*this);
    return p;
  }

  /// The backbone's points (its input "backbone.quant" is the clip's), pool
  /// (the temporal pool: the head's input), head (output).
  void add_quantization_points(const std::string& prefix,
                               std::vector<nn::QuantPoint>& out) const override {
    backbone().add_quantization_points(join(prefix, "backbone"), out);
    out.push_back({join(prefix, "pool"), nn::PointKind::temporal_pool});
    out.push_back({join(prefix, "head"), nn::PointKind::output});
  }

  void set_input_grad(bool on) override {
    Module::set_input_grad(on);
    backbone().set_input_grad(on);
  }

 protected:
  struct Shell {};
  explicit EfRegressor(Shell, nn::TemporalPoolMode mode) : mode_(mode) {}
  std::unique_ptr<Module> clone_shell() const override {
    return std::unique_ptr<EfRegressor>(new EfRegressor(Shell{}, mode_));
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    if (x.rank() != 5)
      throw ShapeError(
          detail::concat("EfRegressor: expected clips (N, T, H, W, C), got ", x.shape().str()));
    in_shape_ = x.shape();
    n_ = x.dim(0);
    t_ = x.dim(1);
    require<ShapeError>(n_ > 0 && t_ > 0, "EfRegressor: empty clip batch ", x.shape());
    const auto frames = x.reshape(Shape{n_ * t_, x.dim(2), x.dim(3), x.dim(4)});
    const auto f = backbone().forward(frames);  // (N*T, F)
    return head().forward(pool().forward(f.reshape(Shape{n_, t_, f.dim(1)})));
  }

  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    const auto gp = pool().backward(head().backward(grad_out));  // (N, T, F)
    const auto gx = backbone().backward(gp.reshape(Shape{n_ * t_, gp.dim(2)}));
    if (!input_grad()) return {};
    return gx.reshape(in_shape_);
  }

 private:
  nn::WeightedLayer& head_layer(std::string_view who) const {
    auto* lin = nn::as<nn::WeightedLayer>(head());
    require(lin != nullptr, "EfRegressor::", who, ": the head is a ", head().type_name(),
            ", not a layer with weights");
    return *lin;
  }

  nn::TemporalPoolMode mode_ = nn::TemporalPoolMode::mean;
  std::int64_t n_ = 0, t_ = 0;
  Shape in_shape_;
};

}  // namespace compressor::models
