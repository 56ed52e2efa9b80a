// Module: the base of every layer and model. A module computes forward(x),
// caches what backward needs, and backward(dy) returns dx while accumulating
// parameter gradients. Modules own their output and gradient buffers (reused
// across calls, so a training step allocates nothing in steady state); the
// views they return stay valid until the next forward/backward call.
//
// Modules form a tree of named children. Parameter and buffer names follow
// PyTorch's state_dict ("layer2.0.conv1.weight"), and visit()/replace() walk
// and edit the tree by those names: pruning and quantization use them instead
// of casts. forward()/backward() are not virtual: they run the layer's
// forward_impl()/backward_impl() and then its output hook, an optional module
// (an observer or a fake-quant, child "activation_post_process" as in
// PyTorch) that sees, and may transform, the module's output. clone() makes a
// deep copy of a subtree (structure, parameters, buffers, modes, hooks).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include "compressor/core/dtype.hpp"
#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/nn/init.hpp"

namespace compressor::nn {

/// How a tensor is laid out in memory relative to PyTorch's layout.
enum class Layout : std::uint8_t {
  same,  ///< identical to PyTorch's (biases, Linear weights, BN vectors)
  ohwi,  ///< conv weight stored (O, KH, KW, I); PyTorch stores (O, I, KH, KW)
};

/// A trainable tensor and its gradient, with its qualified name.
struct ParameterRef {
  std::string name;
  Tensor<float>* value;
  Tensor<float>* grad;
  Layout layout;
};

/// A non-trainable tensor (running statistics, counters) of any dtype.
struct BufferRef {
  std::string name;
  DType dtype;
  void* tensor;  // Tensor<T>* with dtype_of<T>() == dtype
  Layout layout;

  template <TensorElement T>
  Tensor<T>& as() const {
    require(dtype_of<T>() == dtype, "buffer '", name, "' has dtype ", dtype_name(dtype), ", not ",
            dtype_name(dtype_of<T>()));
    return *static_cast<Tensor<T>*>(tensor);
  }
};

/// Each module's own training flag by qualified name (Module::save_modes()).
using ModeSnapshot = std::vector<std::pair<std::string, bool>>;

/// What kind of op produces a quantization point (docs/quantization.md).
enum class PointKind : std::uint8_t {
  input,          ///< the model input, before the first layer
  conv,           ///< a conv(+BN)(+ReLU) output
  add,            ///< a residual add(+ReLU) output
  pool,           ///< a global average pool output
  temporal_pool,  ///< the pooling over a clip's frames
  output,         ///< the head output (the model's result)
};

/// A tensor that gets its own quantization parameters in the int8 model: the
/// output of the module at `name` (with its output hook, if any).
struct QuantPoint {
  std::string name;
  PointKind kind;
  bool relu = false;  ///< the producer ends in a ReLU (a clamp in the int8 epilogue)
};

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  /// The class name as PyTorch would print it ("Conv2d", "BatchNorm2d").
  virtual std::string_view type_name() const = 0;

  /// Computes the output (forward_impl, then the output hook); the returned
  /// view stays valid until the next call. The input must stay alive and
  /// unchanged until backward() has run.
  TensorView<const float> forward(TensorView<const float> x) {
    const auto y = forward_impl(x);
    return hook_ ? hook_->forward(y) : y;
  }

  /// Given dL/d(output) of the last forward(), accumulates parameter gradients
  /// and returns dL/d(input) (empty when input gradients are switched off).
  /// Then, for a module with parameters of its own, calls the gradient-ready
  /// hook (set_gradient_ready_hook) with it.
  TensorView<const float> backward(TensorView<const float> grad_out) {
    const auto g = backward_impl(hook_ ? hook_->backward(grad_out) : grad_out);
    if (grad_ready_ && !params_.empty()) (*grad_ready_)(*this);
    return g;
  }

  /// Called with a module right after its backward() has accumulated the
  /// gradients of its own parameters, which are final for the step then
  /// (every module runs once per forward): data-parallel training starts
  /// reducing them while backward goes on (distributed::GradientAverager).
  using GradientReadyHook = std::function<void(Module&)>;
  /// Sets h (null: none) on this module and every descendant; not copied by
  /// clone(), and a module added later has none until this is called again.
  void set_gradient_ready_hook(const std::shared_ptr<const GradientReadyHook>& h) {
    visit([&](const std::string&, Module& m) { m.grad_ready_ = h; });
  }

