// Optimizer state in checkpoints: what an exact resume needs besides the
// weights. A training checkpoint holds the model's tensors (checkpoint.hpp)
// and, beside them, the optimizer's per-parameter state under
// "optimizer.<parameter>.<key>":
//
//   momentum_buffer            SGD with momentum (once the parameter has stepped)
//   exp_avg, exp_avg_sq        Adam / AdamW (likewise)
//   steps                      int64, shape (1): the parameter's own update count
//
// and the metadata "optimizer" (its name(), e.g. "sgd") and "optimizer.steps"
// (Optimizer::steps()). State tensors have the parameter's in-memory shape
// and layout (a conv weight's OHWI), not PyTorch's: they are for resuming
// here, not for torch.optim. load_checkpoint() of the model alone rejects
// them as unexpected unless told to skip them: LoadOptions::ignore =
// {"optimizer.*"} (save_training_checkpoint / load_training_checkpoint do both).
// A weight average (stochastic weight averaging, train/weight_average.hpp)
// goes beside them the same way, under "weight_average.<parameter>", with
// its snapshot count and decay in the metadata.
//
//   io::save_training_checkpoint(model, sgd, "run/partial.safetensors", {{"epoch", "3"}});
//   ...
//   io::load_training_checkpoint(model, sgd, "run/partial.safetensors");
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "compressor/io/checkpoint.hpp"
#include "compressor/io/safetensors.hpp"
#include "compressor/train/optimizer.hpp"
#include "compressor/train/weight_average.hpp"

