// FakeQuantize: an activation's quantization simulated in float, attached as
// the output hook of the module whose output is a quantization point.
//
//   y = scale * (clamp(round_half_even(x * (1 / scale)), qmin - zp, qmax - zp))
//
// computed with the scalar functions of kernels/requant.hpp (the rule the int8
// kernels use) on float tensors, so y is exactly the value the int8 model
// represents its uint8 output as. Never calls the int8 kernels.
//
// States (PyTorch's, explicit): while its observer (child "observer") is not
// frozen, every forward() in training mode records x and the parameters
// follow the observed range; freeze() the observer (or set_qparams()) and
// they stay fixed. With fake-quant disabled it passes x through (observe
// only). In eval mode it never observes (unlike PyTorch's FakeQuantize, which
// observes in both): evaluating a QAT model between epochs leaves its ranges
// as training set them, so the figures are those of the model that convert
// would produce, and a data-parallel observer, which reduces over the ranks
// whenever it observes, is not entered by one rank's evaluation alone.
//
// Backward: the straight-through estimator, dy where x rounds inside
// [qmin, qmax], 0 outside (PyTorch's mask). With a learnable scale (LSQ,
// Esser et al. 2020) "scale" is a parameter initialised from the observer when
// training starts; its gradient is sum(dy * d y / d scale) * g with
//   d y / d scale = round(x / s) - x / s   inside the range,
//                   qmin - zp or qmax - zp  below or above it,
// and g = 1 / sqrt(numel(x) * qmax) (the paper's gradient scale).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "compressor/core/threading.hpp"
#include "compressor/kernels/int8_traits.hpp"
#include "compressor/kernels/requant.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/quant/observer.hpp"
#include "compressor/quant/qparams.hpp"

namespace compressor::quant {

class FakeQuantize : public nn::Module {
 public:
  static constexpr std::int32_t kQMin = kernels::Int8Traits::kActivationMin;
  static constexpr std::int32_t kQMax = kernels::Int8Traits::kActivationMax;

  /// Parameters follow `observer` until it is frozen.
  explicit FakeQuantize(std::unique_ptr<Observer> observer, bool learnable_scale = false)
      : lsq_(learnable_scale) {
    require(observer != nullptr, "FakeQuantize: null observer");
    register_module("observer", std::move(observer));
    init_parameters();
  }
  /// Fixed parameters: an observer-less fake-quant (the PTQ fake-quant model).
  explicit FakeQuantize(QuantParams q, bool learnable_scale = false) : lsq_(learnable_scale) {
    init_parameters();
    set_qparams(q);
  }

  std::string_view type_name() const override { return "FakeQuantize"; }

  Observer* observer() const {
    return num_children() ? nn::as<Observer>(child("observer")) : nullptr;
  }
  bool learnable_scale() const { return lsq_; }
  bool fake_quant_enabled() const { return enabled_; }
  void enable_fake_quant(bool on = true) { enabled_ = on; }

  /// The parameters forward() uses now.
  QuantParams qparams() const { return {scale_[0], static_cast<std::int32_t>(zero_point_[0])}; }
  /// Fixes the parameters (and freezes the observer, if any).
  void set_qparams(QuantParams q) {
    require(
        q.scale > 0.f && std::isfinite(q.scale) && q.zero_point >= kQMin && q.zero_point <= kQMax,
        "FakeQuantize: invalid parameters scale ", q.scale, ", zero point ", q.zero_point);
    scale_[0] = q.scale;
    zero_point_[0] = q.zero_point;
    has_params_ = true;
    if (Observer* o = observer()) o->freeze();
  }

