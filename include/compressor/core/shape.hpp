// Shape: up to five extents, the rank and helpers to compare and print them.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <string>

#include "compressor/core/error.hpp"

namespace compressor {

class Shape {
 public:
  static constexpr int kMaxRank = 5;

  Shape() = default;
  Shape(std::initializer_list<std::int64_t> dims) { assign(std::span(dims.begin(), dims.size())); }
  explicit Shape(std::span<const std::int64_t> dims) { assign(dims); }

  int rank() const { return rank_; }
  std::int64_t operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
  /// Extent of dimension i; negative i counts from the back.
  std::int64_t dim(int i) const {
    const int j = i < 0 ? i + rank_ : i;
    require<ShapeError>(j >= 0 && j < rank_, "dimension ", i, " out of range for shape ", str());
    return dims_[static_cast<std::size_t>(j)];
  }
  std::span<const std::int64_t> dims() const {
    return {dims_.data(), static_cast<std::size_t>(rank_)};
  }
  std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
    return n;
  }
  /// The same shape with dimension 0 replaced by n.
  Shape with_dim0(std::int64_t n) const {
    Shape s = *this;
    s.dims_[0] = n;
    return s;
  }

  friend bool operator==(const Shape& a, const Shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[static_cast<std::size_t>(i)] != b.dims_[static_cast<std::size_t>(i)])
        return false;
    return true;
  }

  /// "(2, 3, 4)", as PyTorch prints a size.
  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[static_cast<std::size_t>(i)]);
    }
    return s + ")";
  }

 private:
  void assign(std::span<const std::int64_t> dims) {
    require<ShapeError>(dims.size() <= kMaxRank, "a shape has at most ", kMaxRank,
                        " dimensions, got ", dims.size());
    rank_ = static_cast<int>(dims.size());
    for (std::size_t i = 0; i < dims.size(); ++i) {
      require<ShapeError>(dims[i] >= 0, "negative extent ", dims[i], " in dimension ", i);
      dims_[i] = dims[i];
    }
  }

  std::array<std::int64_t, kMaxRank> dims_{};
  int rank_ = 0;
};

/// Streams str(). A Shape given to require() itself is formatted only when
/// the check fails; shape.str() there would build the string on every call.
inline std::ostream& operator<<(std::ostream& os, const Shape& s) {
  return os << s.str();
}

/// Throws ShapeError naming both shapes unless they are equal.
inline void check_same_shape(const Shape& got, const Shape& expected, std::string_view what) {
  if (!(got == expected))
    throw ShapeError(
        detail::concat(what, ": shape ", got.str(), " does not match expected ", expected.str()));
}

}  // namespace compressor
