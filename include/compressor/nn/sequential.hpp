// Sequential (children named "0", "1", ... as in torch.nn.Sequential) and
// Flatten ((N, ...) -> (N, rest), a view: no copy).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/nn/capabilities.hpp"
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

  /// Neighbours (a layer with weights, then a normalisation): in a chain the
  /// BN is the conv's only reader.
  std::vector<std::pair<std::string, std::string>> batchnorm_pairs() const override {
    std::vector<std::pair<std::string, std::string>> out;
    for (std::size_t i = 0; i + 1 < num_children(); ++i)
      if (as<WeightedLayer>(child(i)) && as<Normalization>(child(i + 1)))
        out.emplace_back(child_name(i), child_name(i + 1));
    return out;
  }

  /// A layer with weights, then only layers a channel scale passes through
  /// (passes_channel_scale), then a layer with weights: a chain.
  std::vector<std::pair<std::string, std::string>> equalization_pairs() const override {
    std::vector<std::pair<std::string, std::string>> out;
    for (std::size_t i = 0; i < num_children(); ++i) {
      if (!as<WeightedLayer>(child(i)) || child(i).output_hook() != nullptr) continue;
      std::size_t j = i + 1;
      while (j < num_children() && passes_channel_scale(child(j))) ++j;
      if (j < num_children() && as<WeightedLayer>(child(j)))
        out.emplace_back(child_name(i), child_name(j));
    }
    return out;
  }

  /// Children up to and including the first one with parameters get the
  /// switch; the ones after it always compute their input gradient (their
  /// predecessor's parameters need it). A parameter-free first child (the
  /// input's Identity, say) so does not make the first conv compute a
  /// gradient of the data.
  void set_input_grad(bool on) override {
    Module::set_input_grad(on);
    bool need = on;
    for (std::size_t i = 0; i < num_children(); ++i) {
      child(i).set_input_grad(need);
      need = need || !child(i).named_parameters().empty();
    }
  }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    for (std::size_t i = 0; i < num_children(); ++i) x = child(i).forward(x);
    return x;
  }

  /// Stops where a child returned no input gradient: the children before it
  /// have no parameters that need one (see set_input_grad()).
  TensorView<const float> backward_impl(TensorView<const float> g) override {
    for (std::size_t i = num_children(); i-- > 0;) {
      g = child(i).backward(g);
      if (g.rank() == 0 && g.data() == nullptr) return {};
    }
    return g;
  }

  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<Sequential>(); }
};

class Flatten : public Module {
 public:
  std::string_view type_name() const override { return "Flatten"; }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    require<ShapeError>(x.rank() >= 1, "Flatten: input of rank 0");
    in_shape_ = x.shape();
    const std::int64_t n = x.dim(0);
    return x.reshape(Shape{n, n ? x.numel() / n : 0});
  }

  TensorView<const float> backward_impl(TensorView<const float> g) override {
    if (!input_grad()) return {};
    return g.reshape(in_shape_);
  }

  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<Flatten>(); }

 private:
  Shape in_shape_;
};

}  // namespace compressor::nn
