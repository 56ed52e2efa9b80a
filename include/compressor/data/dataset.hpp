// Dataset: random access to samples, the interface the DataLoader batches.
// A sample is a float tensor of sample_shape() (an image (H, W, C) or a clip
// (T, H, W, C)) and a target (class label or regression value).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "compressor/core/error.hpp"
#include "compressor/core/rng.hpp"
#include "compressor/core/shape.hpp"
#include "compressor/core/tensor.hpp"

namespace compressor::data {

enum class TargetKind : std::uint8_t {
  label,  ///< classification: Batch::labels (N)
  value,  ///< regression: Batch::targets (N, 1)
};

/// The target of one sample; `label` for TargetKind::label, `value` otherwise.
struct Target {
  std::int32_t label = -1;
  float value = 0.f;
};

class Dataset {
 public:
  virtual ~Dataset() = default;

  virtual std::int64_t size() const = 0;
  /// Shape of one sample's input, e.g. (32, 32, 3) or (32, 112, 112, 3).
  virtual Shape sample_shape() const = 0;
  virtual TargetKind target_kind() const = 0;

  /// Writes sample i into out (of sample_shape()) and returns its target.
  /// Augmentation draws only from rng, which the loader derives from (seed,
  /// epoch, i), so the result does not depend on threads or prefetching.
  /// Must be safe to call concurrently for different samples. Throws an Error
  /// naming the sample's file when it cannot be read.
  virtual Target get(std::int64_t i, TensorView<float> out, Rng& rng) const = 0;

  /// A name for sample i in messages (a file name, or "sample <i>").
  virtual std::string describe(std::int64_t i) const { return "sample " + std::to_string(i); }
};

/// Samples [begin, begin + count) of another data set, as a data set of its
/// own: sample i is the base's sample begin + i (its file names the same in
/// messages). The loader derives augmentation from the index it is given, so
/// a sample's augmentation here differs from the one it gets in the base.
class Subset final : public Dataset {
 public:
  Subset(std::shared_ptr<const Dataset> base, std::int64_t begin, std::int64_t count)
      : base_(std::move(base)), begin_(begin), count_(count) {
    require(base_ != nullptr, "Subset: null data set");
    require(begin_ >= 0 && count_ >= 0 && begin_ + count_ <= base_->size(), "Subset: samples [",
            begin_, ", ", begin_ + count_, ") are not within the data set's ", base_->size());
  }
  std::int64_t size() const override { return count_; }
  Shape sample_shape() const override { return base_->sample_shape(); }
  TargetKind target_kind() const override { return base_->target_kind(); }
  Target get(std::int64_t i, TensorView<float> out, Rng& rng) const override {
    require(i >= 0 && i < count_, "Subset: sample ", i, " of ", count_);
    return base_->get(begin_ + i, out, rng);
  }
  std::string describe(std::int64_t i) const override { return base_->describe(begin_ + i); }

 private:
  std::shared_ptr<const Dataset> base_;
  std::int64_t begin_, count_;
};

}  // namespace compressor::data
