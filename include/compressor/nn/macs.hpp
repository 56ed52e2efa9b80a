// Multiply-accumulates of a model's convolutions and linear layers for one
// forward pass, counted from the shapes the layers actually produce: every
// output element of a layer with weights takes weight.numel() / out_channels
// MACs (kh * kw * in_channels for a conv, in_features for a linear layer).
// BatchNorm, activations, pooling and adds are not counted (they are a few
// percent at most and not what pruning removes).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "compressor/core/tensor.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

namespace macs_internal {

/// An output hook that only records the elements of the tensor it sees.
class ElementCounter : public Module {
 public:
  explicit ElementCounter(std::int64_t& out) : out_(out) {}
  std::string_view type_name() const override { return "ElementCounter"; }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    out_ += x.numel();
    return x;
  }
  TensorView<const float> backward_impl(TensorView<const float> dy) override { return dy; }
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<ElementCounter>(out_);
  }

 private:
  std::int64_t& out_;
};

}  // namespace macs_internal

/// MACs per layer (qualified name) of one eval-mode forward of `input_shape`
/// through a copy of m (m itself is not touched). Divide by the batch size of
/// input_shape for a per-sample figure.
inline std::map<std::string, std::int64_t> layer_macs(const Module& m, const Shape& input_shape) {
  std::unique_ptr<Module> copy = m.clone();
  copy->eval();
  std::map<std::string, std::int64_t> outputs;
  std::map<std::string, std::int64_t> per_output;
  copy->visit([&](const std::string& path, Module& layer) {
    auto* w = as<WeightedLayer>(layer);
    if (w == nullptr) return;
    per_output[path] = w->weight().numel() / w->out_channels();
    // On the copy, a hook the layer had (an observer, a fake-quant: neither
    // changes shapes) gives way to the counter.
    layer.set_output_hook(std::make_unique<macs_internal::ElementCounter>(outputs[path]));
  });
  const Tensor<float> x(input_shape, 0.f);
  copy->forward(x.view());
  std::map<std::string, std::int64_t> macs;
  for (const auto& [path, n] : outputs) macs[path] = n * per_output[path];
  return macs;
}

/// Total MACs of one forward of `input_shape` (see layer_macs()).
inline std::int64_t count_macs(const Module& m, const Shape& input_shape) {
  std::int64_t total = 0;
  for (const auto& [path, n] : layer_macs(m, input_shape)) total += n;
  return total;
}

}  // namespace compressor::nn
