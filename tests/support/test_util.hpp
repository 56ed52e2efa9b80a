// Small helpers shared by the tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "compressor/core/rng.hpp"
#include "compressor/core/tensor.hpp"

namespace compressor::testing {

/// Tensor of the given shape with uniform values in [lo, hi).
inline Tensor<float> random_tensor(const Shape& s, Rng& rng, float lo = -1.f, float hi = 1.f) {
  Tensor<float> t(s);
  for (auto& v : t.flat()) v = static_cast<float>(rng.uniform(lo, hi));
  return t;
}

/// Largest |a-b| / (atol + rtol*|b|) over all elements; <= 1 means "close".
inline double max_rel_excess(TensorView<const float> a, TensorView<const float> b, double rtol,
                             double atol) {
  check_same_shape(a.shape(), b.shape(), "max_rel_excess");
  double worst = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    const double d = std::abs(double(a[i]) - double(b[i]));
    worst = std::max(worst, d / (atol + rtol * std::abs(double(b[i]))));
  }
  return worst;
}

}  // namespace compressor::testing
