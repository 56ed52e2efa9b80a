// Unstructured pruning policies: which single weights of the selected layers
// (selection.hpp) become 0.
//
//   magnitude (L1)  the weights of smallest |w| go first
//   random          a baseline: uniform random scores from a seeded Rng
//
// Scope: global (one ranking over all selected layers, so layers end up with
// different sparsities) or per_layer (each layer pruned to the target).
// Counting, not thresholding: a layer (or the selection, globally) of n
// weights loses exactly round(sparsity * n) of them. Ties (equal |w|, e.g.
// weights that are already 0) are broken by position: layer order, then the
// element's index in the weight tensor, so the result is deterministic and
// the requested sparsity is met exactly whatever the values.
//
// Given the previous masks (gradual and iterative pruning), the weights
// pruned before rank first, so masks only grow: a weight pruned once stays
// pruned.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/rng.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/prune/mask.hpp"
#include "compressor/prune/selection.hpp"

namespace compressor::prune {

enum class Scope : std::uint8_t { global, per_layer };
enum class Criterion : std::uint8_t { magnitude, random };

struct UnstructuredOptions {
  double sparsity = 0.5;  ///< target: pruned / weights over the selected layers, in [0, 1)
  Scope scope = Scope::global;
  Criterion criterion = Criterion::magnitude;
  LayerSelection layers{};  ///< which layers with weights (default: all)
  std::uint64_t seed = 0;   ///< Criterion::random
};

namespace detail {

/// Number of elements to prune out of n at sparsity s: round(s * n).
inline std::int64_t prune_count(double s, std::int64_t n) {
  return static_cast<std::int64_t>(std::llround(s * static_cast<double>(n)));
}

/// Indices (into scores) of the k smallest scores, ties by index.
inline std::vector<std::uint8_t> smallest_k_mask(const std::vector<float>& scores, std::int64_t k) {
  std::vector<std::uint32_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0u);
  const auto less = [&](std::uint32_t a, std::uint32_t b) {
    return scores[a] < scores[b] || (scores[a] == scores[b] && a < b);
  };
  std::vector<std::uint8_t> keep(scores.size(), 1);
  if (k <= 0) return keep;
  std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), less);
  for (std::int64_t i = 0; i < k; ++i) keep[idx[static_cast<std::size_t>(i)]] = 0;
  return keep;
}

}  // namespace detail

/// The masks of the policy o on model (weights not changed); with previous,
/// the weights it prunes rank first. Throws ValueError naming the option or
/// layer on bad input (sparsity outside [0, 1), a pattern matching nothing,
/// a non-finite weight).
inline MaskSet unstructured_masks(nn::Module& model, const UnstructuredOptions& o,
                                  const MaskSet* previous = nullptr) {
  check_ratio(o.sparsity, "UnstructuredOptions::sparsity");
  const std::vector<std::string> layers = select_layers(model, o.layers, "unstructured pruning");
  Rng rng(o.seed);
  // Scores of every selected weight, layer after layer: |w| or uniform [0, 1);
  // previously pruned weights score -1.
  std::vector<float> scores;
  std::vector<std::pair<std::int64_t, Shape>> spans;  // (begin, shape) per layer
  for (const auto& name : layers) {
    const Tensor<float>& w = *weight_parameter(model, name).value;
    require(static_cast<std::uint64_t>(scores.size()) + static_cast<std::uint64_t>(w.numel()) <
                (std::uint64_t{1} << 32),
            "unstructured pruning: more than 2^32 weights selected");
    const LayerMask* prev = previous ? previous->find(name) : nullptr;
    require<ShapeError>(prev == nullptr || prev->shape == w.shape(), "unstructured pruning: '",
                        name, "': the previous mask has shape ", prev ? prev->shape.str() : "",
                        ", the weight ", w.shape());
    spans.emplace_back(static_cast<std::int64_t>(scores.size()), w.shape());
    for (std::int64_t i = 0; i < w.numel(); ++i) {
      const float v = w.data()[i];
      require(std::isfinite(v), "unstructured pruning: weight ", i, " of '", name, "' is ", v);
      float s =
          o.criterion == Criterion::magnitude ? std::abs(v) : static_cast<float>(rng.uniform());
      if (prev != nullptr && prev->keep[static_cast<std::size_t>(i)] == 0) s = -1.f;
      scores.push_back(s);
    }
  }
  MaskSet out;
  auto emit = [&](std::size_t l, std::vector<std::uint8_t> keep) {
    out.add({layers[l], spans[l].second, std::move(keep), 0});
  };
  if (o.scope == Scope::global) {
    const auto keep = detail::smallest_k_mask(
        scores, detail::prune_count(o.sparsity, static_cast<std::int64_t>(scores.size())));
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto b = keep.begin() + spans[l].first;
      emit(l, std::vector<std::uint8_t>(b, b + spans[l].second.numel()));
    }
  } else {
    for (std::size_t l = 0; l < layers.size(); ++l) {
      const auto b = scores.begin() + spans[l].first;
      const std::vector<float> s(b, b + spans[l].second.numel());
      emit(l, detail::smallest_k_mask(
                  s, detail::prune_count(o.sparsity, static_cast<std::int64_t>(s.size()))));
    }
  }
  return out;
}

/// unstructured_masks(), then zeroes the pruned weights; returns the masks
/// (hand them to MaskedTraining to fine-tune).
inline MaskSet prune_unstructured(nn::Module& model, const UnstructuredOptions& o,
                                  const MaskSet* previous = nullptr) {
  MaskSet m = unstructured_masks(model, o, previous);
  m.apply_to_weights(model);
  return m;
}

}  // namespace compressor::prune
