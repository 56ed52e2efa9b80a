// Tensor<T> (owning, contiguous, 64-byte aligned) and TensorView<T> (a cheap,
// non-owning view of contiguous memory). Activations are NHWC, conv weights
// OHWI and video clips (N, T, H, W, C); see docs/architecture.md.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "compressor/core/aligned_buffer.hpp"
#include "compressor/core/dtype.hpp"
#include "compressor/core/error.hpp"
#include "compressor/core/shape.hpp"

namespace compressor {

template <TensorElement T>
class TensorView;
template <TensorElement T>
class Tensor;

namespace detail {

/// The accessors of TensorView (shallow const, like std::span). Derived
/// provides data() and shape().
template <class Derived, class T>
class TensorAccess {
 public:
  using Scalar = std::remove_const_t<T>;
  using MatrixMap = Eigen::Map<std::conditional_t<
      std::is_const_v<T>,
      const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>,
      Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>>;
  using VectorMap = Eigen::Map<
      std::conditional_t<std::is_const_v<T>, const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>,
                         Eigen::Matrix<Scalar, Eigen::Dynamic, 1>>>;

  int rank() const { return self().shape().rank(); }
  std::int64_t dim(int i) const { return self().shape().dim(i); }
  std::int64_t numel() const { return self().shape().numel(); }
  bool empty() const { return numel() == 0; }

  /// Flat element access (contiguous, row-major).
  T& operator[](std::int64_t i) const { return ptr()[i]; }

  /// Multi-index element access; the number of indices must equal the rank.
  template <class... I>
  T& operator()(I... idx) const {
    const std::int64_t ix[] = {static_cast<std::int64_t>(idx)...};
    const Shape& s = self().shape();
    std::int64_t off = 0;
    for (int d = 0; d < static_cast<int>(sizeof...(I)); ++d) off = off * s[d] + ix[d];
    return ptr()[off];
  }

  std::span<T> flat() const { return {ptr(), static_cast<std::size_t>(numel())}; }

  /// Row-major (rows x cols) Eigen map of the whole tensor; rows*cols == numel.
  MatrixMap matrix(std::int64_t rows, std::int64_t cols) const {
    require<ShapeError>(rows * cols == numel(), "cannot view tensor of shape ", self().shape(),
                        " as a ", rows, "x", cols, " matrix");
    return MatrixMap(ptr(), rows, cols);
  }
  /// (dim0 x rest) matrix: e.g. (N*H*W x C) needs a reshape first.
  MatrixMap matrix() const {
    const std::int64_t rows = rank() == 0 ? 1 : dim(0);
    return matrix(rows, rows == 0 ? 0 : numel() / rows);
  }
  VectorMap vector() const { return VectorMap(ptr(), numel()); }

  /// A view with another shape of the same number of elements.
  TensorView<T> reshape(const Shape& s) const {
    require<ShapeError>(s.numel() == numel(), "cannot reshape tensor of shape ", self().shape(),
                        " to ", s, " (element counts differ)");
    return TensorView<T>(ptr(), s);
  }
  /// Element i along dimension 0, as a view of rank-1.
  TensorView<T> slice(std::int64_t i) const {
    const Shape& s = self().shape();
    require<ShapeError>(s.rank() >= 1 && i >= 0 && i < s[0], "slice index ", i,
                        " out of range for shape ", s);
    const std::int64_t stride = s[0] ? s.numel() / s[0] : 0;
    return TensorView<T>(ptr() + i * stride, Shape(s.dims().subspan(1)));
  }
  /// Elements [begin, begin+count) along dimension 0, as a view of the same rank.
  TensorView<T> narrow(std::int64_t begin, std::int64_t count) const {
    const Shape& s = self().shape();
    require<ShapeError>(s.rank() >= 1 && begin >= 0 && count >= 0 && begin + count <= s[0],
                        "narrow [", begin, ", ", begin + count, ") out of range for shape ", s);
    const std::int64_t stride = s[0] ? s.numel() / s[0] : 0;
    return TensorView<T>(ptr() + begin * stride, s.with_dim0(count));
  }

  void fill(Scalar v) const requires(!std::is_const_v<T>) { std::fill_n(ptr(), numel(), v); }
  /// Copies src (same shape) into this memory.
  void copy_from(TensorView<const Scalar> src) const requires(!std::is_const_v<T>) {
    check_same_shape(src.shape(), self().shape(), "copy_from");
    std::copy_n(src.data(), src.numel(), ptr());
  }

 private:
  const Derived& self() const { return static_cast<const Derived&>(*this); }
  T* ptr() const { return self().data(); }
};

}  // namespace detail

/// A non-owning view of contiguous memory with a shape. T may be const.
/// The memory must outlive the view.
template <TensorElement T>
class TensorView : public detail::TensorAccess<TensorView<T>, T> {
 public:
  TensorView() = default;
  TensorView(T* data, const Shape& shape) : data_(data), shape_(shape) {}
  /// A view of non-const data converts to a view of const data.
  template <class U>
  requires(std::is_const_v<T>&& std::is_same_v<const U, T>) TensorView(TensorView<U> o)
      : data_(o.data()), shape_(o.shape()) {}

