// ImageSet: a labelled image data set held in memory as 8-bit NHWC pixels
// (4x smaller than float; loaders convert and normalise per batch).
#pragma once

#include <cstdint>
#include <iterator>
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

/// The indices of s with the classes taken in turn: the first image of each
/// class (in class order), then the second of each, and so on; a class with
/// no images left is passed over. Any run of it is as balanced over the
/// classes as the set allows, also for an image folder, whose images come
/// class by class: its first N images in file order are one class.
/// (compare_quant_pytorch.py's binary layout of an image folder, record
/// 10 i + c, is this order.)
inline std::vector<std::int64_t> class_interleaved_order(const ImageSet& s) {
  std::vector<std::vector<std::int64_t>> per_class(s.classes.size());
  for (std::int64_t i = 0; i < s.size(); ++i) {
    const std::int32_t l = s.labels[i];
    require(l >= 0 && static_cast<std::size_t>(l) < per_class.size(),
            "class_interleaved_order: image ", i, " has label ", l, ", outside [0, ",
            per_class.size(), ")");
    per_class[static_cast<std::size_t>(l)].push_back(i);
  }
  std::vector<std::int64_t> order;
  order.reserve(static_cast<std::size_t>(s.size()));
  for (std::size_t round = 0; std::ssize(order) < s.size(); ++round)
    for (const auto& idx : per_class)
      if (round < idx.size()) order.push_back(idx[round]);
  return order;
}

/// The images of s at the given indices, in that order.
inline ImageSet select(const ImageSet& s, const std::vector<std::int64_t>& indices) {
  ImageSet out;
  out.classes = s.classes;
  const auto n = static_cast<std::int64_t>(indices.size());
  out.images.resize(s.images.shape().with_dim0(n));
  out.labels.resize(Shape{n});
  for (std::int64_t j = 0; j < n; ++j) {
    const std::int64_t i = indices[static_cast<std::size_t>(j)];
    require<ShapeError>(i >= 0 && i < s.size(), "select: index ", i, " outside the set's [0, ",
                        s.size(), ")");
    out.images.narrow(j, 1).copy_from(s.images.narrow(i, 1));
    out.labels[j] = s.labels[i];
  }
  return out;
}

}  // namespace compressor::data
