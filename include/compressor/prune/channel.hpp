// Structured (channel) pruning: removes whole channels of the dependency
// groups (groups.hpp) and yields a physically smaller dense model with its
// channel plan (PlannedModel::channel_plan(); save_checkpoint stores it and
// io::load_model<M> rebuilds the model).
//
// Scores per channel of a group, summed over its members:
//   l1, l2     the L1 / L2 norm of each producer's filter (its output row)
//   bn_gamma   |gamma| of each normalisation (network slimming)
// Scope:
//   per_layer  each pruned group loses round(ratio * channels) channels
//   global     one ranking over the channels of all pruned groups; l1/l2
//              scores are divided by their group's mean score first (filter
//              norms of different layers have different scales), bn_gamma
//              scores are compared as they are. round(ratio * total) channels
//              go, but every group keeps at least max(1, round_to)
// round_to: a group's kept channels are rounded UP to a multiple of round_to
// (16 suits the int8 GEMM's panels), capped at its width, so a group may lose
// fewer channels than the ratio asks.
//
// Residual groups (ResidualPolicy):
//   internal_only (default)  only groups no residual add touches are pruned:
//                            in a ResNet each BasicBlock's inner channels
//                            (conv1's outputs = conv2's inputs). The join
//                            groups span a whole stage (the stem or downsample
//                            and every block's conv2 output, read by every
//                            block's input); removing one of their channels
//                            removes it from the identity path of the whole
//                            stage, which costs more accuracy per MAC saved
//                            (Li et al. 2017, "Pruning Filters for Efficient
//                            ConvNets", prune only the first conv of a block
//                            for that reason), and it needs all members'
//                            scores to agree.
//   grouped                  residual groups are pruned too, all members
//                            together, scores summed over the members.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/nn/surgery.hpp"
#include "compressor/prune/groups.hpp"
#include "compressor/prune/selection.hpp"
#include "compressor/prune/unstructured.hpp"

