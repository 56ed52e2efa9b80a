// ImageSet: a labelled image data set held in memory as 8-bit NHWC pixels
// (4x smaller than float; loaders convert and normalise per batch).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"

namespace compressor::data {

struct ImageSet {
  Tensor<std::uint8_t> images;       ///< (N, H, W, C)
  Tensor<std::int32_t> labels;       ///< (N), values in [0, classes.size())
  std::vector<std::string> classes;  ///< class names, index = label
  std::int64_t skipped = 0;          ///< bad samples skipped while reading (OnError::skip)

  std::int64_t size() const { return images.rank() == 4 ? images.dim(0) : 0; }
  std::int64_t height() const { return images.dim(1); }
  std::int64_t width() const { return images.dim(2); }
  std::int64_t channels() const { return images.dim(3); }

  /// Number of images of each class.
  std::vector<std::int64_t> class_counts() const {
    std::vector<std::int64_t> counts(classes.size(), 0);
    for (std::int32_t l : labels.flat()) counts.at(static_cast<std::size_t>(l))++;
    return counts;
  }
};

/// Concatenates sets with the same image size and classes (e.g. CIFAR-10's
/// five training batches).
inline ImageSet concat(const std::vector<ImageSet>& parts) {
  require(!parts.empty(), "concat: no image sets");
  const ImageSet& first = parts.front();
  std::int64_t n = 0;
  for (const auto& p : parts) {
    require<ShapeError>(p.images.rank() == 4 && p.height() == first.height() &&
                            p.width() == first.width() && p.channels() == first.channels(),
                        "concat: image shape ", p.images.shape(), " does not match ",
                        first.images.shape());
    require(p.classes == first.classes, "concat: image sets have different classes");
    n += p.size();
  }
  ImageSet out;
  out.classes = first.classes;
  out.images.resize(first.images.shape().with_dim0(n));
  out.labels.resize(Shape{n});
  std::int64_t at = 0;
  for (const auto& p : parts) {
    out.images.narrow(at, p.size()).copy_from(p.images.view());
    out.labels.narrow(at, p.size()).copy_from(p.labels.view());
    out.skipped += p.skipped;
    at += p.size();
  }
  return out;
}

}  // namespace compressor::data
