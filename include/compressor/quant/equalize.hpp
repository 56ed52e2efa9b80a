// Cross-layer equalization (Nagel et al. 2019, "Data-free quantization
// through weight equalization and bias correction", section 4.1).
//
// For a pair of layers y = W2 f(W1 x + b1) with f positive homogeneous per
// channel (ReLU, max pool, a folded BN's Identity: nn::ScaleEquivariant),
// scaling output channel i of layer 1 by 1/s_i and input channel i of layer 2
// by s_i (s_i > 0) leaves y unchanged. With r1_i the range (max |w|) of
// layer 1's output channel i and r2_i that of layer 2's input channel i,
// s_i = sqrt(r1_i / r2_i) makes both sqrt(r1_i * r2_i): the channels of a
// layer get comparable ranges, so one channel's outliers stop dictating the
// grid of its neighbours (per-tensor activations downstream, and layer 2's
// rows, whose per-output-channel scale is set by the largest input channel).
// A chain (conv0 -> conv1 -> conv2) is equalized by sweeping over its pairs
// until the scales settle. The pairs are the ones the composites declare
// (nn::Module::equalization_pairs()), so only after BN folding do they
// exist; prepare_ptq() runs this (PtqConfig::cross_layer_equalization) after
// folding and before any observer sees the model.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::quant {

struct EqualizeOptions {
  int max_sweeps = 32;      ///< passes over all pairs at most
  double tolerance = 1e-4;  ///< stop when every |log s_i| of a sweep is below this
};

/// What equalize_cross_layer() did.
struct EqualizationReport {
  std::vector<std::pair<std::string, std::string>> pairs;  ///< qualified names
  int sweeps = 0;
  double last_max_log_scale = 0;  ///< max |log s_i| of the last sweep
};

namespace internal {

/// Per output channel: max |w| over the rest of the row (axis 0).
inline std::vector<double> output_channel_ranges(nn::WeightedLayer& w) {
  const Tensor<float>& t = w.weight();
  const std::int64_t c = t.dim(0), per = t.numel() / c;
  std::vector<double> r(static_cast<std::size_t>(c), 0.0);
  for (std::int64_t o = 0; o < c; ++o)
    for (std::int64_t k = 0; k < per; ++k)
      r[static_cast<std::size_t>(o)] =
          std::max(r[static_cast<std::size_t>(o)], std::abs(static_cast<double>(t[o * per + k])));
  return r;
}

/// Per input channel (the last weight axis, OHWI or (out, in)): max |w|.
inline std::vector<double> input_channel_ranges(nn::WeightedLayer& w) {
  const Tensor<float>& t = w.weight();
  const std::int64_t c = t.dim(t.rank() - 1), rows = t.numel() / c;
  std::vector<double> r(static_cast<std::size_t>(c), 0.0);
  for (std::int64_t k = 0; k < rows; ++k)
    for (std::int64_t i = 0; i < c; ++i)
      r[static_cast<std::size_t>(i)] =
          std::max(r[static_cast<std::size_t>(i)], std::abs(static_cast<double>(t[k * c + i])));
  return r;
}

inline nn::WeightedLayer& equalizable(nn::Module& root, const std::string& path) {
  nn::Module* m = root.find(path);
  require(m != nullptr, "cross-layer equalization: no module named '", path, "'");
  auto& w = nn::require_capability<nn::WeightedLayer>(*m, "a layer with weights", path);
  require(w.out_axis() == 0 && w.in_axis() == w.weight().rank() - 1, "cross-layer equalization: '",
          path, "' has output channels on weight axis ", w.out_axis(),
          " and input channels on axis ", w.in_axis(), "; expected 0 and the last");
  return w;
}

/// One equalization step of a pair; returns max |log s_i|.
inline double equalize_pair(nn::WeightedLayer& a, nn::WeightedLayer& b, const std::string& who) {
  require<ShapeError>(a.out_channels() == b.in_channels(), "cross-layer equalization: ", who,
                      ": layer 1 has ", a.out_channels(), " output channels, layer 2 ",
                      b.in_channels(), " input channels");
  const std::vector<double> r1 = output_channel_ranges(a), r2 = input_channel_ranges(b);
  const std::int64_t c = a.out_channels();
  std::vector<double> s(static_cast<std::size_t>(c), 1.0);
  double worst = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    // A dead channel (all zero on either side) keeps its scale.
    if (r1[i] > 0 && r2[i] > 0 && std::isfinite(r1[i]) && std::isfinite(r2[i]))
      s[i] = std::sqrt(r1[i] / r2[i]);
    worst = std::max(worst, std::abs(std::log(s[i])));
  }
  Tensor<float>& w1 = a.weight();
  const std::int64_t per = w1.numel() / c;
  for (std::int64_t o = 0; o < c; ++o) {
    const double inv = 1.0 / s[static_cast<std::size_t>(o)];
    float* row = w1.data() + o * per;
    for (std::int64_t k = 0; k < per; ++k) row[k] = static_cast<float>(row[k] * inv);
    if (a.has_bias()) a.bias().data()[o] = static_cast<float>(a.bias()[o] * inv);
  }
  Tensor<float>& w2 = b.weight();
  const std::int64_t rows = w2.numel() / c;
  for (std::int64_t k = 0; k < rows; ++k)
    for (std::int64_t i = 0; i < c; ++i)
      w2.data()[k * c + i] = static_cast<float>(w2[k * c + i] * s[static_cast<std::size_t>(i)]);
  return worst;
}

}  // namespace internal

/// The equalizable pairs the composites of root declare, with qualified names
/// (nn::Module::equalization_pairs()), in tree order.
inline std::vector<std::pair<std::string, std::string>> equalization_pairs(nn::Module& root) {
  std::vector<std::pair<std::string, std::string>> pairs;
  root.visit([&](const std::string& path, nn::Module& m) {
    const std::string pre = path.empty() ? "" : path + ".";
    for (const auto& [a, b] : m.equalization_pairs()) pairs.emplace_back(pre + a, pre + b);
  });
  return pairs;
}

/// Equalizes every declared pair of root in place, sweeping until the scales
/// settle (options). The function of the model is unchanged up to float
/// rounding. Call it after BN folding (before, no pair is declared).
inline EqualizationReport equalize_cross_layer(nn::Module& root, const EqualizeOptions& o = {}) {
  require(o.max_sweeps > 0 && o.tolerance >= 0, "equalize_cross_layer: max_sweeps must be ",
          "positive and tolerance non-negative, got ", o.max_sweeps, " and ", o.tolerance);
  EqualizationReport rep;
  rep.pairs = equalization_pairs(root);
  if (rep.pairs.empty()) return rep;
  std::vector<std::pair<nn::WeightedLayer*, nn::WeightedLayer*>> layers;
  for (const auto& [a, b] : rep.pairs)
    layers.emplace_back(&internal::equalizable(root, a), &internal::equalizable(root, b));
  for (rep.sweeps = 1; rep.sweeps <= o.max_sweeps; ++rep.sweeps) {
    rep.last_max_log_scale = 0;
    for (std::size_t i = 0; i < layers.size(); ++i)
      rep.last_max_log_scale = std::max(
          rep.last_max_log_scale,
          internal::equalize_pair(*layers[i].first, *layers[i].second,
                                  "'" + rep.pairs[i].first + "' -> '" + rep.pairs[i].second + "'"));
    if (rep.last_max_log_scale <= o.tolerance) break;
  }
  rep.sweeps = std::min(rep.sweeps, o.max_sweeps);
  return rep;
}

}  // namespace compressor::quant
