// Sequential (children named "0", "1", ... as in torch.nn.Sequential) and
// Flatten ((N, ...) -> (N, rest), a view: no copy).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "compressor/nn/module.hpp"

namespace compressor::nn {

class Sequential : public Module {
 public:
  Sequential() = default;

  std::string_view type_name() const override { return "Sequential"; }

  /// Appends m under the next index name; returns a reference to it.
  template <class M>
  M& add(std::unique_ptr<M> m) {
    return register_module(std::to_string(num_children()), std::move(m));
  }
  template <class M, class... Args>
  M& emplace(Args&&... args) {
    return add(std::make_unique<M>(std::forward<Args>(args)...));
  }
  /// Appends m under an explicit name (for models whose PyTorch names are not indices).
  template <class M>
  M& add(std::string name, std::unique_ptr<M> m) {
    return register_module(std::move(name), std::move(m));
  }

  void set_input_grad(bool on) override {
    Module::set_input_grad(on);
    if (num_children() > 0) child(0).set_input_grad(on);
  }

  TensorView<const float> forward(TensorView<const float> x) override {
    for (std::size_t i = 0; i < num_children(); ++i) x = child(i).forward(x);
    return x;
  }

  TensorView<const float> backward(TensorView<const float> g) override {
    for (std::size_t i = num_children(); i-- > 0;) g = child(i).backward(g);
    return g;
  }
};

class Flatten : public Module {
 public:
  std::string_view type_name() const override { return "Flatten"; }

  TensorView<const float> forward(TensorView<const float> x) override {
    require<ShapeError>(x.rank() >= 1, "Flatten: input of rank 0");
    in_shape_ = x.shape();
    const std::int64_t n = x.dim(0);
    return x.reshape(Shape{n, n ? x.numel() / n : 0});
  }

  TensorView<const float> backward(TensorView<const float> g) override {
    if (!input_grad()) return {};
    return g.reshape(in_shape_);
  }

 private:
  Shape in_shape_;
};

}  // namespace compressor::nn
