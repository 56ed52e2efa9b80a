// Module: the base of every layer and model. A module computes forward(x),
// caches what backward needs, and backward(dy) returns dx while accumulating
// parameter gradients. Modules own their output and gradient buffers (reused
// across calls, so a training step allocates nothing in steady state); the
// views they return stay valid until the next forward/backward call.
//
// Modules form a tree of named children. Parameter and buffer names follow
// PyTorch's state_dict ("layer2.0.conv1.weight"), and visit()/replace() walk
// and edit the tree by those names: pruning and quantization use them instead
// of casts.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/core/dtype.hpp"
#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"

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

class Module {
 public:
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  virtual ~Module() = default;

  /// The class name as PyTorch would print it ("Conv2d", "BatchNorm2d").
  virtual std::string_view type_name() const = 0;

  /// Computes the output; the returned view stays valid until the next call.
  /// The input must stay alive and unchanged until backward() has run.
  virtual TensorView<const float> forward(TensorView<const float> x) = 0;

  /// Given dL/d(output) of the last forward(), accumulates parameter gradients
  /// and returns dL/d(input) (empty when input gradients are switched off).
  virtual TensorView<const float> backward(TensorView<const float> grad_out) = 0;

  /// Sets training mode here and in every descendant.
  void train(bool on = true) {
    visit([on](const std::string&, Module& m) {
      m.training_ = on;
      m.on_mode_changed();
    });
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// Whether backward() computes dL/d(input). The first layer of a network
  /// switches it off: nothing needs the gradient of the data.
  virtual void set_input_grad(bool on) { input_grad_ = on; }
  bool input_grad() const { return input_grad_; }

  // ---- the module tree -------------------------------------------------------

  std::size_t num_children() const { return children_.size(); }
  const std::string& child_name(std::size_t i) const { return children_.at(i).first; }
  Module& child(std::size_t i) const { return *children_.at(i).second; }

  /// Calls fn(qualified_name, module) for this module (named prefix) and every
  /// descendant, parents before children, in registration order.
  void visit(const std::function<void(const std::string&, Module&)>& fn,
             const std::string& prefix = "") {
    fn(prefix, *this);
    for (auto& [name, child] : children_) child->visit(fn, join(prefix, name));
  }

  /// The module at a dotted path ("layer1.0.conv1"), or nullptr.
  Module* find(std::string_view path) {
    if (path.empty()) return this;
    const auto dot = path.find('.');
    const std::string_view head = path.substr(0, dot);
    for (auto& [name, child] : children_)
      if (name == head)
        return dot == std::string_view::npos ? child.get() : child->find(path.substr(dot + 1));
    return nullptr;
  }

  /// Replaces the module at path with m and returns the old one. Used to swap
  /// train-time types for deploy-time types (conv+BN -> folded conv, ...).
  std::unique_ptr<Module> replace(std::string_view path, std::unique_ptr<Module> m) {
    require(m != nullptr, "replace('", path, "'): null module");
    const auto dot = path.rfind('.');
    Module* parent = dot == std::string_view::npos ? this : find(path.substr(0, dot));
    const std::string_view leaf = dot == std::string_view::npos ? path : path.substr(dot + 1);
    require(parent != nullptr, "replace: no module named '", path, "'");
    for (auto& [name, child] : parent->children_)
      if (name == leaf) {
        m->training_ = child->training_;
        m->input_grad_ = child->input_grad_;
        return std::exchange(child, std::move(m));
      }
    throw ValueError(detail::concat("replace: no module named '", path, "'"));
  }

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

 protected:
  /// Registers a child under a local name; returns a reference to it.
  template <class M>
  M& register_module(std::string name, std::unique_ptr<M> m) {
    require(m != nullptr, "register_module('", name, "'): null module");
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

  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
  std::vector<OwnParam> params_;
  std::vector<OwnBuffer> buffers_;
  bool training_ = true;
  bool input_grad_ = true;
};

/// Throws ShapeError unless x has the given rank.
inline void check_rank(TensorView<const float> x, int rank, std::string_view who,
                       std::string_view layout) {
  if (x.rank() != rank)
    throw ShapeError(detail::concat(who, ": expected a rank-", rank, " ", layout,
                                    " input, got shape ", x.shape().str()));
}

}  // namespace compressor::nn
