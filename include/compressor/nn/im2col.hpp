// im2col / col2im for NHWC activations and OHWI weights (float).
//
// For an input (N, H, W, C) and a KHxKW kernel, row m = (n, oh, ow) of the
// column matrix holds, for kh, kw in order, the C channels of input pixel
// (oh*stride - pad + kh, ow*stride - pad + kw), or zeros where that falls in
// the padding. So a row is KH*KW*C long and matches a row of the (O, KH*KW*C)
// weight matrix: output = cols * weights^T.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "compressor/core/shape.hpp"
#include "compressor/core/threading.hpp"

namespace compressor::nn {

struct ConvGeometry {
  std::int64_t n, h, w, c;  // input
  std::int64_t kh, kw;      // kernel
  std::int64_t stride, pad;
  std::int64_t oh, ow;  // output spatial size

  std::int64_t rows() const { return n * oh * ow; }
  std::int64_t cols() const { return kh * kw * c; }
  bool is_pointwise() const { return kh == 1 && kw == 1 && stride == 1 && pad == 0; }
};

/// dst = x (N, H, W, C) with a border of pad zeros: (N, H + 2 pad, W + 2 pad, C).
template <class Dst>
void pad_nhwc(const float* x, std::int64_t n, std::int64_t h, std::int64_t w, std::int64_t c,
              std::int64_t pad, Dst& dst) {
  const std::int64_t hp = h + 2 * pad, wp = w + 2 * pad;
  dst.resize(Shape{n, hp, wp, c});
  float* d = dst.data();
  parallel_for(
      n * hp,
      [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
          const std::int64_t b = r / hp, y = r % hp - pad;
          float* row = d + r * wp * c;
          if (y < 0 || y >= h) {
            std::fill_n(row, wp * c, 0.f);
            continue;
          }
          std::fill_n(row, pad * c, 0.f);
          std::memcpy(row + pad * c, x + (b * h + y) * w * c,
                      sizeof(float) * static_cast<std::size_t>(w * c));
          std::fill_n(row + (pad + w) * c, pad * c, 0.f);
        }
      },
      16);
}

/// Fills cols (rows() x cols(), row-major) from x (N, H, W, C).
inline void im2col(const float* x, const ConvGeometry& g, float* cols) {
  const std::int64_t k = g.cols();
  parallel_for(
      g.rows(),
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t m = begin; m < end; ++m) {
          const std::int64_t ow = m % g.ow;
          const std::int64_t oh = (m / g.ow) % g.oh;
          const std::int64_t n = m / (g.ow * g.oh);
          float* row = cols + m * k;
          for (std::int64_t i = 0; i < g.kh; ++i) {
            const std::int64_t ih = oh * g.stride - g.pad + i;
            if (ih < 0 || ih >= g.h) {
              std::memset(row, 0, sizeof(float) * static_cast<std::size_t>(g.kw * g.c));
              row += g.kw * g.c;
              continue;
            }
            const float* xrow = x + ((n * g.h + ih) * g.w) * g.c;
            // Columns iw = ow*stride - pad + j for j in [0, kw): copy the
            // in-range run at once, zero the rest.
            const std::int64_t iw0 = ow * g.stride - g.pad;
            const std::int64_t j_lo = std::clamp<std::int64_t>(-iw0, 0, g.kw);
            const std::int64_t j_hi = std::clamp<std::int64_t>(g.w - iw0, 0, g.kw);
            if (j_lo > 0) std::memset(row, 0, sizeof(float) * static_cast<std::size_t>(j_lo * g.c));
            if (j_hi > j_lo)
              std::memcpy(row + j_lo * g.c, xrow + (iw0 + j_lo) * g.c,
                          sizeof(float) * static_cast<std::size_t>((j_hi - j_lo) * g.c));
            const std::int64_t tail = g.kw - std::max(j_hi, j_lo);
            if (tail > 0)
              std::memset(row + std::max(j_hi, j_lo) * g.c, 0,
                          sizeof(float) * static_cast<std::size_t>(tail * g.c));
            row += g.kw * g.c;
          }
        }
      },
      64);
}

/// Scatter-adds cols (rows() x cols()) back into dx (N, H, W, C), which is
/// zeroed first. The adjoint of im2col. Parallel over images, so no two
/// threads write the same element.
inline void col2im(const float* cols, const ConvGeometry& g, float* dx) {
  const std::int64_t k = g.cols();
  const std::int64_t image = g.h * g.w * g.c;
  parallel_for(g.n, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t n = begin; n < end; ++n) {
      float* dxn = dx + n * image;
      std::fill_n(dxn, image, 0.f);
      for (std::int64_t oh = 0; oh < g.oh; ++oh)
        for (std::int64_t ow = 0; ow < g.ow; ++ow) {
          const float* row = cols + ((n * g.oh + oh) * g.ow + ow) * k;
          for (std::int64_t i = 0; i < g.kh; ++i) {
            const std::int64_t ih = oh * g.stride - g.pad + i;
            if (ih < 0 || ih >= g.h) continue;
            for (std::int64_t j = 0; j < g.kw; ++j) {
              const std::int64_t iw = ow * g.stride - g.pad + j;
              if (iw < 0 || iw >= g.w) continue;
              float* dst = dxn + (ih * g.w + iw) * g.c;
              const float* src = row + (i * g.kw + j) * g.c;
              for (std::int64_t c = 0; c < g.c; ++c) dst[c] += src[c];
            }
          }
        }
    }
  });
}

}  // namespace compressor::nn
