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
// Loading validates everything first (names, dtypes, shapes, the file's
// structure and data) and stages the values in temporaries; the model is
// written only when every tensor is ready, so a failed load leaves it untouched.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "compressor/io/layout.hpp"
#include "compressor/io/safetensors.hpp"
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
};

struct LoadReport {
  std::string file;
  std::vector<std::string> loaded;      ///< model names that received a value
  std::vector<std::string> ignored;     ///< file names skipped by ignore / ignore_if
  std::vector<std::string> unexpected;  ///< file names no model tensor matched (non-strict)
  std::vector<std::string> missing;  ///< model names absent from the file (allowed or non-strict)
  std::vector<std::pair<std::string, std::string>> metadata;

  std::string summary() const {
    return compressor::detail::concat(file, ": loaded ", loaded.size(), ", ignored ",
                                      ignored.size(), ", unexpected ", unexpected.size(),
                                      ", missing ", missing.size());
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

inline std::string name_list(const std::vector<std::string>& names) {
  std::string s;
  const std::size_t shown = std::min<std::size_t>(names.size(), 6);
  for (std::size_t i = 0; i < shown; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > shown) s += compressor::detail::concat(" and ", names.size() - shown, " more");
  return s;
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

  const auto entries = detail::state_entries(m);
  std::unordered_map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < entries.size(); ++i)
    require(by_name.emplace(entries[i].name, i).second,
            "load_checkpoint: the model has two tensors named '", entries[i].name, "'");

  // Match file names to model names.
  std::vector<std::pair<const TensorInfo*, std::size_t>> matches;
  std::vector<bool> found(entries.size(), false);
  for (const auto& t : file.tensors()) {
    if (glob_match_any(opt.ignore, t.name) || (opt.ignore_if && opt.ignore_if(t.name))) {
      report.ignored.push_back(t.name);
      continue;
    }
    std::string_view base = t.name;
    const bool has_prefix = base.substr(0, opt.strip_prefix.size()) == opt.strip_prefix;
    auto it = by_name.end();
    if (has_prefix) {
      base.remove_prefix(opt.strip_prefix.size());
      it = by_name.find(opt.add_prefix + std::string(base));
    }
    if (it == by_name.end()) {
      report.unexpected.push_back(t.name);
      continue;
    }
    found[it->second] = true;
    matches.emplace_back(&t, it->second);
  }
  std::vector<std::string> not_allowed;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (found[i]) continue;
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
        opt.strip_prefix.empty() && opt.add_prefix.empty() ? "" : " after the name prefix mapping",
        ": ", detail::name_list(report.unexpected),
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
            " for model tensor '", e.name, "'"));
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

/// Writes m's parameters and buffers to path atomically, with optional
/// string metadata; throws IoError naming path on failure.
inline void save_checkpoint(nn::Module& m, const std::filesystem::path& path,
                            const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
  SafetensorsWriter w;
  for (const auto& [k, v] : metadata) w.set_metadata(k, v);
  add_state(w, m);
  w.write(path);
}

}  // namespace compressor::io
