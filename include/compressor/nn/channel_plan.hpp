// ChannelPlan: the channel counts a model is built with, one per layer with
// weights (its output channels, by qualified name), plus the model's type and
// options. The uniform width of today's models is one plan; a channel-pruned
// model has another. save_checkpoint() stores the plan of a model that has
// one as versioned JSON in the file's metadata (key "compressor.channel_plan"),
// and io::load_model<M>(path) rebuilds M from it and loads the weights:
//
//   {"format": "compressor.channel_plan", "version": 1, "model": "CifarCnn",
//    "options": {"num_classes": 10, "in_channels": 3},
//    "channels": {"features.0": 40, "features.4": 128, ..., "fc": 10}}
//
// A model built from a plan reads every entry through a PlanReader, which
// checks each count and, at the end, that no entry was left unused; errors
// name the layer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/io/json.hpp"

namespace compressor::nn {

struct ChannelPlan {
  static constexpr std::string_view kFormat = "compressor.channel_plan";
  static constexpr std::string_view kMetadataKey = "compressor.channel_plan";
  static constexpr std::int64_t kVersion = 1;

  std::string model;  ///< the model's type_name()
  io::json::Object options;
  std::vector<std::pair<std::string, std::int64_t>> channels;  ///< in model order

  /// The count for layer, or nullptr.
  const std::int64_t* find(std::string_view layer) const {
    for (const auto& [name, c] : channels)
      if (name == layer) return &c;
    return nullptr;
  }
  /// Sets (or adds) the count of layer.
  void set(std::string_view layer, std::int64_t c) {
    for (auto& [name, v] : channels)
      if (name == layer) {
        v = c;
        return;
      }
    channels.emplace_back(std::string(layer), c);
  }

  const io::json::Value* option(std::string_view key) const {
    for (const auto& [k, v] : options)
      if (k == key) return &v;
    return nullptr;
  }
  std::int64_t option_int(std::string_view key, std::int64_t fallback) const {
    const auto* v = option(key);
    if (v == nullptr) return fallback;
    require(v->is_int64(), "channel plan of ", model, ": option '", key, "' must be an integer");
    return v->as_int64();
  }
  std::string option_string(std::string_view key, std::string fallback) const {
    const auto* v = option(key);
    if (v == nullptr) return fallback;
    require(v->is_string(), "channel plan of ", model, ": option '", key, "' must be a string");
    return v->as_string();
  }
  bool option_bool(std::string_view key, bool fallback) const {
    const auto* v = option(key);
    if (v == nullptr) return fallback;
    require(v->is_bool(), "channel plan of ", model, ": option '", key, "' must be true or false");
    return v->as_bool();
  }

  std::string to_json() const {
    io::json::Object ch;
    for (const auto& [name, c] : channels) ch.emplace_back(name, io::json::Value(c));
    return io::json::dump(io::json::Value(io::json::Object{
        {"format", io::json::Value(kFormat)},
        {"version", io::json::Value(kVersion)},
        {"model", io::json::Value(model)},
        {"options", io::json::Value(options)},
        {"channels", io::json::Value(std::move(ch))},
    }));
  }

  /// Parses a plan; source names the file or field in errors.
  static ChannelPlan from_json(std::string_view text, std::string_view source) {
    auto fail = [&](auto&&... what) -> ValueError {
      return ValueError(detail::concat(source, ": channel plan: ", what...));
    };
    io::json::Value v;
    try {
      v = io::json::parse(text);
    } catch (const Error& e) {
      throw fail("not valid JSON (", e.what(), ")");
    }
    if (!v.is_object()) throw fail("expected a JSON object");
    const auto* format = v.find("format");
    if (format == nullptr || !format->is_string() || format->as_string() != kFormat)
      throw fail("\"format\" must be \"", kFormat, "\"");
    const auto* version = v.find("version");
    if (version == nullptr || !version->is_int64() || version->as_int64() != kVersion)
      throw fail("\"version\" must be ", kVersion, " (this library reads version ", kVersion, ")");
    ChannelPlan p;
    const auto* model = v.find("model");
    if (model == nullptr || !model->is_string() || model->as_string().empty())
      throw fail("\"model\" must be a non-empty string");
    p.model = model->as_string();
    if (const auto* o = v.find("options")) {
      if (!o->is_object()) throw fail("\"options\" must be an object");
      p.options = o->as_object();
    }
    const auto* ch = v.find("channels");
    if (ch == nullptr || !ch->is_object()) throw fail("\"channels\" must be an object");
    for (const auto& [name, c] : ch->as_object()) {
      if (!c.is_int64() || c.as_int64() <= 0)
        throw fail("layer '", name, "' must have a positive integer channel count");
      p.channels.emplace_back(name, c.as_int64());
    }
    return p;
  }
};

/// Reads a plan while a model is built from it: each layer's count (or the
/// default where the plan has none), and at the end an error for entries no
/// layer used.
class PlanReader {
 public:
  PlanReader(const ChannelPlan& plan, std::string_view model) : plan_(plan), model_(model) {
    require(plan.model == model, "channel plan is for model '", plan.model, "', not '", model, "'");
    used_.assign(plan.channels.size(), false);
  }

  /// The output channels of layer: the plan's count, else fallback (> 0).
  std::int64_t out(const std::string& layer, std::int64_t fallback = 0) {
    for (std::size_t i = 0; i < plan_.channels.size(); ++i)
      if (plan_.channels[i].first == layer) {
        used_[i] = true;
        return plan_.channels[i].second;
      }
    require(fallback > 0, model_, " channel plan: no channel count for layer '", layer, "'");
    return fallback;
  }
  /// The count of layer, which the model's structure fixes to `expected`
  /// (a residual join, the classifier's classes): an error if the plan differs.
  std::int64_t fixed(const std::string& layer, std::int64_t expected, std::string_view why) {
    const std::int64_t c = out(layer, expected);
    require(c == expected, model_, " channel plan: layer '", layer, "' has ", c,
            " output channels, but ", why, " fixes it to ", expected);
    return c;
  }

  /// Throws if an entry of the plan named no layer of the model.
  void finish() const {
    for (std::size_t i = 0; i < used_.size(); ++i)
      require(used_[i], model_, " channel plan: layer '", plan_.channels[i].first,
              "' is not a layer with weights of this model");
  }

 private:
  const ChannelPlan& plan_;
  std::string model_;
  std::vector<bool> used_;
};

}  // namespace compressor::nn