  /// Sets training mode here and in every descendant.
  void train(bool on = true) {
    visit([on](const std::string&, Module& m) { m.set_own_mode(on); });
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Each module's own mode, by qualified name, to be put back later with
  /// restore_modes() (the Trainer does so around fit() and evaluate()).
  ModeSnapshot save_modes() {
    ModeSnapshot s;
    visit([&](const std::string& path, Module& m) { s.emplace_back(path, m.training_); });
    return s;
  }
  /// Gives every module named in s its saved mode; modules added since keep theirs.
  void restore_modes(const ModeSnapshot& s) {
    std::size_t i = 0;
    visit([&](const std::string& path, Module& m) {
      // Same tree: the names come in the same order. Edited: search.
      if (i < s.size() && s[i].first == path) {
        m.set_own_mode(s[i++].second);
        return;
      }
      for (const auto& [name, on] : s)
        if (name == path) {
          m.set_own_mode(on);
          return;
        }
    });
  }

  /// Freezes (or unfreezes) this module and every descendant. What frozen
  /// means is the layer's: BatchNorm2d stops updating its running statistics
  /// and normalises with them, an observer stops observing. The flag is
  /// independent of train()/eval() and survives both.
  void freeze(bool on = true) {
    visit([on](const std::string&, Module& m) {
      if (m.frozen_ == on) return;
      m.frozen_ = on;
      m.on_frozen_changed();
    });
  }
  void unfreeze() { freeze(false); }
  bool is_frozen() const { return frozen_; }

  /// Whether this module's forward or backward, in its current mode, joins a
  /// collective reduction over the replicas of data-parallel training
  /// (synchronised BatchNorm, an observer reducing its ranges): every replica
  /// must then run forward and backward in every step, which a replica with
  /// an empty share of a batch cannot (Trainer::step checks).
  virtual bool reduces_across_replicas() const { return false; }

  /// Whether backward() computes dL/d(input). The first layer of a network
  /// switches it off: nothing needs the gradient of the data. An output hook
  /// always passes its gradient on.
  virtual void set_input_grad(bool on) { input_grad_ = on; }
  bool input_grad() const { return input_grad_; }

  // ---- the module tree -------------------------------------------------------

  std::size_t num_children() const { return children_.size(); }
  const std::string& child_name(std::size_t i) const { return children_.at(i).first; }
  Module& child(std::size_t i) const { return *children_.at(i).second; }
  /// The direct child with this name; throws ValueError naming it if absent.
  Module& child(std::string_view name) const {
    if (Module* m = find_child(name)) return *m;
    throw ValueError(detail::concat(type_name(), ": no child named '", name, "'"));
  }
  /// The direct child with this name, or nullptr.
  Module* find_child(std::string_view name) const {
    for (const auto& [n, c] : children_)
      if (n == name) return c.get();
    if (hook_ && name == kHookName) return hook_.get();
    return nullptr;
  }

  /// Calls fn(qualified_name, module) for this module (named prefix) and every
  /// descendant, parents before children, in registration order; an output
  /// hook comes after the module's children, as child "activation_post_process".
  void visit(const std::function<void(const std::string&, Module&)>& fn,
             const std::string& prefix = "") {
    fn(prefix, *this);
    for (auto& [name, child] : children_) child->visit(fn, join(prefix, name));
    if (hook_) hook_->visit(fn, join(prefix, std::string(kHookName)));
  }

  /// The module at a dotted path ("layer1.0.conv1"), or nullptr.
  Module* find(std::string_view path) const {
    Module* m = const_cast<Module*>(this);
    while (m != nullptr && !path.empty()) {
      const auto dot = path.find('.');
      m = m->find_child(path.substr(0, dot));
      path = dot == std::string_view::npos ? std::string_view{} : path.substr(dot + 1);
    }
    return m;
  }

  /// Replaces the module at path with m and returns the old one. The new
  /// subtree takes the old module's training mode and input-gradient switch
  /// (through the virtual set_input_grad, so composites pass it on). Used to
  /// swap train-time types for deploy-time ones (BatchNorm -> Identity after
  /// folding, a conv for one with fewer channels, ...). An optimizer built on
  /// the model rebinds by name at its next step.
  std::unique_ptr<Module> replace(std::string_view path, std::unique_ptr<Module> m) {
    require(m != nullptr, "replace('", path, "'): null module");
    const auto dot = path.rfind('.');
    Module* parent = dot == std::string_view::npos ? this : find(path.substr(0, dot));
    const std::string_view leaf = dot == std::string_view::npos ? path : path.substr(dot + 1);
    require(parent != nullptr, "replace: no module named '", path, "'");
    auto adopt = [&](std::unique_ptr<Module>& slot) {
      m->train(slot->training_);
      m->set_input_grad(slot->input_grad_);
      return std::exchange(slot, std::move(m));
    };
    for (auto& [name, child] : parent->children_)
      if (name == leaf) return adopt(child);
    if (leaf == kHookName && parent->hook_) return adopt(parent->hook_);
    throw ValueError(detail::concat("replace: no module named '", path, "'"));
  }

  // ---- output hook -------------------------------------------------------------

  /// Name of the output hook in the tree and in parameter names, as in PyTorch.
  static constexpr std::string_view kHookName = "activation_post_process";

  /// Attaches h to this module's output: forward() returns h.forward(y) and
  /// backward() passes the gradient through h.backward() first. h takes this
  /// module's mode; it always computes its input gradient. Returns the hook it
  /// replaces (or null); a null h removes the hook.
  std::unique_ptr<Module> set_output_hook(std::unique_ptr<Module> h) {
    if (h) {
      h->train(training_);
      h->set_input_grad(true);
    }
    return std::exchange(hook_, std::move(h));
  }
  Module* output_hook() const { return hook_.get(); }

  // ---- copies ------------------------------------------------------------------

  /// A deep copy of this module and its subtree: same types, structure,
  /// parameter and buffer values, modes, frozen flags and output hooks;
  /// gradients zero. Draws nothing from the initialisation generator.
  std::unique_ptr<Module> clone() const {
    std::unique_ptr<Module> copy;
    {
      const init::PreserveGenerator keep;
      copy = clone_shell();
    }
    const Module* made = copy.get();  // typeid(*copy) would call operator*: clang warns
    require(made != nullptr && typeid(*made) == typeid(*this), "clone: ", type_name(),
            " does not override clone_shell() with a module of its own type");
    require(copy->children_.empty() && copy->params_.size() == params_.size() &&
                copy->buffers_.size() == buffers_.size(),
            "clone: ", type_name(), "::clone_shell() must return a module without children",
            " and with the same parameters and buffers");
    for (const auto& [name, c] : children_) copy->children_.emplace_back(name, c->clone());
    if (hook_) copy->hook_ = hook_->clone();
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const OwnParam &from = params_[i], &to = copy->params_[i];
      require(from.name == to.name, "clone: ", type_name(), " parameter '", from.name,
              "' came back as '", to.name, "'");
      *to.value = *from.value;
      to.grad->resize(from.value->shape());
      to.grad->fill(0.f);
    }
    for (std::size_t i = 0; i < buffers_.size(); ++i) {
      const OwnBuffer &from = buffers_[i], &to = copy->buffers_[i];
      require(from.name == to.name && from.dtype == to.dtype, "clone: ", type_name(), " buffer '",
              from.name, "' came back as '", to.name, "'");
      copy_buffer(from, to);
    }
    copy->input_grad_ = input_grad_;
    copy->frozen_ = frozen_;
    copy->set_own_mode(training_);
    copy->on_cloned();
    return copy;
  }

