// MappedSource: a BatchSource that applies a function to every batch of
// another source, e.g. to standardise regression targets for training.
#pragma once

#include <cstdint>
#include <functional>
#include <utility>

#include "compressor/data/batch.hpp"

namespace compressor::data {

class MappedSource final : public BatchSource {
 public:
  /// `source` must outlive this object.
  MappedSource(BatchSource& source, std::function<void(Batch&)> fn)
      : src_(source), fn_(std::move(fn)) {}

  void start_epoch(std::uint64_t epoch) override { src_.start_epoch(epoch); }
  bool next(Batch& out) override {
    if (!src_.next(out)) return false;
    fn_(out);
    return true;
  }
  std::int64_t num_batches() const override { return src_.num_batches(); }
  std::int64_t num_samples() const override { return src_.num_samples(); }

 private:
  BatchSource& src_;
  std::function<void(Batch&)> fn_;
};

/// Maps regression targets t to (t - mean) / stddev.
inline std::function<void(Batch&)> standardize_targets(float mean, float stddev) {
  return [mean, stddev](Batch& b) {
    for (auto& t : b.targets.flat()) t = (t - mean) / stddev;
  };
}

}  // namespace compressor::data
