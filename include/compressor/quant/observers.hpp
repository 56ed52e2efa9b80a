// The concrete observers (docs/quantization.md, "Observers") and the factory
// the experiments' --observer flag uses:
//
//   MinMaxObserver               running min / max of everything observed
//   MovingAverageMinMaxObserver  PyTorch's rule: the first tensor sets min /
//                                max, each later one moves them by
//                                c * (tensor min - min), c * (tensor max - max)
//   HistogramObserver            quant/histogram_observer.hpp
//
// Every observer rejects NaN and inf with a ValueError, ignores empty tensors
// (the min/max ones: empty on every replica, when reducing across replicas),
// throws from range() before the first tensor, and keeps its statistics in
// buffers (min_val, max_val, num_observed, histogram), so a model saves and
// clones them with its weights. Weights need no observer (they do not change
// during calibration): per_channel_absmax() / per_channel_range() below, or
// weight_scales() in qparams.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/quant/extrema_observer.hpp"
#include "compressor/quant/histogram_observer.hpp"
#include "compressor/quant/minmax_scan.hpp"
#include "compressor/quant/observer.hpp"

namespace compressor::quant {

class MinMaxObserver : public ExtremaObserver {
 public:
  MinMaxObserver() = default;
  std::string_view type_name() const override { return "MinMaxObserver"; }

  void observe(TensorView<const float> x) override {
    MinMax b;
    if (!tensor_extremes(x, b)) return;
    min_val_[0] = std::min(min_val_[0], b.min);
    max_val_[0] = std::max(max_val_[0], b.max);
    num_observed_[0] += 1;
  }

  Range range() const override { return observed_range(); }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<MinMaxObserver>();
  }
};

class MovingAverageMinMaxObserver : public ExtremaObserver {
 public:
  /// averaging_constant c in (0, 1]: 1 keeps the last tensor's extremes.
  explicit MovingAverageMinMaxObserver(float averaging_constant = 0.01f) : c_(averaging_constant) {
    require(averaging_constant > 0.f && averaging_constant <= 1.f,
            "MovingAverageMinMaxObserver: averaging_constant must be in (0, 1], got ",
            averaging_constant);
  }
  std::string_view type_name() const override { return "MovingAverageMinMaxObserver"; }
  float averaging_constant() const { return c_; }

  /// min += c * (tensor min - min), computed in double and rounded once to
  /// float (likewise max); the first tensor sets both.
  void observe(TensorView<const float> x) override {
    MinMax b;
    if (!tensor_extremes(x, b)) return;
    if (observed() == 0) {
      min_val_[0] = b.min;
      max_val_[0] = b.max;
    } else {
      min_val_[0] = move_towards(min_val_[0], b.min);
      max_val_[0] = move_towards(max_val_[0], b.max);
    }
    num_observed_[0] += 1;
  }

  Range range() const override { return observed_range(); }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<MovingAverageMinMaxObserver>(c_);
  }

 private:
  float move_towards(float v, float target) const {
    const double d = static_cast<double>(v);
    return static_cast<float>(d + static_cast<double>(c_) * (static_cast<double>(target) - d));
  }

  float c_;
};

// ---- the factory ---------------------------------------------------------------

/// The names make_observer() accepts, in the order the help text lists them.
inline constexpr std::string_view kObserverNames[] = {"minmax", "moving_average", "histogram",
                                                      "histogram_mse", "histogram_kl"};

/// "minmax, moving_average, histogram, histogram_mse, histogram_kl".
inline std::string observer_names() {
  std::string s;
  for (const auto n : kObserverNames) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

/// An observer with default settings by name: "minmax", "moving_average"
/// (c = 0.01), "histogram" (2048 bins, 99.99th percentile), "histogram_mse",
/// "histogram_kl". Anything else: ValueError listing the names.
inline std::unique_ptr<Observer> make_observer(std::string_view name) {
  if (name == "minmax") return std::make_unique<MinMaxObserver>();
  if (name == "moving_average") return std::make_unique<MovingAverageMinMaxObserver>();
  if (name == "histogram") return std::make_unique<HistogramObserver>();
  if (name == "histogram_mse")
    return std::make_unique<HistogramObserver>(2048, HistogramMethod::mse);
  if (name == "histogram_kl") return std::make_unique<HistogramObserver>(2048, HistogramMethod::kl);
  throw ValueError(compressor::detail::concat("unknown observer '", name,
                                              "' (expected one of: ", observer_names(), ")"));
}

// ---- weights -------------------------------------------------------------------

/// [min, max] of each output channel of a weight whose output channels are
/// its first axis (OHWI conv weights, (out, in) Linear weights). Throws on a
/// non-finite weight, naming the channel.
inline std::vector<Range> per_channel_range(TensorView<const float> w) {
  require<ShapeError>(w.rank() >= 1 && w.dim(0) > 0, "per_channel_range: weight of shape ",
                      w.shape());
  const std::int64_t c = w.dim(0), per = w.numel() / c;
  std::vector<Range> out(static_cast<std::size_t>(c));
  for (std::int64_t o = 0; o < c; ++o) {
    const MinMax m = scan_min_max(w.data() + o * per, per);
    require(m.finite, "per_channel_range: non-finite weight in output channel ", o,
            " of a weight of shape ", w.shape());
    out[static_cast<std::size_t>(o)] = per > 0 ? Range{m.min, m.max} : Range{};
  }
  return out;
}

/// max |w| of each output channel (weight_scales() divides it by the grid's qmax).
inline std::vector<float> per_channel_absmax(TensorView<const float> w) {
  const std::vector<Range> r = per_channel_range(w);
  std::vector<float> out(r.size());
  for (std::size_t o = 0; o < r.size(); ++o) out[o] = std::max(-r[o].min, r[o].max);
  return out;
}

}  // namespace compressor::quant
