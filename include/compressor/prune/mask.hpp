// Masks of unstructured pruning: per layer with weights, one flag per weight
// element (1 keep, 0 pruned), by the layer's qualified name, so they follow
// Module::replace() and the optimizers' binding by name.
//
// Sparsity is defined once: pruned weights / weights over the masked layers
// (what a target refers to: MaskSet::sparsity()); report.hpp adds the
// sparsity over all parameters of the model.
//
// A mask is applied to
//   - the weights (w *= mask): after pruning and after every optimizer step;
//   - the gradients (g *= mask): before every optimizer update;
//   - the optimizer's state for the weight (SGD's momentum buffer, Adam's
//     exp_avg and exp_avg_sq): a stale momentum would move a pruned weight.
// With all three, a pruned weight stays exactly 0 under SGD (with momentum,
// Nesterov, L2 decay), Adam and AdamW (decoupled decay scales 0 to 0).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/prune/selection.hpp"
#include "compressor/train/optimizer.hpp"

namespace compressor::prune {

struct LayerMask {
  std::string layer;               ///< qualified module name ("layer1.0.conv1")
  Shape shape;                     ///< of the layer's weight
  std::vector<std::uint8_t> keep;  ///< per weight element: 1 keep, 0 pruned
  std::int64_t pruned = 0;         ///< zeros in keep

  std::int64_t size() const { return static_cast<std::int64_t>(keep.size()); }
  double sparsity() const { return keep.empty() ? 0.0 : double(pruned) / double(size()); }
  std::string parameter() const { return layer + ".weight"; }
};

namespace detail {
/// x[i] = 0 where keep[i] == 0.
inline void mask_tensor(const LayerMask& m, Tensor<float>& x, std::string_view what) {
  require<ShapeError>(x.shape() == m.shape, "mask of '", m.layer, "': the ", what, " has shape ",
                      x.shape(), ", the mask ", m.shape,
                      " (was the layer reshaped by channel pruning after masking?)");
  float* p = x.data();
  const std::uint8_t* k = m.keep.data();
  for (std::int64_t i = 0; i < m.size(); ++i)
    if (k[i] == 0) p[i] = 0.f;
}
}  // namespace detail

class MaskSet {
 public:
  /// Adds the mask of one layer; a layer appears once.
  void add(LayerMask m) {
    require(find(m.layer) == nullptr, "MaskSet: layer '", m.layer, "' masked twice");
    require<ShapeError>(static_cast<std::int64_t>(m.keep.size()) == m.shape.numel(), "MaskSet: '",
                        m.layer, "': ", m.keep.size(), " flags for a weight of shape ", m.shape);
    m.pruned = 0;
    for (const auto k : m.keep) m.pruned += k == 0 ? 1 : 0;
    layers_.push_back(std::move(m));
  }

  const std::vector<LayerMask>& layers() const { return layers_; }
  bool empty() const { return layers_.empty(); }
  const LayerMask* find(std::string_view layer) const {
    for (const auto& m : layers_)
      if (m.layer == layer) return &m;
    return nullptr;
  }

  /// Pruned weights over the masked layers.
  std::int64_t pruned() const {
    std::int64_t n = 0;
    for (const auto& m : layers_) n += m.pruned;
    return n;
  }
  /// Weights of the masked layers.
  std::int64_t weights() const {
    std::int64_t n = 0;
    for (const auto& m : layers_) n += m.size();
    return n;
  }
  /// pruned() / weights(): the sparsity a target refers to.
  double sparsity() const { return weights() == 0 ? 0.0 : double(pruned()) / double(weights()); }

  /// Zeroes the pruned weights of model.
  void apply_to_weights(nn::Module& model) const {
    for (const auto& m : layers_)
      detail::mask_tensor(m, *weight_parameter(model, m.layer).value, "weight");
  }
  /// Zeroes the gradients of the pruned weights (before an optimizer update).
  void apply_to_gradients(nn::Module& model) const {
    for (const auto& m : layers_)
      detail::mask_tensor(m, *weight_parameter(model, m.layer).grad, "weight gradient");
  }
  /// Zeroes the optimizer's state entries (momentum buffer, Adam moments) of
  /// the pruned weights. The optimizer must be built on the masked model
  /// (parameter names as the masks'); state not allocated yet is left alone.
  void apply_to_optimizer(train::Optimizer& opt) const {
    for (const auto& m : layers_) {
      train::ParamState* s = opt.mutable_state(m.parameter());
      if (s == nullptr) continue;
      for (Tensor<float>* t : {&s->momentum_buffer, &s->exp_avg, &s->exp_avg_sq})
        if (!t->empty()) detail::mask_tensor(m, *t, "optimizer state");
    }
  }

  /// Whether every pruned weight of model is exactly 0.
  bool holds(nn::Module& model) const {
    for (const auto& m : layers_) {
      const Tensor<float>& w = *weight_parameter(model, m.layer).value;
      if (!(w.shape() == m.shape)) return false;
      for (std::int64_t i = 0; i < m.size(); ++i)
        if (m.keep[static_cast<std::size_t>(i)] == 0 && w.data()[i] != 0.f) return false;
    }
    return true;
  }

 private:
  std::vector<LayerMask> layers_;
};

}  // namespace compressor::prune
