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

namespace detail {
/// Copies src into dst, moving between (A, C, HW) and (A, HW, C) order.
template <class T>
void permute_channels(const T* src, T* dst, std::int64_t a, std::int64_t c, std::int64_t hw,
                      bool to_last) {
  for (std::int64_t i = 0; i < a; ++i)
    for (std::int64_t k = 0; k < c; ++k)
      for (std::int64_t p = 0; p < hw; ++p) {
        const std::int64_t first = (i * c + k) * hw + p, last = (i * hw + p) * c + k;
        dst[to_last ? last : first] = src[to_last ? first : last];
      }
}
}  // namespace detail

/// (A, C, H, W) -> (A, H, W, C): NCHW -> NHWC, or OIHW -> OHWI.
template <TensorElement T>
Tensor<std::remove_const_t<T>> to_channels_last(TensorView<T> x) {
  require<ShapeError>(x.rank() == 4, "to_channels_last: expected a rank-4 tensor, got shape ",
                      x.shape());
  Tensor<std::remove_const_t<T>> y(Shape{x.dim(0), x.dim(2), x.dim(3), x.dim(1)});
  detail::permute_channels(x.data(), y.data(), x.dim(0), x.dim(1), x.dim(2) * x.dim(3), true);
  return y;
}

/// (A, H, W, C) -> (A, C, H, W): NHWC -> NCHW, or OHWI -> OIHW.
template <TensorElement T>
Tensor<std::remove_const_t<T>> to_channels_first(TensorView<T> x) {
  require<ShapeError>(x.rank() == 4, "to_channels_first: expected a rank-4 tensor, got shape ",
                      x.shape());
  Tensor<std::remove_const_t<T>> y(Shape{x.dim(0), x.dim(3), x.dim(1), x.dim(2)});
  detail::permute_channels(x.data(), y.data(), x.dim(0), x.dim(3), x.dim(1) * x.dim(2), false);
  return y;
}

/// The shape a channels-last (A, H, W, C) tensor has channels-first: (A, C, H, W).
inline Shape channels_first_shape(const Shape& s) {
  require<ShapeError>(s.rank() == 4, "channels_first_shape: expected rank 4, got ", s);
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
