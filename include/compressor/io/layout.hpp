// Conversions between PyTorch's channels-first layouts and compressor's
// channels-last ones, used only at the checkpoint boundary:
//   activations  NCHW (PyTorch) <-> NHWC (compressor)
//   conv weights OIHW (PyTorch) <-> OHWI (compressor)
// Both are the same permutation of a rank-4 tensor: the second dimension
// moves to the back (to_channels_last) or back again (to_channels_first).
#pragma once

#include <cstdint>

#include "compressor/core/tensor.hpp"

namespace compressor::io {

/// (A, C, H, W) -> (A, H, W, C): NCHW -> NHWC, or OIHW -> OHWI.
template <TensorElement T>
Tensor<std::remove_const_t<T>> to_channels_last(TensorView<T> x) {
  require<ShapeError>(x.rank() == 4, "to_channels_last: expected a rank-4 tensor, got shape ",
                      x.shape().str());
  const std::int64_t a = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  Tensor<std::remove_const_t<T>> y(Shape{a, h, w, c});
  const auto* src = x.data();
  auto* dst = y.data();
  for (std::int64_t i = 0; i < a; ++i)
    for (std::int64_t k = 0; k < c; ++k)
      for (std::int64_t p = 0; p < h * w; ++p)
        dst[(i * h * w + p) * c + k] = src[(i * c + k) * h * w + p];
  return y;
}

/// (A, H, W, C) -> (A, C, H, W): NHWC -> NCHW, or OHWI -> OIHW.
template <TensorElement T>
Tensor<std::remove_const_t<T>> to_channels_first(TensorView<T> x) {
  require<ShapeError>(x.rank() == 4, "to_channels_first: expected a rank-4 tensor, got shape ",
                      x.shape().str());
  const std::int64_t a = x.dim(0), h = x.dim(1), w = x.dim(2), c = x.dim(3);
  Tensor<std::remove_const_t<T>> y(Shape{a, c, h, w});
  const auto* src = x.data();
  auto* dst = y.data();
  for (std::int64_t i = 0; i < a; ++i)
    for (std::int64_t k = 0; k < c; ++k)
      for (std::int64_t p = 0; p < h * w; ++p)
        dst[(i * c + k) * h * w + p] = src[(i * h * w + p) * c + k];
  return y;
}

/// The shape a channels-last (A, H, W, C) tensor has channels-first: (A, C, H, W).
inline Shape channels_first_shape(const Shape& s) {
  require<ShapeError>(s.rank() == 4, "channels_first_shape: expected rank 4, got ", s.str());
  return Shape{s[0], s[3], s[1], s[2]};
}

template <TensorElement T>
Tensor<std::remove_const_t<T>> nchw_to_nhwc(TensorView<T> x) {
  return to_channels_last(x);
}
template <TensorElement T>
Tensor<std::remove_const_t<T>> nhwc_to_nchw(TensorView<T> x) {
  return to_channels_first(x);
}
template <TensorElement T>
Tensor<std::remove_const_t<T>> oihw_to_ohwi(TensorView<T> w) {
  return to_channels_last(w);
}
template <TensorElement T>
Tensor<std::remove_const_t<T>> ohwi_to_oihw(TensorView<T> w) {
  return to_channels_first(w);
}

}  // namespace compressor::io
