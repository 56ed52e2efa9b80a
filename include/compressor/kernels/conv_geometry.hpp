// ConvGeometry: kernel size, stride, padding and channels of a 2-D convolution.
#pragma once

#include <cstdint>

#include "compressor/core/error.hpp"
#include "compressor/core/shape.hpp"

namespace compressor::kernels {

struct ConvGeometry {
  std::int64_t in_c = 1, out_c = 1;
  std::int64_t kh = 1, kw = 1;
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;

  /// Square kernel, stride and padding.
  static ConvGeometry square(std::int64_t in_c, std::int64_t out_c, std::int64_t k,
                             std::int64_t stride = 1, std::int64_t pad = 0) {
    return {in_c, out_c, k, k, stride, stride, pad, pad};
  }

  std::int64_t out_h(std::int64_t h) const { return (h + 2 * pad_h - kh) / stride_h + 1; }
  std::int64_t out_w(std::int64_t w) const { return (w + 2 * pad_w - kw) / stride_w + 1; }
  /// GEMM depth: KH * KW * C.
  std::int64_t k() const { return kh * kw * in_c; }
  bool is_pointwise() const {
    return kh == 1 && kw == 1 && stride_h == 1 && stride_w == 1 && pad_h == 0 && pad_w == 0;
  }

  void validate() const {
    require(in_c > 0 && out_c > 0 && kh > 0 && kw > 0 && stride_h > 0 && stride_w > 0 &&
                pad_h >= 0 && pad_w >= 0 && pad_h < kh && pad_w < kw,
            "ConvGeometry: bad convolution ", kh, "x", kw, " stride ", stride_h, "x", stride_w,
            " pad ", pad_h, "x", pad_w, " channels ", in_c, "->", out_c);
  }

  /// Output shape of an NHWC input; throws ShapeError naming both.
  Shape output_shape(const Shape& in) const {
    require<ShapeError>(
        in.rank() == 4 && in[3] == in_c && in[1] + 2 * pad_h >= kh && in[2] + 2 * pad_w >= kw,
        "conv: input shape ", in, " is not NHWC with C = ", in_c, " and H, W >= ", kh, "x", kw,
        " after padding");
    return Shape{in[0], out_h(in[1]), out_w(in[2]), out_c};
  }
};

}  // namespace compressor::kernels
