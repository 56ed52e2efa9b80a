// Helpers of the surgery tests: random BatchNorm statistics (as a trained
// model has) and output comparison.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"
#include "support/test_util.hpp"

namespace compressor::testing {

/// Gives every normalisation random gamma, beta, running mean and variance.
inline void randomize_batchnorms(nn::Module& m, Rng& rng) {
  m.visit([&](const std::string&, nn::Module& l) {
    auto* bn = nn::as<nn::Normalization>(l);
    if (bn == nullptr) return;
    for (auto& v : bn->weight().flat()) v = static_cast<float>(rng.uniform(0.5, 1.5));
    for (auto& v : bn->bias().flat()) v = static_cast<float>(rng.uniform(-0.5, 0.5));
    for (auto& v : bn->running_mean().flat()) v = static_cast<float>(rng.uniform(-0.3, 0.3));
    for (auto& v : bn->running_var().flat()) v = static_cast<float>(rng.uniform(0.5, 2.0));
  });
}

/// max |a - b| / max |b|: differences relative to the largest output magnitude.
inline double rel_to_max(TensorView<const float> a, TensorView<const float> b) {
  check_same_shape(a.shape(), b.shape(), "rel_to_max");
  double d = 0, m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    d = std::max(d, std::abs(double(a[i]) - double(b[i])));
    m = std::max(m, std::abs(double(b[i])));
  }
  return m > 0 ? d / m : d;
}

inline bool bit_equal(TensorView<const float> a, TensorView<const float> b) {
  if (!(a.shape() == b.shape())) return false;
  return std::equal(a.data(), a.data() + a.numel(), b.data(),
                    [](float x, float y) { return std::memcmp(&x, &y, sizeof x) == 0; });
}

}  // namespace compressor::testing