  T* data() const { return data_; }
  const Shape& shape() const { return shape_; }

 private:
  T* data_ = nullptr;
  Shape shape_;
};

/// An owning, contiguous, 64-byte aligned tensor with value semantics: copying
/// copies the elements, moving is cheap. resize() keeps the allocation when it
/// is large enough, so buffers reused across calls allocate nothing.
template <TensorElement T>
class Tensor {
  static_assert(!std::is_const_v<T>, "Tensor owns mutable elements; use TensorView<const T>");

 public:
  using value_type = T;

  /// An empty tensor of shape (0).
  Tensor() = default;
  /// Zero-filled tensor of the given shape.
  explicit Tensor(const Shape& shape) { resize(shape); }
  Tensor(const Shape& shape, T value) : Tensor(shape) { fill(value); }
  /// Deep copy of a view.
  explicit Tensor(TensorView<const T> src) : Tensor(src.shape()) {
    std::copy_n(src.data(), src.numel(), data());
  }
  /// Tensor of the given shape holding a copy of values (size must match).
  static Tensor from(const Shape& shape, std::span<const T> values) {
    require<ShapeError>(static_cast<std::int64_t>(values.size()) == shape.numel(),
                        "Tensor::from: ", values.size(), " values for shape ", shape);
    Tensor t(shape);
    std::copy(values.begin(), values.end(), t.data());
    return t;
  }
  static Tensor from(const Shape& shape, std::initializer_list<T> values) {
    return from(shape, std::span<const T>(values.begin(), values.size()));
  }

  Tensor(const Tensor& o) : Tensor(o.view()) {}
  Tensor(Tensor&& o) noexcept
      : buf_(std::move(o.buf_)), shape_(std::exchange(o.shape_, Shape{0})) {}
  Tensor& operator=(const Tensor& o) {
    if (this != &o) {
      resize(o.shape_);
      std::copy_n(o.data(), o.numel(), data());
    }
    return *this;
  }
  Tensor& operator=(Tensor&& o) noexcept {
    buf_ = std::move(o.buf_);
    shape_ = std::exchange(o.shape_, Shape{0});
    return *this;
  }

  /// Sets the shape, reallocating only when the capacity is too small. The
  /// element values are unspecified afterwards (zero after a reallocation).
  void resize(const Shape& shape) {
    buf_.reserve_discard(static_cast<std::size_t>(shape.numel()));
    shape_ = shape;
  }

  T* data() { return buf_.data(); }
  const T* data() const { return buf_.data(); }
  const Shape& shape() const { return shape_; }
  std::size_t capacity() const { return buf_.capacity(); }

  TensorView<T> view() { return {data(), shape_}; }
  TensorView<const T> view() const { return {data(), shape_}; }
  operator TensorView<T>() { return view(); }
  operator TensorView<const T>() const { return view(); }

  // The accessors of TensorView, const-correct: a const Tensor gives const elements.
  int rank() const { return shape_.rank(); }
  std::int64_t dim(int i) const { return shape_.dim(i); }
  std::int64_t numel() const { return shape_.numel(); }
  bool empty() const { return numel() == 0; }
  T& operator[](std::int64_t i) { return data()[i]; }
  const T& operator[](std::int64_t i) const { return data()[i]; }
  template <class... I>
  T& operator()(I... idx) {
    return view()(idx...);
  }
  template <class... I>
  const T& operator()(I... idx) const {
    return view()(idx...);
  }
  std::span<T> flat() { return view().flat(); }
  std::span<const T> flat() const { return view().flat(); }
  auto matrix(std::int64_t rows, std::int64_t cols) { return view().matrix(rows, cols); }
  auto matrix(std::int64_t rows, std::int64_t cols) const { return view().matrix(rows, cols); }
  auto matrix() { return view().matrix(); }
  auto matrix() const { return view().matrix(); }
  auto vector() { return view().vector(); }
  auto vector() const { return view().vector(); }
  TensorView<T> reshape(const Shape& s) { return view().reshape(s); }
  TensorView<const T> reshape(const Shape& s) const { return view().reshape(s); }
  TensorView<T> slice(std::int64_t i) { return view().slice(i); }
  TensorView<const T> slice(std::int64_t i) const { return view().slice(i); }
  TensorView<T> narrow(std::int64_t b, std::int64_t n) { return view().narrow(b, n); }
  TensorView<const T> narrow(std::int64_t b, std::int64_t n) const { return view().narrow(b, n); }
  void fill(T v) { std::fill_n(data(), numel(), v); }
  void copy_from(TensorView<const T> src) { view().copy_from(src); }

 private:
  AlignedBuffer<T> buf_;
  Shape shape_{0};  // rank 0 would mean one element (a scalar)
};

/// Copies a view into a new owning tensor.
template <TensorElement T>
Tensor<std::remove_const_t<T>> clone(TensorView<T> v) {
  return Tensor<std::remove_const_t<T>>(TensorView<const std::remove_const_t<T>>(v));
}

}  // namespace compressor
