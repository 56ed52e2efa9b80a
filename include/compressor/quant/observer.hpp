// Observers: modules that record the range of the tensors they see, from
// which activation quantization parameters are computed. An observer is
// attached as a module's output hook (Module::set_output_hook; it shows in the
// tree as "activation_post_process"): forward(y) records y unless the
// observer is frozen (Module::freeze, in any mode) and returns y itself, no
// copy; backward passes the gradient through. Recording is cheap (vectorised
// min/max or fixed-bin histograms, no allocation per batch); choosing the
// range (range()) is a separate step, done once after calibration.
//
// A non-finite value in an observed tensor is an error: a NaN in the
// calibration data must not become a scale.
//
// Data-parallel QAT (docs/distributed.md): with a RangeReducer set, the
// min/max observers record each step's extremes over ALL replicas' samples
// (distributed::synchronize_observers), so every replica holds the ranges one
// process would with the global batch. The histogram observer does not
// support this (calibrate PTQ on one rank).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/quant/qparams.hpp"

namespace compressor::quant {

/// Combines one tensor's extremes over the replicas of data-parallel
/// training; the core library knows only this interface.
class RangeReducer {
 public:
  virtual ~RangeReducer() = default;
  /// Collective (every replica calls it at the same point of every step):
  /// lo := min over replicas of lo, hi := max over replicas of hi. A replica
  /// without values passes +inf and -inf.
  virtual void reduce(float& lo, float& hi) = 0;
};

class Observer : public nn::Module {
 public:
  /// Records x (the calibration statistics).
  virtual void observe(TensorView<const float> x) = 0;
  /// The range chosen from what was recorded; throws if nothing was.
  virtual Range range() const = 0;
  /// Forgets everything recorded.
  virtual void reset() = 0;
  /// Number of tensors recorded since the last reset.
  virtual std::int64_t observed() const = 0;

  /// The activation parameters of range().
  QuantParams qparams() const {
    try {
      return choose_activation_params(range());
    } catch (const ValueError& e) {
      throw ValueError(detail::concat(where(), e.what()));
    }
  }

  /// The quantization point this observer watches, for error messages.
  void set_label(std::string label) { label_ = std::move(label); }
  const std::string& label() const { return label_; }

  /// Records each tensor's extremes over all replicas through r (null: this
  /// replica's own). Observers that cannot combine their statistics that way
  /// throw ValueError. Not copied by clone().
  virtual void set_range_reducer(std::shared_ptr<RangeReducer> r) {
    if (r == nullptr) return;
    throw ValueError(detail::concat(where(), type_name(),
                                    " cannot combine its statistics across replicas (only the "
                                    "min/max observers can): calibrate on one rank, or use "
                                    "minmax or moving_average for data-parallel QAT"));
  }
  /// Whether observing joins a reduction over replicas: a reducer is set and
  /// the observer is not frozen.
  bool reduces_across_replicas() const override { return range_reducer_ && !is_frozen(); }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    if (is_frozen()) return x;
    try {
      observe(x);
    } catch (const ValueError& e) {
      throw ValueError(detail::concat(where(), e.what()));
    }
    return x;
  }
  /// The reducer set_range_reducer() accepted (subclasses that support it store it here).
  std::shared_ptr<RangeReducer> range_reducer_;

  std::string where() const {
    return label_.empty() ? std::string() : "quantization point '" + label_ + "': ";
  }
  TensorView<const float> backward_impl(TensorView<const float> g) override { return g; }

 private:
  std::string label_;
};

}  // namespace compressor::quant
