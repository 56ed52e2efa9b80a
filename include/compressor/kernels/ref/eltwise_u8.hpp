// Scalar references of the elementwise and pooling int8 kernels: quantize,
// dequantize, quantized add (+ReLU), max pool and global average pool, all NHWC.
#pragma once

#include <algorithm>
#include <cstdint>

#include "compressor/kernels/requant.hpp"

namespace compressor::kernels::ref {

inline void quantize(std::int64_t n, const float* x, QuantParams q, std::uint8_t* y) {
  const float inv = inverse_scale(q.scale);
  for (std::int64_t i = 0; i < n; ++i) y[i] = kernels::quantize(x[i], inv, q.zero_point);
}

inline void dequantize(std::int64_t n, const std::uint8_t* x, QuantParams q, float* y) {
  for (std::int64_t i = 0; i < n; ++i) y[i] = kernels::dequantize(x[i], q.scale, q.zero_point);
}

inline void add(std::int64_t n, const std::uint8_t* a, QuantParams qa, const std::uint8_t* b,
                QuantParams qb, std::uint8_t* y, QuantParams qy, bool relu) {
  const float ma = requant_multiplier(qa.scale, 1.0, qy.scale);
  const float mb = requant_multiplier(qb.scale, 1.0, qy.scale);
  for (std::int64_t i = 0; i < n; ++i)
    y[i] = add_requantize(a[i] - qa.zero_point, b[i] - qb.zero_point, ma, mb, qy.zero_point,
                          relu ? qy.zero_point : 0, 255);
}

/// x (N, H, W, C) -> y (N, OH, OW, C); padded taps are ignored.
inline void max_pool(std::int64_t N, std::int64_t H, std::int64_t W, std::int64_t C,
                     const std::uint8_t* x, std::int64_t k, std::int64_t stride, std::int64_t pad,
                     std::uint8_t* y) {
  const std::int64_t OH = (H + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t oh = 0; oh < OH; ++oh)
      for (std::int64_t ow = 0; ow < OW; ++ow)
        for (std::int64_t c = 0; c < C; ++c) {
          std::uint8_t m = 0;
          for (std::int64_t i = oh * stride - pad; i < oh * stride - pad + k; ++i)
            for (std::int64_t j = ow * stride - pad; j < ow * stride - pad + k; ++j)
              if (i >= 0 && i < H && j >= 0 && j < W)
                m = std::max(m, x[((n * H + i) * W + j) * C + c]);
          y[((n * OH + oh) * OW + ow) * C + c] = m;
        }
}

/// x (N, H, W, C) -> y (N, C): mean over H*W, requantized from qx to qy.
inline void global_avg_pool(std::int64_t N, std::int64_t HW, std::int64_t C, const std::uint8_t* x,
                            QuantParams qx, std::uint8_t* y, QuantParams qy) {
  const float m = average_multiplier(qx.scale, qy.scale, HW);
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t c = 0; c < C; ++c) {
      std::int32_t sum = 0;
      for (std::int64_t p = 0; p < HW; ++p) sum += x[(n * HW + p) * C + c];
      y[n * C + c] =
          requantize(sum - static_cast<std::int32_t>(HW) * qx.zero_point, m, qy.zero_point);
    }
}

}  // namespace compressor::kernels::ref
