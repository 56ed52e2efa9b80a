// Scalar reference of the int8 NHWC convolution: the oracle of ConvU8S8.
// y[n, oh, ow, o] = epi(sum_{kh, kw, c} (x[n, ih, iw, c] - x_zero_point) *
//                        w[o, kh, kw, c] + bias[o]),  ih = oh*stride - pad + kh,
// where taps outside the input contribute real 0 (x = x_zero_point).
#pragma once

#include <cstdint>

#include "compressor/kernels/conv_geometry.hpp"
#include "compressor/kernels/epilogue.hpp"

namespace compressor::kernels::ref {

/// x: (N, H, W, C) uint8; w: (O, KH, KW, C) int8 (any int8 value); y: (N, OH, OW, O).
template <GemmEpilogue Epi>
void conv_u8s8(const ConvGeometry& g, std::int64_t N, std::int64_t H, std::int64_t W,
               const std::uint8_t* x, std::int32_t x_zero_point, const std::int8_t* w,
               const Epi& epi, typename Epi::Out* y) {
  const std::int64_t OH = g.out_h(H), OW = g.out_w(W), C = g.in_c, O = g.out_c;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t oh = 0; oh < OH; ++oh)
      for (std::int64_t ow = 0; ow < OW; ++ow)
        for (std::int64_t o = 0; o < O; ++o) {
          std::int32_t acc = epi.bias ? epi.bias[o] : 0;
          for (std::int64_t kh = 0; kh < g.kh; ++kh) {
            const std::int64_t ih = oh * g.stride_h - g.pad_h + kh;
            if (ih < 0 || ih >= H) continue;
            for (std::int64_t kw = 0; kw < g.kw; ++kw) {
              const std::int64_t iw = ow * g.stride_w - g.pad_w + kw;
              if (iw < 0 || iw >= W) continue;
              const std::uint8_t* xp = x + ((n * H + ih) * W + iw) * C;
              const std::int8_t* wp = w + ((o * g.kh + kh) * g.kw + kw) * C;
              for (std::int64_t c = 0; c < C; ++c)
                acc += (static_cast<std::int32_t>(xp[c]) - x_zero_point) * wp[c];
            }
          }
          y[((n * OH + oh) * OW + ow) * O + o] = epi.apply(acc, o);
        }
}

}  // namespace compressor::kernels::ref
