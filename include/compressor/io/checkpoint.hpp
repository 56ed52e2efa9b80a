// Checkpoints: a module's parameters and buffers in a safetensors file, with
// PyTorch's state_dict names ("layer1.0.conv1.weight") and layouts (conv
// weights OIHW on disk, converted from and to compressor's OHWI), so a file
// opens in PyTorch (load_state_dict) and a PyTorch state dict opens here.
//
//   save_checkpoint(model, "model.safetensors", {{"epoch", "12"}});
//   LoadReport r = load_checkpoint(model, "model.safetensors");
//
//   // torchvision resnet18 weights into EfRegressor's trunk:
//   LoadOptions o;
//   o.add_prefix = "backbone.";     // "conv1.weight" -> "backbone.conv1.weight"
//   o.ignore = {"fc.*"};            // torchvision's classifier has no place here
//   o.allow_missing = {"head.*"};   // the regression head keeps its values
//   load_checkpoint(ef, "resnet18.safetensors", o);
//
//   // A state dict with other names: rename rules, exact or glob.
//   LoadOptions r;
//   r.rename = {{"stem.conv.*", "conv1.*"},      // "stem.conv.weight" -> "conv1.weight"
//               {"stem.bn.*", "bn1.*"},
//               {"classifier.weight", "fc.weight"}};
//
// Each file name goes through, in this order: ignore / ignore_if (on the
// name as written in the file) -> the first rename rule whose 'from' matches
// -> strip_prefix / add_prefix -> lookup among the model's names. Two file
// tensors that end up on one model name are an IoError.
//
// save_checkpoint() stores the ChannelPlan of a model that has one (CifarCnn,
// ResNet18, EfRegressor; nn/channel_plan.hpp) in the metadata, and
//
//   auto pruned = load_model<models::ResNet18>("pruned.safetensors");
//
// rebuilds the model from that plan and loads its weights in one call.
//
// Loading validates everything first (names, dtypes, shapes, the file's
// structure and data) and stages the values in temporaries; the model is
// written only when every tensor is ready, so a failed load leaves it untouched.
#pragma once

#include <algorithm>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "compressor/io/layout.hpp"
#include "compressor/io/safetensors.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/channel_plan.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::io {

