// Small helpers shared by the tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

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

/// Sizes that cross every blocking edge of a kernel: 1..17, then 2^j - 1,
/// 2^j and 2^j + 1 for j = 5..max_pow.
inline std::vector<std::int64_t> edge_sizes(int max_pow) {
  std::vector<std::int64_t> s;
  for (std::int64_t i = 1; i <= 17; ++i) s.push_back(i);
  for (int j = 5; j <= max_pow; ++j)
    for (std::int64_t d : {-1, 0, 1}) s.push_back((std::int64_t{1} << j) + d);
  return s;
}

}  // namespace compressor::testing