  // ---- parameters --------------------------------------------------------------

  /// All parameters of this module and its descendants, with qualified names.
  std::vector<ParameterRef> named_parameters(const std::string& prefix = "") {
    std::vector<ParameterRef> out;
    visit(
        [&](const std::string& path, Module& m) {
          for (const auto& p : m.params_)
            out.push_back({join(path, p.name), p.value, p.grad, p.layout});
        },
        prefix);
    return out;
  }

  /// All buffers of this module and its descendants, with qualified names.
  std::vector<BufferRef> named_buffers(const std::string& prefix = "") {
    std::vector<BufferRef> out;
    visit(
        [&](const std::string& path, Module& m) {
          for (const auto& b : m.buffers_)
            out.push_back({join(path, b.name), b.dtype, b.tensor, b.layout});
        },
        prefix);
    return out;
  }

  /// Sets every parameter gradient to zero.
  void zero_grad() {
    for (auto& p : named_parameters()) parallel_fill(p.grad->data(), p.grad->numel(), 0.f);
  }

  /// Number of trainable scalars.
  std::int64_t num_parameters() {
    std::int64_t n = 0;
    for (auto& p : named_parameters()) n += p.value->numel();
    return n;
  }

  /// Pairs (conv child, BatchNorm child) of direct children where the BN
  /// normalises that conv's output and nothing else reads the conv's output:
  /// what fold_batchnorms() folds. Composites that know their data flow
  /// override it (Sequential: neighbours; BasicBlock: conv1/bn1, conv2/bn2).
  virtual std::vector<std::pair<std::string, std::string>> batchnorm_pairs() const { return {}; }