  /// The output of the last forward() as the int8 model holds it (uint8).
  Tensor<std::uint8_t> last_quantized() const {
    Tensor<std::uint8_t> q(out_.shape());
    const QuantParams p = qparams();
    for (std::int64_t i = 0; i < out_.numel(); ++i) q.data()[i] = quantize_activation(out_[i], p);
    return q;
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    // Children (the observer) come from clone(); parameters and buffers are
    // registered as in this one.
    auto c = std::unique_ptr<FakeQuantize>(new FakeQuantize(lsq_));
    c->enabled_ = enabled_;
    c->has_params_ = has_params_;
    return c;
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    Observer* obs = observer();
    if (obs != nullptr && !obs->is_frozen() && is_training()) {
      obs->forward(x);  // records x
      const QuantParams q = obs->qparams();
      zero_point_[0] = q.zero_point;
      if (!lsq_ || !has_params_) scale_[0] = q.scale;  // LSQ: learned after the first
      has_params_ = true;
    }
    if (!has_params_) {  // the message is built only on this path
      const bool frozen = obs != nullptr && obs->is_frozen();
      throw ValueError(detail::concat(
          "FakeQuantize",
          obs != nullptr && !obs->label().empty() ? " at '" + obs->label() + "'" : std::string(),
          ": no parameters yet (nothing observed, none set)",
          frozen ? ": its observer was frozen before it observed anything"
                 : "; its observer observes in training mode only: run the model in training "
                   "mode first"));
    }
    x_ = x;
    if (!enabled_) return x;
    const QuantParams q = qparams();
    require(q.scale > 0.f && std::isfinite(q.scale), "FakeQuantize: the scale became ", q.scale);
    out_.resize(x.shape());
    const float inv = kernels::inverse_scale(q.scale);
    const float* xp = x.data();
    float* yp = out_.data();
    parallel_for(
        x.numel(),
        [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t i = b; i < e; ++i) {
            const std::int32_t v = kernels::round_scaled(xp[i], inv, q.zero_point, kQMin, kQMax);
            yp[i] = kernels::dequantize(static_cast<std::uint8_t>(v), q.scale, q.zero_point);
          }
        },
        1 << 14);
    return out_;
  }

  TensorView<const float> backward_impl(TensorView<const float> g) override {
    if (!enabled_) return g;
    check_same_shape(g.shape(), x_.shape(), "FakeQuantize::backward grad_out");
    const QuantParams q = qparams();
    const float s = q.scale, inv = kernels::inverse_scale(s);
    const auto zp = static_cast<float>(q.zero_point);
    grad_in_.resize(g.shape());
    const float *xp = x_.data(), *gp = g.data();
    float* dx = grad_in_.data();
    double ds = 0;
    for (std::int64_t i = 0; i < g.numel(); ++i) {
      const float v = xp[i] * inv;
      const float r = std::nearbyint(v) + zp;
      const bool inside = r >= kQMin && r <= kQMax;
      dx[i] = inside ? gp[i] : 0.f;
      if (lsq_) {
        const float d = inside ? std::nearbyint(v) - v : (r < kQMin ? kQMin - zp : kQMax - zp);
        ds += static_cast<double>(gp[i]) * d;
      }
    }
    if (lsq_) {
      const double gscale = 1.0 / std::sqrt(static_cast<double>(g.numel()) * kQMax);
      scale_grad_[0] += static_cast<float>(ds * gscale);
    }
    return grad_in_;
  }

 private:
  explicit FakeQuantize(bool lsq) : lsq_(lsq) { init_parameters(); }

  void init_parameters() {
    scale_ = Tensor<float>(Shape{1}, 1.f);
    zero_point_ = Tensor<std::int32_t>(Shape{1}, 0);
    if (lsq_)
      register_parameter("scale", scale_, scale_grad_);
    else
      register_buffer("scale", scale_);
    register_buffer("zero_point", zero_point_);
  }

  bool lsq_ = false;
  bool enabled_ = true;
  bool has_params_ = false;
  Tensor<float> scale_, scale_grad_;
  Tensor<std::int32_t> zero_point_;
  TensorView<const float> x_;
  Tensor<float> out_, grad_in_;
};

}  // namespace compressor::quant
