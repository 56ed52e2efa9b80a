// fp32 convolution products on an implicit im2col matrix: the rows of the
// column matrix are read straight from the (padded) NHWC input, never
// materialised (a 3x3 column matrix is 9x the input: writing and re-reading
// it costs more memory traffic than the GEMM's own operands).
//
//   conv2d_f32_forward      Y (M x O)   = cols(x) * W^T       (A implicit)
//   conv2d_f32_weight_grad  dW (O x K) += dY^T * cols(x)      (B implicit)
//   conv2d_f32_input_grad   dX (M x C)  = cols(dY) * flip(W)  (A implicit, stride 1)
//
// x is (N, Hp, Wp, C), already padded (the caller copies it with zero
// borders); M = N*OH*OW output pixels, K = KH*KW*C; W is OHWI (O x K). A row
// of cols is KH runs of KW*C contiguous floats, one per kernel row, so the
// GEMM driver's k blocks never cross a run. The weight gradient reads B's
// rows per pixel when C % 16 == 0 (a 16-column panel inside one run), else
// (a first layer's 3 channels) it is taken transposed, dW^T = cols^T * dY,
// with cols^T read from x in place, one output row per k block.
// The input gradient of a stride-1 convolution is the "full" convolution of
// dY (padded by KH-1-pad) with the kernel flipped in space and its channel
// axes swapped; its B operand is read from the forward OHWI weights while
// they are packed (no flipped copy).
// Each output element is summed in the order of the scalar reference
// (explicit im2col + ref::sgemm), so results are bit-exact against it on
// every path. The path is kernel_path()'s (sgemm.hpp); on the scalar path the
// products are that reference.
#pragma once

#include <cstdint>

#include "compressor/core/error.hpp"
#include "compressor/kernels/sgemm.hpp"

namespace compressor::kernels {

/// Geometry of an implicit im2col over a padded NHWC input.
struct Im2colGeometry {
  std::int64_t n, hp, wp, c;  // padded input
  std::int64_t kh, kw, stride;
  std::int64_t oh, ow;  // output: oh = (hp - kh) / stride + 1, same for ow