/// Glob match of name against pattern: '*' matches any run of characters
/// (dots included), '?' any one character; everything else matches itself.
inline bool glob_match(std::string_view pattern, std::string_view name) {
  std::size_t p = 0, n = 0, star = std::string_view::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

/// What each '*' of pattern matched in name, left to right, or nullopt when
/// name does not match (exactly when glob_match is false). When a name
/// matches in several ways the captures are leftmost-shortest: each '*' in
/// turn takes the shortest run that lets the rest of the pattern match, so
/// "*.*" on "layer1.0.conv1.weight" gives {"layer1", "0.conv1.weight"}. The
/// views point into name. Linear in name.size() times pattern.size().
inline std::optional<std::vector<std::string_view>> glob_captures(std::string_view pattern,
                                                                  std::string_view name) {
  // The pattern is literal segments (with '?') between the '*'s: the first is
  // anchored at the start, the last at the end, and each one between is
  // placed at its leftmost fit. Leftmost placement never prevents a match
  // that another placement allows (everything after it keeps at least as much
  // room), and it makes the run before the segment, the capture, shortest.
  auto fits = [&](std::string_view seg, std::size_t at) {
    if (at > name.size() || seg.size() > name.size() - at) return false;
    for (std::size_t i = 0; i < seg.size(); ++i)
      if (seg[i] != '?' && seg[i] != name[at + i]) return false;
    return true;
  };
  std::vector<std::string_view> segs;
  for (std::size_t b = 0;;) {
    const std::size_t star = pattern.find('*', b);
    segs.push_back(pattern.substr(b, star == std::string_view::npos ? star : star - b));
    if (star == std::string_view::npos) break;
    b = star + 1;
  }
  std::vector<std::string_view> caps;
  if (segs.size() == 1) {
    if (pattern.size() != name.size() || !fits(pattern, 0)) return std::nullopt;
    return caps;
  }
  const std::string_view last = segs.back();
  if (!fits(segs.front(), 0) || last.size() > name.size()) return std::nullopt;
  const std::size_t tail = name.size() - last.size();  // where the last segment starts
  if (!fits(last, tail)) return std::nullopt;
  std::size_t pos = segs.front().size();
  for (std::size_t i = 1; i + 1 < segs.size(); ++i) {
    std::size_t at = pos;
    while (at + segs[i].size() <= tail && !fits(segs[i], at)) ++at;
    if (at + segs[i].size() > tail) return std::nullopt;
    caps.push_back(name.substr(pos, at - pos));
    pos = at + segs[i].size();
  }
  if (pos > tail) return std::nullopt;
  caps.push_back(name.substr(pos, tail - pos));
  return caps;
}

inline bool glob_match_any(const std::vector<std::string>& patterns, std::string_view name) {
  for (const auto& p : patterns)
    if (glob_match(p, name)) return true;
  return false;
}

struct LoadOptions {
  /// Every model tensor must be loaded (unless allow_missing) and every file
  /// tensor must be used (unless ignored). Off: both are only reported.
  /// Shape and dtype mismatches are errors either way.
  bool strict = true;
  /// Removed from the front of each file name before matching; a file name
  /// without it matches nothing (it is unexpected, unless ignored).
  std::string strip_prefix;
  /// Then put in front of each file name ("backbone." for a torchvision trunk).
  std::string add_prefix;
  /// Globs on file names (as written in the file) to skip, e.g. "fc.*".
  std::vector<std::string> ignore;
  /// Optional predicate on file names to skip, in addition to ignore.
  std::function<bool(std::string_view)> ignore_if;
  /// Globs on model names that may be absent from the file; they keep their values.
  std::vector<std::string> allow_missing;
  /// Rename rules (from, to), applied after ignore and before the prefixes;
  /// the first rule whose 'from' matches a file name renames it, names no
  /// rule matches keep theirs. A 'from' without '*' is one exact file name; a
  /// 'from' with '*' is a glob as in ignore ('*' any run, dots included, '?'
  /// one character), each '*' captures what it matched (leftmost-shortest,
  /// see glob_captures) and the n-th '*' of 'to' becomes the n-th capture:
  /// {"stem.conv.*", "conv1.*"}, {"blocks.*.*", "layer*.*"}. Everything else in
  /// 'to' is copied as it is. A 'to' with more '*' than its 'from' is a ValueError.
  std::vector<std::pair<std::string, std::string>> rename;
};

struct LoadReport {
  std::string file;
  std::vector<std::string> loaded;      ///< model names that received a value
  std::vector<std::string> ignored;     ///< file names skipped by ignore / ignore_if
  std::vector<std::string> unexpected;  ///< file names no model tensor matched (non-strict)
  std::vector<std::string> missing;  ///< model names absent from the file (allowed or non-strict)
  std::vector<std::pair<std::string, std::string>> metadata;
  /// (file name, model name) for every file tensor a rename rule matched, in
  /// file order; the model name is the rule's result after the prefix
  /// mapping. A renamed tensor no model tensor matched (non-strict) is also
  /// in unexpected.
  std::vector<std::pair<std::string, std::string>> renamed;

  std::string summary() const {
    std::string s = compressor::detail::concat(file, ": loaded ", loaded.size(), ", ignored ",
                                               ignored.size(), ", unexpected ", unexpected.size(),
                                               ", missing ", missing.size());
    if (!renamed.empty()) s += compressor::detail::concat(", renamed ", renamed.size());
    return s;
  }
};

namespace detail {

/// One model tensor: where it lives, its dtype, layout and in-memory shape.
struct StateEntry {
  std::string name;
  DType dtype;
  void* tensor;  // Tensor<T>* with dtype_of<T>() == dtype
  nn::Layout layout;
};

inline std::vector<StateEntry> state_entries(nn::Module& m) {
  std::vector<StateEntry> out;
  for (const auto& p : m.named_parameters()) out.push_back({p.name, DType::f32, p.value, p.layout});
  for (const auto& b : m.named_buffers()) out.push_back({b.name, b.dtype, b.tensor, b.layout});
  return out;
}

/// Calls fn.template operator()<T>() with T the element type of dtype.
template <class Fn>
decltype(auto) dispatch_dtype(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::f32:
      return fn.template operator()<float>();
    case DType::i8:
      return fn.template operator()<std::int8_t>();
    case DType::u8:
      return fn.template operator()<std::uint8_t>();
    case DType::i32:
      return fn.template operator()<std::int32_t>();
    case DType::i64:
      return fn.template operator()<std::int64_t>();
  }
  throw ValueError("unknown DType");
}

/// The shape a model tensor has in PyTorch's layout (on disk).
template <TensorElement T>
Shape disk_shape(const Tensor<T>& t, nn::Layout layout) {
  return layout == nn::Layout::ohwi ? channels_first_shape(t.shape()) : t.shape();
}

/// Joins the first six items (already formatted) with ", ", and counts the rest.
inline std::string item_list(const std::vector<std::string>& items) {
  std::string s;
  const std::size_t shown = std::min<std::size_t>(items.size(), 6);
  for (std::size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > shown) s += compressor::detail::concat(" and ", items.size() - shown, " more");
  return s;
}

inline std::string name_list(const std::vector<std::string>& names) {
  std::vector<std::string> quoted;
  quoted.reserve(names.size());
  for (const auto& n : names) quoted.push_back("'" + n + "'");
  return item_list(quoted);
}

/// Throws ValueError naming the first rename rule whose 'to' has more '*'
/// than its 'from' (a '*' in 'to' with no capture to take).
inline void check_rename_rules(const std::vector<std::pair<std::string, std::string>>& rules) {
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const auto& [from, to] = rules[i];
    const auto stars_from = std::count(from.begin(), from.end(), '*');
    const auto stars_to = std::count(to.begin(), to.end(), '*');
    require(stars_to <= stars_from, "load_checkpoint: LoadOptions::rename[", i, "] = {\"", from,
            "\", \"", to, "\"} has ", stars_to, " '*' in 'to' but ", stars_from,
            " in 'from'; each '*' of 'to' takes the text of the '*' of 'from' at the same place");
  }
}