  /// Pairs (layer 1, layer 2) of direct children with weights where layer
  /// 1's output reaches layer 2 only through ScaleEquivariant layers without
  /// hooks (a ReLU, a max pool, a folded BN's Identity) and nothing else reads
  /// it, so scaling layer 1's output channel i by 1/s and layer 2's input
  /// channel i by s > 0 leaves the function unchanged: what cross-layer
  /// equalization (quant/equalize.hpp) equalizes. Composites that know their
  /// data flow override it (Sequential: a chain; BasicBlock: conv1 -> conv2
  /// once bn1 is folded). An unfolded BatchNorm in between is no pair.
  virtual std::vector<std::pair<std::string, std::string>> equalization_pairs() const { return {}; }

  // ---- quantization points -----------------------------------------------------

  /// Every quantization point of this subtree in data-flow order, with
  /// qualified names (docs/quantization.md lists them per model).
  std::vector<QuantPoint> quantization_points(const std::string& prefix = "") const {
    std::vector<QuantPoint> out;
    add_quantization_points(prefix, out);
    return out;
  }

  /// Appends this module's points (qualified by prefix) in data-flow order.
  /// The default: the children's, in order. Models and blocks override it.
  virtual void add_quantization_points(const std::string& prefix,
                                       std::vector<QuantPoint>& out) const {
    for (const auto& [name, c] : children_) c->add_quantization_points(join(prefix, name), out);
  }

 protected:
  virtual TensorView<const float> forward_impl(TensorView<const float> x) = 0;
  virtual TensorView<const float> backward_impl(TensorView<const float> grad_out) = 0;

  /// A module of the same type and configuration, without children, whose
  /// own parameters and buffers are registered as in this one (values are
  /// copied by clone()). Leaf layers build themselves from their options;
  /// composites build an empty shell. The default throws: the type cannot be
  /// copied.
  virtual std::unique_ptr<Module> clone_shell() const {
    throw ValueError(detail::concat(type_name(), " cannot be copied (no clone_shell())"));
  }
  /// Called on a copy made by clone() once its children, values and modes are in place.
  virtual void on_cloned() {}

  /// Registers a child under a local name; returns a reference to it.
  template <class M>
  M& register_module(std::string name, std::unique_ptr<M> m) {
    require(m != nullptr, "register_module('", name, "'): null module");
    require(find_child(name) == nullptr, type_name(), ": two children named '", name, "'");
    M& ref = *m;
    children_.emplace_back(std::move(name), std::move(m));
    return ref;
  }

  /// Registers a parameter; value and grad must be members of this module and
  /// grad is shaped like value.
  void register_parameter(std::string name, Tensor<float>& value, Tensor<float>& grad,
                          Layout layout = Layout::same) {
    grad.resize(value.shape());
    grad.fill(0.f);
    params_.push_back({std::move(name), &value, &grad, layout});
  }

  template <TensorElement T>
  void register_buffer(std::string name, Tensor<T>& t, Layout layout = Layout::same) {
    buffers_.push_back({std::move(name), dtype_of<T>(), &t, layout});
  }

  /// Called after train()/eval() changed the mode of this module.
  virtual void on_mode_changed() {}
  /// Called after freeze()/unfreeze() changed the frozen flag of this module.
  virtual void on_frozen_changed() {}

  static std::string join(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
  }

 private:
  struct OwnParam {
    std::string name;
    Tensor<float>* value;
    Tensor<float>* grad;
    Layout layout;
  };
  struct OwnBuffer {
    std::string name;
    DType dtype;
    void* tensor;
    Layout layout;
  };

  void set_own_mode(bool on) {
    training_ = on;
    on_mode_changed();
  }

  static void copy_buffer(const OwnBuffer& from, const OwnBuffer& to) {
    auto copy = [&]<TensorElement T>() {
      *static_cast<Tensor<T>*>(to.tensor) = *static_cast<const Tensor<T>*>(from.tensor);
    };
    switch (from.dtype) {
      case DType::f32:
        return copy.template operator()<float>();
      case DType::i8:
        return copy.template operator()<std::int8_t>();
      case DType::u8:
        return copy.template operator()<std::uint8_t>();
      case DType::i32:
        return copy.template operator()<std::int32_t>();
      case DType::i64:
        return copy.template operator()<std::int64_t>();
    }
  }

  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
  std::unique_ptr<Module> hook_;
  std::vector<OwnParam> params_;
  std::vector<OwnBuffer> buffers_;
  bool training_ = true;
  bool input_grad_ = true;
  bool frozen_ = false;
  std::shared_ptr<const GradientReadyHook> grad_ready_;
};

/// Throws ShapeError unless x has the given rank.
inline void check_rank(TensorView<const float> x, int rank, std::string_view who,
                       std::string_view layout) {
  if (x.rank() != rank)
    throw ShapeError(detail::concat(who, ": expected a rank-", rank, " ", layout,
                                    " input, got shape ", x.shape().str()));
}

}  // namespace compressor::nn
