// Channel dependency groups, found from the model by tracing how channels
// flow through its module tree (in the spirit of Torch-Pruning's DepGraph,
// for the structures this library builds).
//
// A group is one set of channels that must be pruned together:
//   producers   layers with weights whose OUTPUT channels these are
//   norms       normalisations over them (BatchNorm2d)
//   consumers   layers with weights whose INPUT channels these are; a consumer
//               after a TemporalPool in mean_max_min mode reads each channel
//               `repeat` = 3 times (input column r * C + c for r = 0..2)
// A residual join (BasicBlock's add) merges the groups of its two inputs: in
// ResNet-18 a stage's stem-or-downsample output and every block's conv2 output
// are one group (residual = true).
//
// Tracing rules, by capability and module type (never by name):
//   WeightedLayer (Conv2d, Linear)  consumes the incoming group, produces a new one
//   Normalization (BatchNorm2d)     joins the incoming group
//   nn::BasicBlock                  conv1-bn1-relu-conv2-bn2 and the shortcut
//                                   (downsample or identity), merged at the add
//   nn::TemporalPool                multiplies the incoming repeat by its
//                                   out_features(1) (1 for mean, 3 for mean_max_min)
//   any other module with children  its children in order (Sequential, the
//                                   models: CifarCnn, ResNet18, EfRegressor)
//   a leaf without parameters       passes channels through (ReLU, pools,
//                                   Identity, Flatten after a global pool)
// A leaf with parameters the tracer does not know is an error naming it, as
// is a layer whose input width is not the traced one. The model's input and
// output channels form groups that are never pruned (prunable = false).
#pragma once

#include <cstdint>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/nn/basic_block.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/nn/temporal_pool.hpp"

namespace compressor::prune {

struct ChannelConsumer {
  std::string layer;        ///< a layer with weights
  std::int64_t repeat = 1;  ///< input column of channel c, copy r: r * channels + c
};

struct ChannelGroup {
  std::int64_t channels = 0;
  std::vector<std::string> producers;
  std::vector<std::string> norms;
  std::vector<ChannelConsumer> consumers;
  bool residual = false;  ///< joined by a residual add
  bool model_input = false, model_output = false;

  /// Whether channel pruning may remove channels of this group: it has a
  /// producer and is neither the model's input nor its output.
  bool prunable() const { return !producers.empty() && !model_input && !model_output; }
  /// The group's name in reports and errors: its first producer.
  const std::string& name() const { return producers.empty() ? kInput : producers.front(); }

 private:
  inline static const std::string kInput = "(model input)";
};

namespace detail {

class ChannelTracer {
 public:
  struct Flow {
    std::size_t group;
    std::int64_t repeat;
  };

  std::vector<ChannelGroup> run(nn::Module& model) {
    groups_.assign(1, ChannelGroup{});
    parent_.assign(1, 0);
    groups_[0].model_input = true;
    const Flow out = trace(model, "", {0, 1});
    groups_[root(out.group)].model_output = true;
    std::vector<ChannelGroup> result;
    for (std::size_t i = 0; i < groups_.size(); ++i)
      if (root(i) == i) result.push_back(std::move(groups_[i]));
    return result;
  }

 private:
  std::size_t root(std::size_t g) {
    while (parent_[g] != g) g = parent_[g] = parent_[parent_[g]];
    return g;
  }

  std::size_t fresh(std::int64_t channels) {
    groups_.push_back(ChannelGroup{});
    groups_.back().channels = channels;
    parent_.push_back(groups_.size() - 1);
    return groups_.size() - 1;
  }

  /// Merges group b into a (a residual join); returns the root.
  std::size_t merge(std::size_t a, std::size_t b, const std::string& where) {
    a = root(a);
    b = root(b);
    if (a == b) return a;
    ChannelGroup &ga = groups_[a], &gb = groups_[b];
    require<ShapeError>(ga.channels == gb.channels || ga.model_input || gb.model_input,
                        "channel tracing: the residual join at '", where, "' adds ", ga.channels,
                        " channels (from '", ga.name(), "') to ", gb.channels, " (from '",
                        gb.name(), "')");
    ga.channels = std::max(ga.channels, gb.channels);
    for (auto& p : gb.producers) ga.producers.push_back(std::move(p));
    for (auto& n : gb.norms) ga.norms.push_back(std::move(n));
    for (auto& c : gb.consumers) ga.consumers.push_back(std::move(c));
    ga.model_input = ga.model_input || gb.model_input;
    ga.residual = true;
    parent_[b] = a;
    return a;
  }

  static std::string join(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
  }

  Flow trace(nn::Module& m, const std::string& path, Flow in) {
    if (auto* w = nn::as<nn::WeightedLayer>(m)) {
      ChannelGroup& g = groups_[root(in.group)];
      if (g.model_input && g.channels == 0) g.channels = w->in_channels();
      require<ShapeError>(w->in_channels() == g.channels * in.repeat, "channel tracing: '", path,
                          "' (", m.type_name(), ") has ", w->in_channels(),
                          " input channels, but the traced flow carries ", g.channels, " x ",
                          in.repeat, " (from '", g.name(), "')");
      g.consumers.push_back({path, in.repeat});
      const std::size_t out = fresh(w->out_channels());
      groups_[out].producers.push_back(path);
      return {out, 1};
    }
    if (auto* n = nn::as<nn::Normalization>(m)) {
      ChannelGroup& g = groups_[root(in.group)];
      require<ShapeError>(in.repeat == 1 && n->channels() == g.channels, "channel tracing: '", path,
                          "' normalises ", n->channels(), " channels, but the traced flow carries ",
                          g.channels, " x ", in.repeat);
      g.norms.push_back(path);
      return in;
    }
    if (auto* block = nn::as<nn::BasicBlock>(m)) {
      Flow h = in;
      for (const char* c : {"conv1", "bn1", "relu", "conv2", "bn2"})
        h = trace(block->child(c), join(path, c), h);
      Flow shortcut = in;
      if (nn::Module* ds = block->downsample()) shortcut = trace(*ds, join(path, "downsample"), in);
      require<ShapeError>(h.repeat == 1 && shortcut.repeat == 1, "channel tracing: '", path,
                          "': a residual join of repeated channels");
      return {merge(shortcut.group, h.group, join(path, "add_relu")), 1};
    }
    if (auto* pool = nn::as<nn::TemporalPool>(m))
      return {in.group, in.repeat * pool->out_features(1)};
    if (m.num_children() > 0) {
      Flow f = in;
      for (std::size_t i = 0; i < m.num_children(); ++i)
        f = trace(m.child(i), join(path, m.child_name(i)), f);
      return f;
    }
    require(m.named_parameters().empty(), "channel tracing: '", path, "' (", m.type_name(),
            ") has parameters but is neither a layer with weights nor a normalisation; "
            "channel pruning does not know how its channels map");
    return in;
  }

  std::vector<ChannelGroup> groups_;
  std::vector<std::size_t> parent_;
};

}  // namespace detail

/// The channel groups of model, in the order their first member is traced
/// (the model input first).
inline std::vector<ChannelGroup> channel_groups(nn::Module& model) {
  return detail::ChannelTracer().run(model);
}

}  // namespace compressor::prune
