// Helpers of the pruning tests: a random image batch, zero counting, scratch files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "compressor/core/rng.hpp"
#include "compressor/data/batch.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/prune/mask.hpp"
#include "support/test_util.hpp"

namespace compressor::testing {

/// n random NHWC images (hw x hw x 3) with labels in [0, classes).
inline data::Batch random_image_batch(std::int64_t n, std::int64_t hw, std::uint64_t seed,
                                      std::int64_t classes = 10) {
  Rng rng(seed);
  data::Batch b;
  b.inputs = random_tensor(Shape{n, hw, hw, 3}, rng);
  b.labels = Tensor<std::int32_t>(Shape{n});
  for (std::int64_t i = 0; i < n; ++i)
    b.labels[i] = static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(classes)));
  return b;
}

/// A path in the test's scratch folder (created on first use).
inline std::filesystem::path temp_path(const std::string& name) {
  const auto dir = std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "prune_tmp";
  std::filesystem::create_directories(dir);
  return dir / name;
}

/// Zeros of the weight of the layer at name.
inline std::int64_t zeros_of(nn::Module& m, const std::string& layer) {
  const Tensor<float>& w = *prune::weight_parameter(m, layer).value;
  std::int64_t z = 0;
  for (const float v : w.flat()) z += v == 0.f ? 1 : 0;
  return z;
}

}  // namespace compressor::testing
