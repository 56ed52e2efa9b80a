// Capabilities: small interfaces through which library code reaches layers
// by what they can do rather than by their concrete type. Pruning,
// quantization, initialisation and BN folding use them; as<C>() below is the
// one place that looks a capability up (the only cast in the layer code).
//
//   WeightedLayer  a layer with a weight and an optional bias: Conv2d, Linear
//   Normalization  per-channel affine normalisation with running statistics:
//                  BatchNorm2d
//   JoinLayer      a two-input join (a residual add): AddReLU
//   ScaleEquivariant  commutes with a positive per-channel scale: ReLU, max
//                  and average pooling, Identity
//   PlannedModel   a model with a ChannelPlan: CifarCnn, ResNet18, EfRegressor
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/tensor.hpp"
#include "compressor/nn/channel_plan.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

/// Spatial geometry of a weighted layer (a Linear is a 1x1 kernel).
struct KernelGeometry {
  std::int64_t kh = 1, kw = 1, stride = 1, padding = 0;
};

/// A layer whose output channels are its own: one with dense weights
/// (WeightedLayer) or a sparse deploy-time layer (prune::SparseLayer). A
/// model's channel plan lists every such layer.
class ChannelProducer {
 public:
  virtual ~ChannelProducer() = default;
  virtual std::int64_t out_channels() const = 0;
};

/// A layer y = W * x (+ b) with output channels along one weight axis and
/// input channels along another.
class WeightedLayer : public ChannelProducer {
 public:
  virtual Tensor<float>& weight() = 0;
  virtual bool has_bias() const = 0;
  /// The bias (shape (out_channels)); empty when has_bias() is false.
  virtual Tensor<float>& bias() = 0;
  /// Adds a zero bias parameter named "bias" if there is none (BN folding).
  virtual void enable_bias() = 0;

  virtual std::int64_t in_channels() const = 0;
  /// Weight axis of the output channels (0 for both OHWI and (out, in)).
  virtual int out_axis() const { return 0; }
  /// Weight axis of the input channels: 3 for OHWI conv weights, 1 for Linear.
  virtual int in_axis() const = 0;
  virtual KernelGeometry kernel() const = 0;

  /// A new layer of the same type and geometry holding only the given output
  /// channels (in that order; bias likewise). Throws on an index out of range,
  /// a repeated index or an empty list.
  virtual std::unique_ptr<Module> select_output_channels(
      std::span<const std::int64_t> keep) const = 0;
  /// A new layer holding only the given input channels.
  virtual std::unique_ptr<Module> select_input_channels(
      std::span<const std::int64_t> keep) const = 0;
};

/// Per-channel normalisation y = (x - mean) / sqrt(var + eps) * gamma + beta.
class Normalization {
 public:
  virtual ~Normalization() = default;

  virtual std::int64_t channels() const = 0;
  virtual Tensor<float>& weight() = 0;  ///< gamma
  virtual Tensor<float>& bias() = 0;    ///< beta
  virtual Tensor<float>& running_mean() = 0;
  virtual Tensor<float>& running_var() = 0;
  virtual float eps() const = 0;
  virtual float momentum() const = 0;
  virtual void set_momentum(float m) = 0;
  virtual void reset_running_stats() = 0;
  /// A new layer holding only the given channels (parameters and statistics).
  virtual std::unique_ptr<Module> select_channels(std::span<const std::int64_t> keep) const = 0;
};

/// A module with two inputs of one shape (a residual join): forward(a, b).
/// Its Module::backward(dy) returns the gradient of the sum, which is the
/// gradient of both inputs.
class JoinLayer {
 public:
  virtual ~JoinLayer() = default;
  virtual TensorView<const float> forward(TensorView<const float> a, TensorView<const float> b) = 0;
};

/// A layer f with f(x * s) = f(x) * s for every positive per-channel scale s
/// (channels on the last axis, kept by f): ReLU, max pool, global average
/// pool, Identity. Cross-layer equalization moves a scale through such
/// layers (Module::equalization_pairs()).
class ScaleEquivariant {
 public:
  virtual ~ScaleEquivariant() = default;
};

/// A model that can be rebuilt from a ChannelPlan (models/ has three). Its
/// plan is read from the live layers, so it holds after channel surgery.
class PlannedModel {
 public:
  virtual ~PlannedModel() = default;
  virtual ChannelPlan channel_plan() = 0;
};

/// The capability C of m, or nullptr: the one capability lookup.
template <class C>
C* as(Module& m) {
  return dynamic_cast<C*>(&m);
}
template <class C>
const C* as(const Module& m) {
  return dynamic_cast<const C*>(&m);
}

/// The capability C of m; throws ValueError naming the module otherwise.
template <class C>
C& require_capability(Module& m, std::string_view what, std::string_view name) {
  if (C* c = as<C>(m)) return *c;
  // Streamed piece by piece: g++ 12 reports a false -Wrestrict on "'" + std::string
  // where this is inlined.
  if (name.empty())
    throw ValueError(detail::concat("the model (", m.type_name(), ") is not ", what));
  throw ValueError(detail::concat("'", name, "' (", m.type_name(), ") is not ", what));
}

/// Whether a per-channel scale passes through m unchanged: m is
/// ScaleEquivariant and has no output hook (an observer or fake-quant would
/// see the scaled values).
inline bool passes_channel_scale(const Module& m) {
  return as<ScaleEquivariant>(m) != nullptr && m.output_hook() == nullptr;
}

/// Checks a channel selection against a count: non-empty, in range, no
/// repeats. who names the layer and axis in the error.
inline void check_channel_selection(std::span<const std::int64_t> keep, std::int64_t count,
                                    std::string_view who) {
  require(!keep.empty(), who, ": selecting no channels would leave an empty layer");
  std::vector<bool> seen(static_cast<std::size_t>(count), false);
  for (const std::int64_t i : keep) {
    require(i >= 0 && i < count, who, ": channel ", i, " out of range [0, ", count, ")");
    require(!seen[static_cast<std::size_t>(i)], who, ": channel ", i, " selected twice");
    seen[static_cast<std::size_t>(i)] = true;
  }
}

/// dst = src with only the given indices along axis (shapes of any rank).
inline void gather_axis(const Tensor<float>& src, int axis, std::span<const std::int64_t> keep,
                        Tensor<float>& dst) {
  const Shape& s = src.shape();
  std::int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= s[d];
  for (int d = axis + 1; d < s.rank(); ++d) inner *= s[d];
  std::vector<std::int64_t> dims(s.dims().begin(), s.dims().end());
  dims[static_cast<std::size_t>(axis)] = static_cast<std::int64_t>(keep.size());
  dst.resize(Shape(std::span<const std::int64_t>(dims)));
  const std::int64_t n = s[axis], k = static_cast<std::int64_t>(keep.size());
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t j = 0; j < k; ++j)
      std::copy_n(src.data() + (o * n + keep[static_cast<std::size_t>(j)]) * inner, inner,
                  dst.data() + (o * k + j) * inner);
}

/// The output channels of every layer with weights (dense or sparse) under
/// m, by qualified name, in visit order (a ChannelPlan's "channels").
inline std::vector<std::pair<std::string, std::int64_t>> weighted_channels(Module& m) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  m.visit([&](const std::string& name, Module& l) {
    if (const auto* w = as<ChannelProducer>(l)) out.emplace_back(name, w->out_channels());
  });
  return out;
}

}  // namespace compressor::nn
