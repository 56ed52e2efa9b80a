// RepeatBatch: a BatchSource that hands out the same batch `repeat` times per
// epoch (training-loop tests overfit or step on one fixed batch).
#pragma once

#include <cstdint>
#include <utility>

#include "compressor/data/batch.hpp"

namespace compressor::testing {

class RepeatBatch : public data::BatchSource {
 public:
  RepeatBatch(data::Batch b, std::int64_t repeat) : b_(std::move(b)), repeat_(repeat) {}
  void start_epoch(std::uint64_t) override { i_ = 0; }
  bool next(data::Batch& out) override {
    if (i_ == repeat_) return false;
    ++i_;
    out = b_;
    return true;
  }
  std::int64_t num_batches() const override { return repeat_; }
  std::int64_t num_samples() const override { return repeat_ * b_.size(); }

 private:
  data::Batch b_;
  std::int64_t repeat_, i_ = 0;
};

}  // namespace compressor::testing
