// narrow_cifar_plan: the CifarCnn's plan with every conv narrowed, a model
// with every layer, point and fusion of the full one at a fraction of its
// MACs (fast tests; the sanitizer build runs them too).
#pragma once

#include <cstdint>

#include "compressor/models/cifar_cnn.hpp"

namespace compressor::testing {

/// CifarCnn's default plan with every conv's channels divided by `divisor`.
inline nn::ChannelPlan narrow_cifar_plan(std::int64_t divisor, std::int64_t num_classes = 10) {
  nn::ChannelPlan plan = models::CifarCnn::default_plan(num_classes);
  for (auto& [name, c] : plan.channels)
    if (name != "fc") c /= divisor;
  return plan;
}

}  // namespace compressor::testing