/// How the unexpected-tensor error describes the name mapping that was applied.
inline const char* mapping_words(const LoadOptions& opt) {
  const bool prefixes = !opt.strip_prefix.empty() || !opt.add_prefix.empty();
  if (opt.rename.empty()) return prefixes ? " after the name prefix mapping" : "";
  return prefixes ? " after the LoadOptions::rename rules and the name prefix mapping"
                  : " after the LoadOptions::rename rules";
}

/// The name the first matching rule gives file_name, or nullopt when no rule matches.
inline std::optional<std::string> apply_rename(
    const std::vector<std::pair<std::string, std::string>>& rules, std::string_view file_name) {
  for (const auto& [from, to] : rules) {
    if (from.find('*') == std::string::npos) {
      if (from == file_name) return to;
      continue;
    }
    const auto caps = glob_captures(from, file_name);
    if (!caps) continue;
    std::string out;
    std::size_t next = 0;
    for (const char c : to) {
      if (c == '*')
        out += (*caps)[next++];  // check_rename_rules: at most caps->size() of them
      else
        out += c;
    }
    return out;
  }
  return std::nullopt;
}

/// A value read and converted, waiting to be copied into the model.
struct Staged {
  void* dst;
  std::vector<char> bytes;
};

}  // namespace detail

/// Loads the tensors of an open safetensors file into m (see the file comment).
inline LoadReport load_checkpoint(nn::Module& m, SafetensorsFile& file,
                                  const LoadOptions& opt = {}) {
  const std::string& where = file.source();
  LoadReport report;
  report.file = where;
  report.metadata = file.metadata();

  detail::check_rename_rules(opt.rename);

  const auto entries = detail::state_entries(m);
  std::unordered_map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < entries.size(); ++i)
    require(by_name.emplace(entries[i].name, i).second,
            "load_checkpoint: the model has two tensors named '", entries[i].name, "'");

  // Match file names to model names: ignore, rename, prefixes, lookup.
  std::vector<std::pair<const TensorInfo*, std::size_t>> matches;
  std::vector<const TensorInfo*> claimed(entries.size(), nullptr);  // the file tensor of each
  std::vector<std::string> unexpected_shown;  // for the error: renamed ones say what they became
  for (const auto& t : file.tensors()) {
    if (glob_match_any(opt.ignore, t.name) || (opt.ignore_if && opt.ignore_if(t.name))) {
      report.ignored.push_back(t.name);
      continue;
    }
    const std::optional<std::string> renamed = detail::apply_rename(opt.rename, t.name);
    std::string_view base = renamed ? std::string_view(*renamed) : std::string_view(t.name);
    const bool has_prefix = base.substr(0, opt.strip_prefix.size()) == opt.strip_prefix;
    std::string mapped(base);
    auto it = by_name.end();
    if (has_prefix) {
      base.remove_prefix(opt.strip_prefix.size());
      mapped = opt.add_prefix + std::string(base);
      it = by_name.find(mapped);
    }
    if (renamed) report.renamed.emplace_back(t.name, mapped);
    if (it == by_name.end()) {
      report.unexpected.push_back(t.name);
      unexpected_shown.push_back("'" + t.name + "'" +
                                 (renamed ? " (renamed '" + mapped + "')" : std::string()));
      continue;
    }
    if (const TensorInfo* first = claimed[it->second])
      throw IoError(compressor::detail::concat(
          where, ": tensors '", first->name, "' and '", t.name,
          "' in the file both map to model tensor '", it->first,
          "' (LoadOptions::rename and the name prefix mapping must give each file tensor its "
          "own model name)"));
    claimed[it->second] = &t;
    matches.emplace_back(&t, it->second);
  }
  std::vector<std::string> not_allowed;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (claimed[i]) continue;
    report.missing.push_back(entries[i].name);
    if (!glob_match_any(opt.allow_missing, entries[i].name)) not_allowed.push_back(entries[i].name);
  }
  if (opt.strict && !not_allowed.empty())
    throw IoError(compressor::detail::concat(
        where, ": ", not_allowed.size(),
        " tensor(s) of the model are missing from the file: ", detail::name_list(not_allowed),
        " (LoadOptions::allow_missing accepts them, strict = false only reports them)"));
  if (opt.strict && !report.unexpected.empty())
    throw IoError(compressor::detail::concat(
        where, ": ", report.unexpected.size(), " tensor(s) in the file match no model tensor",
        detail::mapping_words(opt), ": ", detail::item_list(unexpected_shown),
        " (LoadOptions::ignore skips them, strict = false only reports them)"));

  // Validate and stage every value before touching the model.
  std::vector<detail::Staged> staged;
  staged.reserve(matches.size());
  for (const auto& match : matches) {
    const TensorInfo* info = match.first;  // not a structured binding: lambdas capture it
    const detail::StateEntry& e = entries[match.second];
    staged.push_back(detail::dispatch_dtype(e.dtype, [&]<class T>() {
      auto& dst = *static_cast<Tensor<T>*>(e.tensor);
      if (!info->dtype || *info->dtype != e.dtype)
        throw IoError(compressor::detail::concat(
            where, ": tensor '", info->name, "' has dtype ", info->dtype_name, ", expected ",
            dtype_name(e.dtype), " for model tensor '", e.name, "'"));
      const Shape want = detail::disk_shape(dst, e.layout);
      const bool rank_ok = info->dims.size() == static_cast<std::size_t>(want.rank());
      if (!rank_ok || !(Shape(std::span<const std::int64_t>(info->dims)) == want))
        throw ShapeError(compressor::detail::concat(
            where, ": tensor '", info->name, "' has shape ", info->shape_str(), ", expected ",
            want.str(), e.layout == nn::Layout::ohwi ? " (PyTorch's OIHW layout)" : "",
            " for model tensor '", e.name, "'",
            file.metadata_value(nn::ChannelPlan::kMetadataKey)
                ? "; the file holds the channel plan of the model it was saved from: rebuild "
                  "the model from it with io::load_model<Model>(path)"
                : ""));
      Tensor<T> disk = file.read<T>(*info);
      detail::Staged s{dst.data(),
                       std::vector<char>(static_cast<std::size_t>(dst.numel()) * sizeof(T))};
      const Tensor<T> mem =
          e.layout == nn::Layout::ohwi ? to_channels_last(disk.view()) : std::move(disk);
      if (!s.bytes.empty()) std::memcpy(s.bytes.data(), mem.data(), s.bytes.size());
      return s;
    }));
  }

  // Commit: plain copies of validated sizes, nothing can fail past this point.
  for (const auto& s : staged)
    if (!s.bytes.empty()) std::memcpy(s.dst, s.bytes.data(), s.bytes.size());
  for (const auto& match : matches) report.loaded.push_back(entries[match.second].name);
  return report;
}

