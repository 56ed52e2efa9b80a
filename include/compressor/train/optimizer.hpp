// Optimizers with PyTorch's update rules: SGD (momentum, dampening, Nesterov,
// L2 weight decay), Adam (L2 weight decay) and AdamW (decoupled weight decay).
//
// An optimizer is built on a module (which must outlive it), optionally with a
// filter that selects the parameters it trains by qualified name. It keeps
// its per-parameter state (SGD's momentum buffer; Adam's m, v and step count)
// by parameter NAME, never by pointer: at the start of every step() and
// zero_grad() it re-reads model.named_parameters() and binds by name, so the
// model may be edited (Module::replace(), enable_bias(), ...) between steps:
//
//   - a parameter whose name and shape are unchanged keeps its state, also
//     when the module holding it was replaced by another one of the same
//     shape (the state then applies to the new module's tensor);
//   - a new parameter (a conv that gained a bias when a BatchNorm was folded
//     into it, a new layer) joins with fresh state: its first SGD momentum
//     step sets buf = g, and Adam's bias correction counts its own steps;
//   - a parameter that was removed, or whose shape changed, makes step() and
//     zero_grad() throw a ValueError naming it: its state would otherwise be
//     lost or no longer fit. rebind() accepts the model's current parameters:
//     it drops the state of removed ones and resets that of reshaped ones.
//
// Nothing from a previous binding is dereferenced: it is compared by the
// names and shapes the optimizer copied. Binding costs a named_parameters()
// walk (about 60 entries for ResNet-18), microseconds against a training
// step's milliseconds (docs/architecture.md has the measurement).
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/core/threading.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::train {

/// Which parameters receive weight decay.
enum class DecayPolicy : std::uint8_t {
  all,           ///< every parameter, as PyTorch does by default
  weights_only,  ///< skip 1-D tensors (biases, BatchNorm weight/bias)
};

/// Selects the parameters an optimizer trains by qualified name ("fc.weight");
/// an empty filter selects all of them.
using ParameterFilter = std::function<bool(std::string_view name)>;

/// What an optimizer keeps for one parameter (PyTorch's state keys).
struct ParamState {
  Shape shape;                        ///< the parameter's shape when it was bound
  std::int64_t steps = 0;             ///< updates applied to this parameter
  Tensor<float> momentum_buffer;      ///< SGD with momentum; empty until its first step
  Tensor<float> exp_avg, exp_avg_sq;  ///< Adam's m and v; empty until its first step
};

class Optimizer {
 public:
  /// Binds the parameters of model that filter selects (all when empty);
  /// throws ValueError when it selects none.
  Optimizer(nn::Module& model, float lr, float weight_decay, DecayPolicy policy,
            ParameterFilter filter)
      : model_(&model),
        filter_(std::move(filter)),
        lr_(lr),
        weight_decay_(weight_decay),
        policy_(policy) {
    require(lr >= 0.f && std::isfinite(lr), "optimizer: learning rate must be >= 0, got ", lr);
    require(weight_decay >= 0.f, "optimizer: weight decay must be >= 0, got ", weight_decay);
    bind(true);
    require(!bound_.empty(), "optimizer: ",
            filter_ ? "the parameter filter selects none of the model's parameters"
                    : "the model has no parameters");
  }
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  virtual ~Optimizer() = default;
  virtual std::string_view name() const = 0;

  /// Rebinds by name (see the top of this file), then applies one update
  /// from the accumulated gradients.
  void step() {
    bind(false);
    ++steps_;
    for (auto& b : bound_) {
      if (!(b.ref.grad->shape() == b.ref.value->shape()))
        throw ShapeError(detail::concat(name(), ": gradient of '", b.ref.name, "' has shape ",
                                        b.ref.grad->shape().str(), ", not ",
                                        b.ref.value->shape().str()));
      ++b.state.steps;
      update(*b.ref.value, *b.ref.grad, b.decay, b.state);
    }
  }
  /// Rebinds by name, then zeroes the gradients of the bound parameters.
  void zero_grad() {
    bind(false);
    for (auto& b : bound_) parallel_fill(b.ref.grad->data(), b.ref.grad->numel(), 0.f);
  }
  /// Accepts the model's current parameters after an edit step() refused:
  /// drops the state of removed parameters, resets (to fresh) the state of
  /// reshaped ones, adds new ones; the others keep theirs.
  void rebind() { bind(true); }

  float lr() const { return lr_; }
  void set_lr(float lr) { lr_ = lr; }
  /// Sets the momentum a schedule cycles (SGD's momentum, Adam's beta1);
  /// returns false for an optimizer that has none.
  virtual bool set_momentum(float) { return false; }
  /// Optimizer steps taken (each parameter also counts its own: state()).
  std::int64_t steps() const { return steps_; }
  /// Sets the step count, for restoring a saved state (io/optimizer_state.hpp).
  void restore_steps(std::int64_t steps) {
    require(steps >= 0, name(), ": a step count must be >= 0, got ", steps);
    steps_ = steps;
  }
  nn::Module& model() const { return *model_; }

  /// The parameters the next step() updates, bound now (throws as step() does).
  std::vector<nn::ParameterRef> parameters() {
    bind(false);
    std::vector<nn::ParameterRef> out;
    out.reserve(bound_.size());
    for (const auto& b : bound_) out.push_back(b.ref);
    return out;
  }
  /// The state kept for the parameter of this name at the last binding, or nullptr.
  const ParamState* state(std::string_view param) const {
    for (const auto& b : bound_)
      if (b.ref.name == param) return &b.state;
    return nullptr;
  }
  /// The same state for editing, or nullptr: pruning zeroes the masked
  /// entries of a momentum buffer or of Adam's moments so that they cannot
  /// move a pruned weight. Keep the shapes: the next binding checks them.
  ParamState* mutable_state(std::string_view param) {
    for (auto& b : bound_)
      if (b.ref.name == param) return &b.state;
    return nullptr;
  }

 protected:
  /// One update of one parameter; state.steps already counts this one.
  virtual void update(Tensor<float>& value, const Tensor<float>& grad, float decay,
                      ParamState& state) = 0;

  /// Runs fn(begin, end) over the elements of a tensor, in parallel for large ones.
  template <class Fn>
  static void for_elements(std::int64_t n, Fn&& fn) {
    parallel_for(n, fn, 1 << 15);
  }

 private:
  struct Bound {
    nn::ParameterRef ref;  ///< of the current binding only
    float decay;
    ParamState state;
  };
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  float decay_of(const Tensor<float>& value) const {
    return policy_ == DecayPolicy::all || value.rank() > 1 ? weight_decay_ : 0.f;
  }

  /// Reads the model's parameters and binds them by name. With accept =
  /// false, a removed or reshaped parameter throws (nothing changes).
  void bind(bool accept) {
    std::vector<nn::ParameterRef> refs = model_->named_parameters();
    if (filter_) std::erase_if(refs, [&](const nn::ParameterRef& p) { return !filter_(p.name); });

    // Every step of an unedited model: same names and shapes in the same order.
    const bool same = refs.size() == bound_.size() &&
                      std::equal(refs.begin(), refs.end(), bound_.begin(), [](auto& r, auto& b) {
                        return r.name == b.ref.name && r.value->shape() == b.state.shape;
                      });
    if (same) {
      for (std::size_t i = 0; i < refs.size(); ++i) {
        Bound& b = bound_[i];
        b.ref.value = refs[i].value;
        b.ref.grad = refs[i].grad;
        b.ref.layout = refs[i].layout;
        b.decay = decay_of(*refs[i].value);
      }
      return;
    }

    // Edited: match by name (in order where the order is kept), report what
    // cannot carry its state over before changing anything.
    std::vector<std::size_t> match(refs.size(), npos);
    std::vector<bool> taken(bound_.size(), false);
    std::string problems;
    std::size_t cursor = 0;
    for (std::size_t i = 0; i < refs.size(); ++i) {
      std::size_t j =
          cursor < bound_.size() && !taken[cursor] && bound_[cursor].ref.name == refs[i].name
              ? cursor
              : npos;
      for (std::size_t k = 0; j == npos && k < bound_.size(); ++k)
        if (!taken[k] && bound_[k].ref.name == refs[i].name) j = k;
      if (j == npos) continue;
      taken[j] = true;
      match[i] = j;
      cursor = j + 1;
      if (!(refs[i].value->shape() == bound_[j].state.shape))
        problems += detail::concat(problems.empty() ? "" : "; ", "parameter '", refs[i].name,
                                   "' changed shape from ", bound_[j].state.shape.str(), " to ",
                                   refs[i].value->shape().str());
    }
    for (std::size_t k = 0; k < bound_.size(); ++k)
      if (!taken[k])
        problems += detail::concat(problems.empty() ? "" : "; ", "parameter '", bound_[k].ref.name,
                                   "' was removed from the model");
    if (!accept && !problems.empty())
      throw ValueError(detail::concat(
          name(), ": the model changed since the optimizer last bound its parameters: ", problems,
          ". Call rebind() to accept the model's current parameters (removed ones lose their ",
          "optimizer state, reshaped ones start afresh)"));

    std::vector<Bound> next;
    next.reserve(refs.size());
    for (std::size_t i = 0; i < refs.size(); ++i) {
      Bound b{refs[i], decay_of(*refs[i].value), {}};
      const std::size_t j = match[i];
      if (j != npos && refs[i].value->shape() == bound_[j].state.shape)
        b.state = std::move(bound_[j].state);
      else
        b.state.shape = refs[i].value->shape();
      next.push_back(std::move(b));
    }
    bound_ = std::move(next);
  }

  nn::Module* model_;
  ParameterFilter filter_;
  std::vector<Bound> bound_;
  float lr_;
  float weight_decay_;
  DecayPolicy policy_;
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
/// (buf = g on the parameter's first step); g = nesterov ? g + momentum*buf :
/// buf; p -= lr*g.
class Sgd : public Optimizer {
 public:
  Sgd(nn::Module& model, const SgdOptions& o, ParameterFilter filter = {})
      : Optimizer(model, o.lr, o.weight_decay, o.decay_policy, std::move(filter)), opt_(o) {
    require(!o.nesterov || (o.momentum > 0.f && o.dampening == 0.f),
            "SGD: Nesterov momentum requires momentum > 0 and zero dampening");
  }
  std::string_view name() const override { return "sgd"; }
  float momentum() const { return opt_.momentum; }
  bool set_momentum(float m) override {
    require(m >= 0.f && m < 1.f && (!opt_.nesterov || m > 0.f), "SGD: momentum must be in ",
            opt_.nesterov ? "(0, 1) with Nesterov" : "[0, 1)", ", got ", m);
    opt_.momentum = m;
    return true;
  }

 protected:
  void update(Tensor<float>& value, const Tensor<float>& grad, float wd,
              ParamState& state) override {
    float* p = value.data();
    const float* g = grad.data();
    const float lr = this->lr(), mu = opt_.momentum, damp = 1.f - opt_.dampening;
    if (mu == 0.f) {
      for_elements(value.numel(), [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t k = b; k < e; ++k) p[k] -= lr * (g[k] + wd * p[k]);
      });
      return;
    }
    const bool first = state.momentum_buffer.empty();
    if (first) state.momentum_buffer = Tensor<float>(value.shape());
    float* buf = state.momentum_buffer.data();
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
/// The bias correction uses each parameter's own step count (the optimizer's
/// step count for parameters bound from the start).
class Adam : public Optimizer {
 public:
  /// decoupled must be a bool (a lambda meant as the filter must not convert to it).
  template <std::same_as<bool> B = bool>
  Adam(nn::Module& model, const AdamOptions& o, B decoupled = false, ParameterFilter filter = {})
      : Optimizer(model, o.lr, o.weight_decay, o.decay_policy, std::move(filter)),
        opt_(o),
        decoupled_(decoupled) {
    require(o.beta1 >= 0.f && o.beta1 < 1.f && o.beta2 >= 0.f && o.beta2 < 1.f && o.eps > 0.f,
            "Adam: need 0 <= beta1, beta2 < 1 and eps > 0");
  }
  Adam(nn::Module& model, const AdamOptions& o, ParameterFilter filter)
      : Adam(model, o, false, std::move(filter)) {}
  std::string_view name() const override { return decoupled_ ? "adamw" : "adam"; }
  float beta1() const { return opt_.beta1; }
  bool set_momentum(float beta1) override {
    require(beta1 >= 0.f && beta1 < 1.f, name(), ": beta1 must be in [0, 1), got ", beta1);
    opt_.beta1 = beta1;
    return true;
  }

 protected:
  void update(Tensor<float>& value, const Tensor<float>& grad, float wd,
              ParamState& state) override {
    if (state.exp_avg.empty()) {
      state.exp_avg = Tensor<float>(value.shape());
      state.exp_avg_sq = Tensor<float>(value.shape());
    }
    float* p = value.data();
    const float* g = grad.data();
    float* m = state.exp_avg.data();
    float* v = state.exp_avg_sq.data();
    const double t = static_cast<double>(state.steps);
    const float bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(opt_.beta1), t));
    const float bc2_sqrt =
        static_cast<float>(std::sqrt(1.0 - std::pow(static_cast<double>(opt_.beta2), t)));
    const float lr = this->lr(), b1 = opt_.beta1, b2 = opt_.beta2, eps = opt_.eps;
    const float step_size = lr / bc1;
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
};

/// AdamW: Adam with decoupled weight decay (PyTorch's default decay is 1e-2).
class AdamW : public Adam {
 public:
  AdamW(nn::Module& model, const AdamOptions& o, ParameterFilter filter = {})
      : Adam(model, o, true, std::move(filter)) {}
};

}  // namespace compressor::train