  std::int64_t rows() const { return n * oh * ow; }
  std::int64_t cols() const { return kh * kw * c; }
  std::int64_t run() const { return kw * c; }
  /// Offset of output pixel i's first tap (kernel row 0, column 0) in x.
  std::int64_t pixel(std::int64_t i) const {
    const std::int64_t x = i % ow, t = i / ow, y = t % oh, b = t / oh;
    return ((b * hp + y * stride) * wp + x * stride) * c;
  }
  /// off[i - i0] = pixel(i) + add for i in [i0, i1), stepping through the
  /// pixels without pixel()'s divisions (the driver takes a row block's
  /// offsets once per k block, which are short for few channels: 3 x 3 x 16
  /// channels is runs of 48).
  void pixels(std::int64_t i0, std::int64_t i1, std::int64_t add, std::int64_t* off) const {
    if (i0 >= i1) return;
    std::int64_t x = i0 % ow, t = i0 / ow, y = t % oh;
    std::int64_t row = ((t / oh) * hp + y * stride) * wp * c + add;  // pixel (b, y, 0) + add
    const std::int64_t dx = stride * c, dy = stride * wp * c, db = (hp - oh * stride) * wp * c;
    for (std::int64_t i = i0; i < i1; ++i) {
      off[i - i0] = row + x * dx;
      if (++x == ow) {
        x = 0;
        row += dy;
        if (++y == oh) {
          y = 0;
          row += db;
        }
      }
    }
  }
  /// Offset of column k of a row relative to its pixel offset.
  std::int64_t column(std::int64_t k) const { return (k / run()) * wp * c + k % run(); }
  void check(const char* what) const {
    require<ShapeError>(n > 0 && c > 0 && kh > 0 && kw > 0 && stride > 0 && oh > 0 && ow > 0 &&
                            (oh - 1) * stride + kh <= hp && (ow - 1) * stride + kw <= wp,
                        what, ": invalid im2col geometry: input (", n, ", ", hp, ", ", wp, ", ", c,
                        "), kernel ", kh, "x", kw, " stride ", stride, ", output ", oh, "x", ow);
  }
};

namespace detail {

#if COMPRESSOR_X86
/// cols(x) as the GEMM's A, read in place.
struct Im2colA {
  const float* x;
  Im2colGeometry g;
  bool packed() const { return false; }
  std::int64_t run(std::int64_t) const { return g.run(); }
  const float* base() const { return x; }
  void row_offsets(std::int64_t m0, std::int64_t m1, std::int64_t k0, std::int64_t* off) const {
    g.pixels(m0, m1, g.column(k0), off);
  }
  float at(std::int64_t i, std::int64_t k) const { return x[g.pixel(i) + g.column(k)]; }
};

/// The OHWI weights (O, KH, KW, C) of a forward convolution as the B operand
/// (KH*KW*O x C, rows in (i, j, o) order) of its stride-1 input gradient:
/// B[(i, j, o)][c] = w[o][KH-1-i][KW-1-j][c]. Each row is C contiguous floats
/// of w; the driver always packs it (no rows()).
struct FlippedWeightsB {
  static constexpr bool kIndirect = false;
  const float* w;
  std::int64_t kh, kw, o, c;
  const float* row(std::int64_t i, std::int64_t j, std::int64_t oc) const {
    return w + ((oc * kh + kh - 1 - i) * kw + kw - 1 - j) * c;
  }
  float at(std::int64_t k, std::int64_t n) const {
    return row(k / (kw * o), (k / o) % kw, k % o)[n];
  }
  void k_offsets(std::int64_t, std::int64_t, std::int64_t*) const {}
  /// Columns [n0, n0 + cols) of every row, as a [K][NR] panel zero past cols.
  void pack_panel(std::int64_t n0, std::int64_t cols, std::int64_t, float* d, int NR) const {
    for (std::int64_t i = 0; i < kh; ++i)
      for (std::int64_t j = 0; j < kw; ++j)
        for (std::int64_t oc = 0; oc < o; ++oc, d += NR) {
          const float* src = row(i, j, oc) + n0;
          std::int64_t t = 0;
          for (; t < cols; ++t) d[t] = src[t];
          for (; t < NR; ++t) d[t] = 0.f;
        }
  }
};

/// cols(x)^T as the GEMM's A (rows = columns of cols, k = pixels), read in
/// place: the weight gradient of an input with few channels (the first
/// layer's 3), computed as dW^T = cols(x)^T * dY. Along one output row the
/// pixels step by stride * C floats, so a run is an output row and A's k
/// stride is stride * C.
struct Im2colTransposedA {
  const float* x;
  Im2colGeometry g;
  bool packed() const { return false; }
  std::int64_t run(std::int64_t) const { return g.ow; }
  std::int64_t k_stride() const { return g.stride * g.c; }
  const float* base() const { return x; }
  void row_offsets(std::int64_t m0, std::int64_t m1, std::int64_t k0, std::int64_t* off) const {
    const std::int64_t px = g.pixel(k0);
    for (std::int64_t i = m0; i < m1; ++i) off[i - m0] = px + g.column(i);
  }
  float at(std::int64_t i, std::int64_t k) const { return x[g.pixel(k) + g.column(i)]; }
};

/// cols(x) as the GEMM's B (rows = pixels), rows found through offsets.
struct Im2colB {
  static constexpr bool kIndirect = true;
  const float* x;
  Im2colGeometry g;
  bool pack(std::int64_t) const { return false; }
  float at(std::int64_t k, std::int64_t n) const { return x[g.pixel(k) + g.column(n)]; }
  void k_offsets(std::int64_t k0, std::int64_t kn, std::int64_t* off) const {
    g.pixels(k0, k0 + kn, 0, off);
  }
  simd::detail_sgemm::BRows rows(std::int64_t, std::int64_t n0, const std::int64_t* off) const {
    return {x + g.column(n0), 0, off};
  }
};
#endif

}  // namespace detail

namespace ref {

/// The explicit column matrix (rows() x cols()) of a padded input.
inline void im2col_padded(const float* x, const Im2colGeometry& g, float* cols) {
  for (std::int64_t i = 0; i < g.rows(); ++i)
    for (std::int64_t k = 0; k < g.cols(); ++k)
      cols[i * g.cols() + k] = x[g.pixel(i) + g.column(k)];
}

/// The flipped weights (C, KH, KW, O) of OHWI weights w (O, KH, KW, C):
/// [c][i][j][o] = w[o][KH-1-i][KW-1-j][c].
inline void flip_weights(const float* w, std::int64_t o, std::int64_t kh, std::int64_t kw,
                         std::int64_t c, float* t) {
  for (std::int64_t ic = 0; ic < c; ++ic)
    for (std::int64_t i = 0; i < kh; ++i)
      for (std::int64_t j = 0; j < kw; ++j)
        for (std::int64_t oc = 0; oc < o; ++oc)
          t[((ic * kh + i) * kw + j) * o + oc] =
              w[((oc * kh + kh - 1 - i) * kw + kw - 1 - j) * c + ic];
}

}  // namespace ref

/// y (rows() x o, row-major) = cols(x) * w^T, w (o x cols()) row-major.
/// (All three run on path p, kernel_path() by default.)
inline void conv2d_f32_forward(const float* x, const Im2colGeometry& g, const float* w,
                               std::int64_t o, float* y, Path p = kernel_path()) {
  g.check("conv2d_f32_forward");
  if (detail::with_sgemm_kernel(p, [&](auto kern) {
        detail::gemm_driver<decltype(kern)>(
            g.rows(), o, g.cols(), detail::Im2colA{x, g},
            detail::StridedB{StridedMatrix::transposed(w, g.cols())}, y, o, false);
      }))
    return;
  AlignedBuffer<float> cols(static_cast<std::size_t>(g.rows() * g.cols()));
  ref::im2col_padded(x, g, cols.data());
  ref::sgemm(g.rows(), o, g.cols(), StridedMatrix::row_major(cols.data(), g.cols()),
             StridedMatrix::transposed(w, g.cols()), y, o, false);
}

/// dw (o x cols(), row-major) += dy^T * cols(x), dy (rows() x o) row-major.
/// When a kernel row (kw * c floats) is a whole number of the path's panels
/// (16 or 32 columns), B = cols(x) is read in place; otherwise (few input
/// channels) the product is taken transposed, dw^T += cols(x)^T * dy, with
/// cols(x)^T read from x in place and dw transposed into and out of a scratch copy
/// (every element still summed in the reference's order: bit-exact).
inline void conv2d_f32_weight_grad(const float* x, const Im2colGeometry& g, const float* dy,
                                   std::int64_t o, float* dw, Path p = kernel_path()) {
  g.check("conv2d_f32_weight_grad");
  if (detail::with_sgemm_kernel(p, [&](auto kern) {
        using Kern = decltype(kern);
        if (g.run() % Kern::kNR == 0) {
          detail::gemm_driver<Kern>(o, g.cols(), g.rows(),
                                    detail::StridedA{StridedMatrix::transposed(dy, o)},
                                    detail::Im2colB{x, g}, dw, g.cols(), true);
          return;
        }
        const std::int64_t k = g.cols();
        AlignedBuffer<float> buf(static_cast<std::size_t>(k * o));
        float* t = buf.data();
        for (std::int64_t j = 0; j < k; ++j)
          for (std::int64_t i = 0; i < o; ++i) t[j * o + i] = dw[i * k + j];
        detail::gemm_driver<Kern>(k, o, g.rows(), detail::Im2colTransposedA{x, g},
                                  detail::StridedB{StridedMatrix::row_major(dy, o)}, t, o, true);
        for (std::int64_t i = 0; i < o; ++i)
          for (std::int64_t j = 0; j < k; ++j) dw[i * k + j] = t[j * o + i];
      }))
    return;
  AlignedBuffer<float> cols(static_cast<std::size_t>(g.rows() * g.cols()));
  ref::im2col_padded(x, g, cols.data());
  ref::sgemm(o, g.cols(), g.rows(), StridedMatrix::transposed(dy, o),
             StridedMatrix::row_major(cols.data(), g.cols()), dw, g.cols(), true);
}

/// dx (rows() x c, row-major) = cols(dy) * flip(w): the input gradient of a
/// stride-1 convolution with OHWI weights w (g.c, g.kh, g.kw, c), from its
/// output gradient dy padded by kh - 1 - pad (g: that padded dy, g.c = the
/// forward's output channels, stride 1, output = the forward's input size).
inline void conv2d_f32_input_grad(const float* dy, const Im2colGeometry& g, const float* w,
                                  std::int64_t c, float* dx, Path p = kernel_path()) {
  g.check("conv2d_f32_input_grad");
  require<ShapeError>(g.stride == 1 && c > 0,
                      "conv2d_f32_input_grad: needs stride 1 and c > 0, got stride ", g.stride,
                      " and c = ", c);
  if (detail::with_sgemm_kernel(p, [&](auto kern) {
        detail::gemm_driver<decltype(kern)>(g.rows(), c, g.cols(), detail::Im2colA{dy, g},
                                            detail::FlippedWeightsB{w, g.kh, g.kw, g.c, c}, dx, c,
                                            false);
      }))
    return;
  AlignedBuffer<float> t(static_cast<std::size_t>(c * g.cols()));
  ref::flip_weights(w, g.c, g.kh, g.kw, c, t.data());
  AlignedBuffer<float> cols(static_cast<std::size_t>(g.rows() * g.cols()));
  ref::im2col_padded(dy, g, cols.data());
  ref::sgemm(g.rows(), c, g.cols(), StridedMatrix::row_major(cols.data(), g.cols()),
             StridedMatrix::transposed(t.data(), g.cols()), dx, c, false);
}

}  // namespace compressor::kernels
