// Batch and BatchSource: what data loaders hand to the training loop.
#pragma once

#include <cstdint>
#include <string>

#include "compressor/core/tensor.hpp"

namespace compressor::data {

/// One mini-batch. inputs is NHWC images (N, H, W, C) or clips (N, T, H, W, C).
/// Classification fills labels (N) with class indices; regression fills
/// targets (N, 1). The unused one is empty.
struct Batch {
  Tensor<float> inputs;
  Tensor<std::int32_t> labels;
  Tensor<float> targets;

  std::int64_t size() const { return inputs.rank() == 0 ? 0 : inputs.dim(0); }
};

/// A source of mini-batches, one pass per epoch. Implementations must be
/// deterministic for a given seed and epoch (shuffling and augmentation), so
/// that a training run is reproducible.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// Starts epoch `epoch` (reshuffles, restarts prefetching).
  virtual void start_epoch(std::uint64_t epoch) = 0;
  /// Writes the next batch into out (reusing its buffers); false at epoch end.
  virtual bool next(Batch& out) = 0;
  /// Batches per epoch (the last one may be partial).
  virtual std::int64_t num_batches() const = 0;
  /// Samples per epoch.
  virtual std::int64_t num_samples() const = 0;
};

}  // namespace compressor::data
