// The state every observer keeps: the extremes it has seen and how many
// tensors, as buffers "min_val", "max_val" (float scalars, +inf / -inf before
// the first tensor, as in PyTorch) and "num_observed" (int64 scalar), so they
// are saved with a model and deep-copied by clone(). Registered first, in
// this order, by the constructor: clone() copies buffers by index.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/quant/minmax_scan.hpp"
#include "compressor/quant/observer.hpp"

namespace compressor::quant {

class ExtremaObserver : public Observer {
 public:
  std::int64_t observed() const override { return num_observed_[0]; }

  /// The smallest and largest values recorded (for the moving average: the
  /// averaged ones). Throws before the first tensor.
  Range observed_range() const {
    check_observed("observed_range()");
    return {min_val_[0], max_val_[0]};
  }

  void set_range_reducer(std::shared_ptr<RangeReducer> r) override {
    range_reducer_ = std::move(r);
  }

  void reset() override {
    min_val_[0] = std::numeric_limits<float>::infinity();
    max_val_[0] = -std::numeric_limits<float>::infinity();
    num_observed_[0] = 0;
  }

 protected:
  ExtremaObserver() {
    min_val_ = Tensor<float>(Shape{}, std::numeric_limits<float>::infinity());
    max_val_ = Tensor<float>(Shape{}, -std::numeric_limits<float>::infinity());
    num_observed_ = Tensor<std::int64_t>(Shape{}, 0);
    register_buffer("min_val", min_val_);
    register_buffer("max_val", max_val_);
    register_buffer("num_observed", num_observed_);
  }

  /// x's extremes (a non-finite value is a ValueError), over all replicas
  /// when a reducer is set (every replica calls this for every tensor, also
  /// an empty one); false when no value was seen (x empty on every replica).
  bool tensor_extremes(TensorView<const float> x, MinMax& b) const {
    if (x.numel() > 0) b = finite_min_max(x, type_name());
    if (range_reducer_) range_reducer_->reduce(b.min, b.max);
    return b.min <= b.max;
  }

  /// Throws ValueError unless something was observed.
  void check_observed(std::string_view what) const {
    require(observed() > 0, type_name(), ": ", what,
            " called before any tensor was observed (run calibration data through it first)");
  }

  Tensor<float> min_val_, max_val_;
  Tensor<std::int64_t> num_observed_;
};

}  // namespace compressor::quant
