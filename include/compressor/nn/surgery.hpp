// Surgery primitives on a module tree, by qualified name:
//
//   select_output_channels(model, "features.0", keep)  conv/linear -> fewer outputs
//   select_input_channels(model, "features.4", keep)   conv/linear -> fewer inputs
//   select_channels(model, "features.1", keep)         BatchNorm2d -> fewer channels
//   fold_batchnorm(model, "layer1.0.conv1", "layer1.0.bn1")
//   fold_batchnorms(model)                             every conv+BN pair the model declares
//
// Each swaps in a new module with replace(), so modes carry over and an
// optimizer rebinds by name at its next step. Channel selection keeps the
// listed channels in the listed order; the caller keeps neighbouring layers
// consistent (the pruning policies do that from dependency groups). Folding is
// for inference: the conv gains a bias, the BatchNorm becomes an Identity (the
// name, a quantization point, stays), and the result equals the eval-mode
// original up to float rounding.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/identity.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

namespace internal {
inline Module& at(Module& root, const std::string& path) {
  Module* m = root.find(path);
  require(m != nullptr, "no module named '", path, "' in ", root.type_name());
  return *m;
}
}  // namespace internal

/// Replaces the layer with weights at path by one with only the kept output channels.
inline void select_output_channels(Module& root, const std::string& path,
                                   std::span<const std::int64_t> keep) {
  auto& w =
      require_capability<WeightedLayer>(internal::at(root, path), "a layer with weights", path);
  root.replace(path, w.select_output_channels(keep));
}

/// Replaces the layer with weights at path by one with only the kept input channels.
inline void select_input_channels(Module& root, const std::string& path,
                                  std::span<const std::int64_t> keep) {
  auto& w =
      require_capability<WeightedLayer>(internal::at(root, path), "a layer with weights", path);
  root.replace(path, w.select_input_channels(keep));
}

/// Replaces the normalisation at path by one with only the kept channels.
inline void select_channels(Module& root, const std::string& path,
                            std::span<const std::int64_t> keep) {
  auto& n = require_capability<Normalization>(internal::at(root, path), "a normalisation", path);
  root.replace(path, n.select_channels(keep));
}

/// Folds the normalisation bn into the layer w whose output it normalises:
/// W'[o] = W[o] * s[o], b'[o] = (b[o] - mean[o]) * s[o] + beta[o] with
/// s = gamma / sqrt(running_var + eps), computed in double; w gains a bias.
/// who names the pair in errors.
inline void fold_batchnorm_into(WeightedLayer& w, Normalization& bn, std::string_view who) {
  const std::int64_t c = w.out_channels();
  require<ShapeError>(bn.channels() == c, "fold_batchnorm: ", who, ": the BatchNorm has ",
                      bn.channels(), " channels but the layer has ", c, " output channels");
  require(w.out_axis() == 0, "fold_batchnorm: ", who, ": output channels on weight axis ",
          w.out_axis(), ", expected 0");
  w.enable_bias();
  Tensor<float>& weight = w.weight();
  Tensor<float>& bias = w.bias();
  const std::int64_t per = weight.numel() / c;
  for (std::int64_t o = 0; o < c; ++o) {
    const double s = static_cast<double>(bn.weight()[o]) /
                     std::sqrt(static_cast<double>(bn.running_var()[o]) + bn.eps());
    float* row = weight.data() + o * per;
    for (std::int64_t k = 0; k < per; ++k) row[k] = static_cast<float>(row[k] * s);
    bias.data()[o] = static_cast<float>((static_cast<double>(bias[o]) - bn.running_mean()[o]) * s +
                                        bn.bias()[o]);
  }
}

/// Folds the BatchNorm at bn_path into the layer at conv_path, whose output
/// it normalises (fold_batchnorm_into), and replaces the BN by an Identity.
inline void fold_batchnorm(Module& root, const std::string& conv_path, const std::string& bn_path) {
  auto& w = require_capability<WeightedLayer>(internal::at(root, conv_path), "a layer with weights",
                                              conv_path);
  auto& bn =
      require_capability<Normalization>(internal::at(root, bn_path), "a normalisation", bn_path);
  fold_batchnorm_into(w, bn, "'" + bn_path + "' into '" + conv_path + "'");
  root.replace(bn_path, std::make_unique<Identity>());
}

/// Folds every (conv, BatchNorm) pair the model's composites declare
/// (Module::batchnorm_pairs()); returns the BN names folded, in tree order.
inline std::vector<std::string> fold_batchnorms(Module& root) {
  std::vector<std::pair<std::string, std::string>> pairs;
  root.visit([&](const std::string& path, Module& m) {
    for (const auto& [conv, bn] : m.batchnorm_pairs()) {
      const std::string prefix = path.empty() ? "" : path + ".";
      // A BN folded earlier (an Identity now) is not a pair any more.
      const Module* b = m.find_child(bn);
      if (b != nullptr && as<Normalization>(*b)) pairs.emplace_back(prefix + conv, prefix + bn);
    }
  });
  std::vector<std::string> folded;
  for (const auto& [conv, bn] : pairs) {
    fold_batchnorm(root, conv, bn);
    folded.push_back(bn);
  }
  return folded;
}

}  // namespace compressor::nn
