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
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string_view>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/quant/qparams.hpp"

namespace compressor::quant {

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
  QuantParams qparams() const { return choose_activation_params(range()); }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    if (!is_frozen()) observe(x);
    return x;
  }
  TensorView<const float> backward_impl(TensorView<const float> g) override { return g; }
};

}  // namespace compressor::quant
