// Which layers a pruning policy works on: the layers with weights (Conv2d,
// Linear: nn::WeightedLayer) of a model, by qualified module name, filtered
// by include and exclude lists of glob patterns ('*' any run, '?' one
// character; io::glob_match). An empty include list means every layer with
// weights. A pattern that matches no layer with weights is an error naming
// it: a typo in "keep the stem dense" must not silently prune the stem.
//
//   LayerSelection s;
//   s.exclude = {"conv1", "fc"};          // ResNet-18: stem and head stay dense
//   s.include = {"layer*.conv?"};         // only the blocks' 3x3 convs
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::prune {

struct LayerSelection {
  std::vector<std::string> include;  ///< globs on module names; empty: every layer with weights
  std::vector<std::string> exclude;  ///< globs on module names, applied after include
};

/// The qualified names of every layer with weights under model, in visit order.
inline std::vector<std::string> weighted_layer_names(nn::Module& model) {
  std::vector<std::string> names;
  model.visit([&](const std::string& name, nn::Module& m) {
    if (nn::as<nn::WeightedLayer>(m) != nullptr) names.push_back(name);
  });
  return names;
}

namespace detail {
/// "'a', 'b', 'c', ... (n in all)": a short list of candidates for an error.
inline std::string some_names(const std::vector<std::string>& names) {
  std::string s;
  const std::size_t shown = names.size() < 6 ? names.size() : 6;
  for (std::size_t i = 0; i < shown; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (shown < names.size()) s += compressor::detail::concat(", ... (", names.size(), " in all)");
  return s;
}
}  // namespace detail

/// Whether the glob pattern matches one of names.
inline bool matches_any(std::string_view pattern, const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (io::glob_match(pattern, n)) return true;
  return false;
}

/// The layers with weights selected by sel, in visit order. who names the
/// caller in errors. Throws ValueError for a pattern that matches no layer
/// with weights, and when nothing is left to prune.
inline std::vector<std::string> select_layers(nn::Module& model, const LayerSelection& sel,
                                              std::string_view who) {
  const std::vector<std::string> all = weighted_layer_names(model);
  auto check = [&](const std::vector<std::string>& patterns, std::string_view list) {
    for (const auto& p : patterns)
      require(matches_any(p, all), who, ": the ", list, " pattern '", p,
              "' matches no layer with weights of the ", model.type_name(),
              " (layers: ", detail::some_names(all), ")");
  };
  check(sel.include, "include");
  check(sel.exclude, "exclude");
  std::vector<std::string> out;
  for (const auto& n : all)
    if ((sel.include.empty() || io::glob_match_any(sel.include, n)) &&
        !io::glob_match_any(sel.exclude, n))
      out.push_back(n);
  require(!out.empty(), who, ": the include and exclude lists leave no layer to prune in the ",
          model.type_name());
  return out;
}

/// The parameter "<layer>.weight" of the layer with weights at layer, with
/// its gradient; throws naming the layer when there is none.
inline nn::ParameterRef weight_parameter(nn::Module& model, const std::string& layer) {
  nn::Module* m = model.find(layer);
  require(m != nullptr, "no module named '", layer, "' in the ", model.type_name());
  (void)nn::require_capability<nn::WeightedLayer>(*m, "a layer with weights", layer);
  for (auto& p : m->named_parameters(layer))
    if (p.name == layer + ".weight") return p;
  throw ValueError(compressor::detail::concat("'", layer, "' has no parameter 'weight'"));
}

/// Checks a ratio (sparsity, channel fraction) is in [0, 1); what names the flag.
inline void check_ratio(double r, std::string_view what) {
  require(r >= 0.0 && r < 1.0, what, " must be in [0, 1), got ", r);
}

}  // namespace compressor::prune