namespace compressor::prune {

enum class ChannelCriterion : std::uint8_t { l1, l2, bn_gamma };
enum class ResidualPolicy : std::uint8_t { internal_only, grouped };

struct ChannelOptions {
  double ratio = 0.5;  ///< fraction of channels removed, in [0, 1)
  Scope scope = Scope::per_layer;
  ChannelCriterion criterion = ChannelCriterion::l1;
  ResidualPolicy residual = ResidualPolicy::internal_only;
  std::int64_t round_to = 1;  ///< kept channels rounded up to a multiple of this
  /// Groups are pruned when every producer is selected (globs on names).
  LayerSelection layers{};
  /// Per-group ratios overriding `ratio` (per_layer scope): the first entry
  /// whose glob matches one of the group's producers.
  std::vector<std::pair<std::string, double>> layer_ratios{};
};

/// What channel pruning decided for one group.
struct GroupDecision {
  ChannelGroup group;
  std::vector<double> scores;      ///< per channel, as ranked
  std::vector<std::int64_t> keep;  ///< kept channel indices, ascending
  std::int64_t removed() const { return group.channels - static_cast<std::int64_t>(keep.size()); }
};

namespace detail {

/// Per output channel of a layer's weight: sum |w| (l1) or sqrt(sum w^2) (l2).
inline std::vector<double> filter_norms(nn::WeightedLayer& w, bool l2) {
  const Tensor<float>& t = w.weight();
  const std::int64_t n = w.out_channels(), per = t.numel() / n;
  std::vector<double> s(static_cast<std::size_t>(n), 0.0);
  for (std::int64_t o = 0; o < n; ++o) {
    double a = 0;
    for (std::int64_t k = 0; k < per; ++k) {
      const double v = t.data()[o * per + k];
      a += l2 ? v * v : std::abs(v);
    }
    s[static_cast<std::size_t>(o)] = l2 ? std::sqrt(a) : a;
  }
  return s;
}

inline std::vector<double> channel_scores(nn::Module& model, const ChannelGroup& g,
                                          ChannelCriterion c) {
  std::vector<double> s(static_cast<std::size_t>(g.channels), 0.0);
  if (c == ChannelCriterion::bn_gamma) {
    require(!g.norms.empty(), "channel pruning by BN gamma: the group of '", g.name(),
            "' has no normalisation; use the l1 or l2 criterion or exclude it");
    for (const auto& n : g.norms) {
      auto& bn = nn::require_capability<nn::Normalization>(*model.find(n), "a normalisation", n);
      for (std::int64_t i = 0; i < g.channels; ++i)
        s[static_cast<std::size_t>(i)] += std::abs(static_cast<double>(bn.weight()[i]));
    }
    return s;
  }
  for (const auto& p : g.producers) {
    auto& w = nn::require_capability<nn::WeightedLayer>(*model.find(p), "a layer with weights", p);
    const auto f = filter_norms(w, c == ChannelCriterion::l2);
    for (std::size_t i = 0; i < s.size(); ++i) s[i] += f[i];
  }
  return s;
}

/// Kept channels after rounding kept up to a multiple of round_to (capped at n).
inline std::int64_t rounded_keep(std::int64_t kept, std::int64_t n, std::int64_t round_to) {
  return std::min(n, (kept + round_to - 1) / round_to * round_to);
}

/// The `kept` highest-scoring channels (ties: the lower index stays), ascending.
inline std::vector<std::int64_t> top_channels(const std::vector<double>& s, std::int64_t kept) {
  std::vector<std::int64_t> idx(s.size());
  for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<std::int64_t>(i);
  std::stable_sort(idx.begin(), idx.end(), [&](std::int64_t a, std::int64_t b) {
    return s[static_cast<std::size_t>(a)] > s[static_cast<std::size_t>(b)];
  });
  idx.resize(static_cast<std::size_t>(kept));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace detail

/// Decides which channels of which groups go (the model is not changed).
/// Throws ValueError naming the option or the group: a ratio outside [0, 1),
/// a ratio that would remove every channel of a group, a pattern that
/// matches nothing, round_to < 1.
inline std::vector<GroupDecision> plan_channel_pruning(nn::Module& model, const ChannelOptions& o) {
  check_ratio(o.ratio, "ChannelOptions::ratio");
  require(o.round_to >= 1, "ChannelOptions::round_to must be >= 1, got ", o.round_to);
  for (const auto& [pattern, r] : o.layer_ratios)
    check_ratio(r, "ChannelOptions::layer_ratios['" + pattern + "']");
  const auto selected = select_layers(model, o.layers, "channel pruning");
  const auto all = weighted_layer_names(model);
  for (const auto& [pattern, r] : o.layer_ratios)
    require(matches_any(pattern, all), "channel pruning: the layer_ratios pattern '", pattern,
            "' matches no layer with weights of the ", model.type_name());

  std::vector<GroupDecision> out;
  for (auto& g : channel_groups(model)) {
    if (!g.prunable() || (g.residual && o.residual == ResidualPolicy::internal_only)) continue;
    bool chosen = true;
    for (const auto& p : g.producers)
      chosen = chosen && std::find(selected.begin(), selected.end(), p) != selected.end();
    if (!chosen) continue;
    GroupDecision d;
    d.scores = detail::channel_scores(model, g, o.criterion);
    for (std::size_t c = 0; c < d.scores.size(); ++c)
      require(std::isfinite(d.scores[c]), "channel pruning: channel ", c, " of the group of '",
              g.name(), "' has a non-finite score (", d.scores[c], ")");
    d.group = std::move(g);
    out.push_back(std::move(d));
  }
  require(!out.empty(), "channel pruning: no group of the ", model.type_name(),
          " can be pruned with these options (residual groups are left alone unless "
          "ResidualPolicy::grouped; the model's input and output channels never go)");

  auto too_many = [&](const GroupDecision& d, double ratio) {
    return ValueError(compressor::detail::concat(
        "channel pruning: ratio ", ratio, " would remove every one of the ", d.group.channels,
        " channels of '", d.group.name(), "'; use a lower ratio for it (layer_ratios)"));
  };
  if (o.scope == Scope::per_layer) {
    for (auto& d : out) {
      double ratio = o.ratio;
      for (const auto& [pattern, r] : o.layer_ratios)
        if (matches_any(pattern, d.group.producers)) {
          ratio = r;
          break;
        }
      const std::int64_t n = d.group.channels;
      const std::int64_t kept = n - detail::prune_count(ratio, n);
      if (kept <= 0) throw too_many(d, ratio);
      d.keep = detail::top_channels(d.scores, detail::rounded_keep(kept, n, o.round_to));
    }
    return out;
  }
  // Global: rank every channel by its (normalised) score, lowest first.
  struct Entry {
    double score;
    std::size_t group;
    std::int64_t channel;
  };
  std::vector<Entry> entries;
  std::int64_t total = 0;
  for (std::size_t gi = 0; gi < out.size(); ++gi) {
    const auto& s = out[gi].scores;
    double mean = 0;
    for (const double v : s) mean += v / static_cast<double>(s.size());
    const bool normalise = o.criterion != ChannelCriterion::bn_gamma && mean > 0;
    for (std::size_t c = 0; c < s.size(); ++c)
      entries.push_back({normalise ? s[c] / mean : s[c], gi, static_cast<std::int64_t>(c)});
    total += out[gi].group.channels;
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.score < b.score; });
  std::int64_t to_remove = detail::prune_count(o.ratio, total);
  std::vector<std::int64_t> kept(out.size());
  for (std::size_t gi = 0; gi < out.size(); ++gi) kept[gi] = out[gi].group.channels;
  const std::int64_t floor = std::max<std::int64_t>(1, o.round_to);
  for (const auto& e : entries) {
    if (to_remove == 0) break;
    if (kept[e.group] <= std::min(floor, out[e.group].group.channels)) continue;
    --kept[e.group];
    --to_remove;
  }
  for (std::size_t gi = 0; gi < out.size(); ++gi) {
    const std::int64_t n = out[gi].group.channels;
    // Within a group the normalised order is the raw one.
    out[gi].keep =
        detail::top_channels(out[gi].scores, detail::rounded_keep(kept[gi], n, o.round_to));
  }
  return out;
}

/// Removes the channels the decisions drop: the producers' outputs, the
/// normalisations' channels and the consumers' inputs (every copy for a
/// repeated consumer), each by one nn:: surgery call per layer and axis.
/// An optimizer built on model must rebind() afterwards (shapes changed).
inline void apply_channel_pruning(nn::Module& model, const std::vector<GroupDecision>& decisions) {
  for (const auto& d : decisions) {
    if (d.removed() == 0) continue;
    for (const auto& p : d.group.producers) nn::select_output_channels(model, p, d.keep);
    for (const auto& n : d.group.norms) nn::select_channels(model, n, d.keep);
    for (const auto& c : d.group.consumers) {
      std::vector<std::int64_t> cols;
      for (std::int64_t r = 0; r < c.repeat; ++r)
        for (const auto k : d.keep) cols.push_back(r * d.group.channels + k);
      nn::select_input_channels(model, c.layer, cols);
    }
  }
}

/// plan_channel_pruning() then apply_channel_pruning(); returns the decisions.
inline std::vector<GroupDecision> prune_channels(nn::Module& model, const ChannelOptions& o) {
  auto d = plan_channel_pruning(model, o);
  apply_channel_pruning(model, d);
  return d;
}

}  // namespace compressor::prune
