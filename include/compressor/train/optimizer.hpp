// Optimizers with PyTorch's update rules: SGD (momentum, dampening, Nesterov,
// L2 weight decay), Adam (L2 weight decay) and AdamW (decoupled weight decay).
// An optimizer holds references to the parameters (value + gradient) of a
// module; the module must outlive it.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/threading.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::train {

/// Which parameters receive weight decay.
enum class DecayPolicy : std::uint8_t {
  all,           ///< every parameter, as PyTorch does by default
  weights_only,  ///< skip 1-D tensors (biases, BatchNorm weight/bias)
};

class Optimizer {
 public:
  Optimizer(std::vector<nn::ParameterRef> params, float lr, float weight_decay, DecayPolicy policy)
      : params_(std::move(params)), lr_(lr) {
    require(lr >= 0.f && std::isfinite(lr), "optimizer: learning rate must be >= 0, got ", lr);
    require(weight_decay >= 0.f, "optimizer: weight decay must be >= 0, got ", weight_decay);
    for (const auto& p : params_)
      decay_.push_back(policy == DecayPolicy::all || p.value->rank() > 1 ? weight_decay : 0.f);
  }
  virtual ~Optimizer() = default;
  virtual std::string_view name() const = 0;

  /// Applies one update from the accumulated gradients.
  void step() {
    ++steps_;
    for (std::size_t i = 0; i < params_.size(); ++i) update(i, *params_[i].value, *params_[i].grad);
  }
  void zero_grad() {
    for (auto& p : params_) parallel_fill(p.grad->data(), p.grad->numel(), 0.f);
  }

  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  std::int64_t steps() const { return steps_; }
  const std::vector<nn::ParameterRef>& parameters() const { return params_; }

 protected:
  virtual void update(std::size_t index, Tensor<float>& value, const Tensor<float>& grad) = 0;
  float decay(std::size_t index) const { return decay_[index]; }

  /// Runs fn(begin, end) over the elements of a tensor, in parallel for large ones.
  template <class Fn>
  static void for_elements(std::int64_t n, Fn&& fn) {
    parallel_for(n, fn, 1 << 15);
  }

  /// Per-parameter state tensors, created on first use, shaped like the parameter.
  Tensor<float>& state(std::vector<Tensor<float>>& slot, std::size_t index) {
    if (slot.size() < params_.size()) slot.resize(params_.size());
    Tensor<float>& s = slot[index];
    if (!(s.shape() == params_[index].value->shape()))
      s = Tensor<float>(params_[index].value->shape());
    return s;
  }

 private:
  std::vector<nn::ParameterRef> params_;
  std::vector<float> decay_;
  float lr_;
  std::int64_t steps_ = 0;
};

struct SgdOptions {
  float lr = 0.1f;
  float momentum = 0.f;
  float dampening = 0.f;
  bool nesterov = false;
  float weight_decay = 0.f;
  DecayPolicy decay_policy = DecayPolicy::all;
};

/// torch.optim.SGD: g = grad + wd*p; buf = momentum*buf + (1-dampening)*g
/// (buf = g on the first step); g = nesterov ? g + momentum*buf : buf; p -= lr*g.
class Sgd : public Optimizer {
 public:
  Sgd(std::vector<nn::ParameterRef> params, const SgdOptions& o)
      : Optimizer(std::move(params), o.lr, o.weight_decay, o.decay_policy), opt_(o) {
    require(!o.nesterov || (o.momentum > 0.f && o.dampening == 0.f),
            "SGD: Nesterov momentum requires momentum > 0 and zero dampening");
  }
  std::string_view name() const override { return "sgd"; }

 protected:
  void update(std::size_t i, Tensor<float>& value, const Tensor<float>& grad) override {
    float* p = value.data();
    const float* g = grad.data();
    const float wd = decay(i), lr = this->lr(), mu = opt_.momentum, damp = 1.f - opt_.dampening;
    if (mu == 0.f) {
      for_elements(value.numel(), [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t k = b; k < e; ++k) p[k] -= lr * (g[k] + wd * p[k]);
      });
      return;
    }
    const bool first = steps() == 1;
    float* buf = state(momentum_, i).data();
    const bool nesterov = opt_.nesterov;
    for_elements(value.numel(), [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t k = b; k < e; ++k) {
        const float d = g[k] + wd * p[k];
        buf[k] = first ? d : mu * buf[k] + damp * d;
        p[k] -= lr * (nesterov ? d + mu * buf[k] : buf[k]);
      }
    });
  }

 private:
  SgdOptions opt_;
  std::vector<Tensor<float>> momentum_;
};

struct AdamOptions {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.f;
  DecayPolicy decay_policy = DecayPolicy::all;
};

/// torch.optim.Adam (decoupled = false: L2 decay added to the gradient) and
/// torch.optim.AdamW (decoupled = true: p *= 1 - lr*wd before the update).
class Adam : public Optimizer {
 public:
  Adam(std::vector<nn::ParameterRef> params, const AdamOptions& o, bool decoupled = false)
      : Optimizer(std::move(params), o.lr, o.weight_decay, o.decay_policy),
        opt_(o),
        decoupled_(decoupled) {
    require(o.beta1 >= 0.f && o.beta1 < 1.f && o.beta2 >= 0.f && o.beta2 < 1.f && o.eps > 0.f,
            "Adam: need 0 <= beta1, beta2 < 1 and eps > 0");
  }
  std::string_view name() const override { return decoupled_ ? "adamw" : "adam"; }

 protected:
  void update(std::size_t i, Tensor<float>& value, const Tensor<float>& grad) override {
    float* p = value.data();
    const float* g = grad.data();
    float* m = state(m_, i).data();
    float* v = state(v_, i).data();
    const double t = static_cast<double>(steps());
    const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(opt_.beta1), t));
    const float bc2_sqrt =
        static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(opt_.beta2), t)));
    const float lr = this->lr(), b1 = opt_.beta1, b2 = opt_.beta2, eps = opt_.eps;
    const float step_size = lr / bc1;
    const float wd = decay(i);
    const bool decoupled = decoupled_;
    for_elements(value.numel(), [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t k = b; k < e; ++k) {
        float d = g[k];
        if (decoupled)
          p[k] *= 1.f - lr * wd;
        else
          d += wd * p[k];
        m[k] = b1 * m[k] + (1.f - b1) * d;
        v[k] = b2 * v[k] + (1.f - b2) * d * d;
        p[k] -= step_size * m[k] / (std::sqrt(v[k]) / bc2_sqrt + eps);
      }
    });
  }

 private:
  AdamOptions opt_;
  bool decoupled_;
  std::vector<Tensor<float>> m_, v_;
};

/// AdamW: Adam with decoupled weight decay (PyTorch's default decay is 1e-2).
class AdamW : public Adam {
 public:
  AdamW(std::vector<nn::ParameterRef> params, AdamOptions o) : Adam(std::move(params), o, true) {}
};

}  // namespace compressor::train