/// Opens path and loads it into m; throws IoError/ShapeError naming the file
/// and tensor on any problem, leaving m unchanged.
inline LoadReport load_checkpoint(nn::Module& m, const std::filesystem::path& path,
                                  const LoadOptions& opt = {}) {
  SafetensorsFile file = SafetensorsFile::open(path);
  return load_checkpoint(m, file, opt);
}

/// Adds m's parameters and buffers to w under PyTorch's names (with prefix
/// in front) and layouts.
inline void add_state(SafetensorsWriter& w, nn::Module& m, const std::string& prefix = "") {
  for (const auto& e : detail::state_entries(m)) {
    detail::dispatch_dtype(e.dtype, [&]<class T>() {
      const auto& t = *static_cast<const Tensor<T>*>(e.tensor);
      if (e.layout == nn::Layout::ohwi)
        w.add<T>(prefix + e.name, to_channels_first(t.view()));
      else
        w.add<T>(prefix + e.name, t.view());
    });
  }
}

/// A writer holding what save_checkpoint writes (m's tensors, metadata and
/// channel plan), for adding more before writing it.
inline SafetensorsWriter checkpoint_writer(
    nn::Module& m, const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
  SafetensorsWriter w;
  bool has_plan = false;
  for (const auto& [k, v] : metadata) {
    w.set_metadata(k, v);
    has_plan = has_plan || k == nn::ChannelPlan::kMetadataKey;
  }
  if (auto* planned = nn::as<nn::PlannedModel>(m); planned && !has_plan)
    w.set_metadata(std::string(nn::ChannelPlan::kMetadataKey), planned->channel_plan().to_json());
  add_state(w, m);
  return w;
}