namespace compressor::io {

inline constexpr const char* kOptimizerPrefix = "optimizer.";

/// Adds opt's state (see the top of this file) to w.
inline void add_optimizer_state(SafetensorsWriter& w, train::Optimizer& opt) {
  w.set_metadata("optimizer", std::string(opt.name()));
  w.set_metadata("optimizer.steps", std::to_string(opt.steps()));
  for (const nn::ParameterRef& p : opt.parameters()) {
    const train::ParamState* s = opt.state(p.name);
    const std::string base = kOptimizerPrefix + p.name + ".";
    Tensor<std::int64_t> steps(Shape{1});
    steps[0] = s->steps;
    w.add(base + "steps", steps);
    if (!s->momentum_buffer.empty()) w.add(base + "momentum_buffer", s->momentum_buffer);
    if (!s->exp_avg.empty()) w.add(base + "exp_avg", s->exp_avg);
    if (!s->exp_avg_sq.empty()) w.add(base + "exp_avg_sq", s->exp_avg_sq);
  }
}

namespace detail {
/// The count in metadata value `value` (key `key` of f): the whole value
/// read by std::stoll, >= 0; else an IoError naming the file, the key and
/// the value, "not <what>".
inline std::int64_t metadata_count(const SafetensorsFile& f, const char* key,
                                   const std::string& value, const char* what) {
  std::int64_t n = -1;
  try {
    std::size_t used = 0;
    n = std::stoll(value, &used);
    if (used != value.size()) n = -1;
  } catch (const std::exception&) {
    n = -1;
  }
  require<IoError>(n >= 0, f.source(), ": metadata '", key, "' is '", value, "', not ", what);
  return n;
}
}  // namespace detail

/// Restores opt's state from f, written by add_optimizer_state for an
/// optimizer of the same kind over parameters of the same names and shapes.
/// Throws IoError naming the file and what does not fit (another optimizer,
/// a parameter without state, a state of another shape); on error opt keeps
/// the state it had.
inline void load_optimizer_state(SafetensorsFile& f, train::Optimizer& opt) {
  const std::string* kind = f.metadata_value("optimizer");
  const std::string* steps = f.metadata_value("optimizer.steps");
  require<IoError>(kind != nullptr && steps != nullptr, f.source(),
                   ": no optimizer state (metadata 'optimizer' and 'optimizer.steps')");
  require<IoError>(*kind == opt.name(), f.source(), ": optimizer state of '", *kind,
                   "', but the optimizer is '", opt.name(), "'");
  const std::int64_t total = detail::metadata_count(f, "optimizer.steps", *steps, "a step count");
  // Read everything first, so that a bad file changes nothing.
  std::vector<std::pair<std::string, train::ParamState>> read;
  for (const nn::ParameterRef& p : opt.parameters()) {
    const std::string base = kOptimizerPrefix + p.name + ".";
    require<IoError>(f.contains(base + "steps"), f.source(), ": no optimizer state for parameter '",
                     p.name, "' (tensor '", base, "steps')");
    train::ParamState s;
    s.shape = p.value->shape();
    const Tensor<std::int64_t> n = f.read<std::int64_t>(base + "steps");
    require<IoError>(n.numel() == 1 && n[0] >= 0, f.source(), ": '", base,
                     "steps' must hold one count >= 0");
    s.steps = n[0];
    for (auto [key, dst] :
         {std::pair{"momentum_buffer", &s.momentum_buffer}, std::pair{"exp_avg", &s.exp_avg},
          std::pair{"exp_avg_sq", &s.exp_avg_sq}}) {
      if (!f.contains(base + key)) continue;
      *dst = f.read<float>(base + key);
      require<IoError>(dst->shape() == s.shape, f.source(), ": '", base, key, "' has shape ",
                       dst->shape(), ", but parameter '", p.name, "' has shape ", s.shape);
    }
    read.emplace_back(p.name, std::move(s));
  }
  for (auto& [name, s] : read) *opt.mutable_state(name) = std::move(s);
  opt.restore_steps(total);
}

inline constexpr const char* kWeightAveragePrefix = "weight_average.";

/// Adds a weight average (train/weight_average.hpp) to w: its tensors under
/// "weight_average." + parameter name, its snapshot count and decay in the
/// metadata. Like the optimizer state, for resuming here.
inline void add_weight_average(SafetensorsWriter& w, const train::WeightAverage& avg) {
  w.set_metadata("weight_average.count", std::to_string(avg.count()));
  w.set_metadata("weight_average.decay", std::to_string(avg.decay()));
  for (const auto& e : avg.entries()) w.add(kWeightAveragePrefix + e.name, e.value);
}

/// Restores avg from f, written by add_weight_average for the same
/// parameters and decay. Throws IoError naming the file and what does not
/// fit; on error avg keeps what it had.
inline void load_weight_average(SafetensorsFile& f, train::WeightAverage& avg) {
  const std::string* count = f.metadata_value("weight_average.count");
  const std::string* decay = f.metadata_value("weight_average.decay");
  require<IoError>(count != nullptr && decay != nullptr, f.source(),
                   ": no weight average (metadata 'weight_average.count' and "
                   "'weight_average.decay')");
  require<IoError>(*decay == std::to_string(avg.decay()), f.source(),
                   ": a weight average with decay ", *decay, ", but this one has ",
                   std::to_string(avg.decay()));
  const std::int64_t n =
      detail::metadata_count(f, "weight_average.count", *count, "a snapshot count");
  std::vector<Tensor<float>> values;
  for (const auto& e : avg.entries()) {
    const std::string key = kWeightAveragePrefix + e.name;
    require<IoError>(f.contains(key), f.source(), ": no weight average for parameter '", e.name,
                     "' (tensor '", key, "')");
    values.push_back(f.read<float>(key));
    require<IoError>(values.back().shape() == e.value.shape(), f.source(), ": '", key,
                     "' has shape ", values.back().shape(), ", but parameter '", e.name,
                     "' has shape ", e.value.shape());
  }
  avg.restore(std::move(values), n);
}

/// Writes m's tensors (save_checkpoint) and opt's state to path, atomically.
inline void save_training_checkpoint(
    nn::Module& m, train::Optimizer& opt, const std::filesystem::path& path,
    const std::vector<std::pair<std::string, std::string>>& metadata = {}) {
  SafetensorsWriter w = checkpoint_writer(m, metadata);
  add_optimizer_state(w, opt);
  w.write(path);
}

/// Loads m's tensors and opt's state from a save_training_checkpoint file.
inline LoadReport load_training_checkpoint(nn::Module& m, train::Optimizer& opt,
                                           const std::filesystem::path& path) {
  SafetensorsFile f = SafetensorsFile::open(path);
  LoadOptions lo;
  lo.ignore = {std::string(kOptimizerPrefix) + "*"};
  LoadReport r = load_checkpoint(m, f, lo);
  load_optimizer_state(f, opt);
  return r;
}

}  // namespace compressor::io