/// Writes m's parameters and buffers to path atomically, with optional
/// string metadata and, for a model with a channel plan, the plan (metadata
/// key "compressor.channel_plan", unless metadata sets it); throws IoError
/// naming path on failure.
inline void save_checkpoint(nn::Module& m, const std::filesystem::path& path,
                            const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
  checkpoint_writer(m, metadata).write(path);
}

/// The channel plan stored in an open checkpoint; IoError if it has none.
inline nn::ChannelPlan read_channel_plan(const SafetensorsFile& file) {
  const std::string* json = file.metadata_value(nn::ChannelPlan::kMetadataKey);
  if (json == nullptr)
    throw IoError(compressor::detail::concat(
        file.source(), ": no channel plan in the metadata (key '", nn::ChannelPlan::kMetadataKey,
        "'); build the model yourself and use load_checkpoint()"));
  return nn::ChannelPlan::from_json(
      *json, file.source() + " metadata '" + std::string(nn::ChannelPlan::kMetadataKey) + "'");
}

/// Builds an M from the channel plan in the checkpoint at path and loads the
/// checkpoint into it: one call for a pruned model. Throws IoError if the file
/// has no plan, ValueError naming the file and the layer if the plan does not
/// fit M (another model's file, say), and the load_checkpoint errors
/// otherwise.
template <class M>
requires std::derived_from<M, nn::Module> && std::constructible_from<M, const nn::ChannelPlan&>
    std::unique_ptr<M> load_model(const std::filesystem::path& path, const LoadOptions& opt = {}) {
  SafetensorsFile file = SafetensorsFile::open(path);
  const nn::ChannelPlan plan = read_channel_plan(file);
  std::unique_ptr<M> model;
  try {
    model = std::make_unique<M>(plan);
  } catch (const ValueError& e) {
    throw ValueError(compressor::detail::concat(file.source(), ": ", e.what()));
  }
  load_checkpoint(*model, file, opt);
  return model;
}

}  // namespace compressor::io
