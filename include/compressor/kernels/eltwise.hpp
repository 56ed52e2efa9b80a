// Public vectorized elementwise int8 kernels on tensors of any shape:
//   quantize_f32_u8    float -> uint8 with (scale, zero point)
//   dequantize_u8_f32  uint8 -> float
//   add_u8_requant     y = a + b of two quantized tensors, requantized to y's
//                      QuantParams, optional fused ReLU (the ResNet residual)
// Threaded with OpenMP over contiguous chunks; the tails run the reference.
#pragma once

#include <cstdint>

#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/ref/eltwise_u8.hpp"
#include "compressor/kernels/simd/eltwise_u8.hpp"

namespace compressor::kernels {

namespace detail {
inline constexpr std::int64_t kEltwiseGrain = 1 << 14;  // elements per thread at least

inline void require_qparams(QuantParams q, const char* what) {
  require(q.scale > 0.f && q.zero_point >= 0 && q.zero_point <= 255, what, ": scale ", q.scale,
          " must be > 0 and zero point ", q.zero_point, " in [0, 255]");
}
}  // namespace detail

inline void quantize_f32_u8(TensorView<const float> x, QuantParams q, TensorView<std::uint8_t> y) {
  check_same_shape(y.shape(), x.shape(), "quantize_f32_u8 output");
  detail::require_qparams(q, "quantize_f32_u8");
  parallel_for(
      x.numel(),
      [&](std::int64_t b, std::int64_t e) {
        std::int64_t done = 0;
#if COMPRESSOR_KERNELS_AVX2
        done = simd::quantize_f32(e - b, x.data() + b, q, y.data() + b);
#endif
        ref::quantize(e - b - done, x.data() + b + done, q, y.data() + b + done);
      },
      detail::kEltwiseGrain);
}

inline void dequantize_u8_f32(TensorView<const std::uint8_t> x, QuantParams q,
                              TensorView<float> y) {
  check_same_shape(y.shape(), x.shape(), "dequantize_u8_f32 output");
  detail::require_qparams(q, "dequantize_u8_f32");
  parallel_for(
      x.numel(),
      [&](std::int64_t b, std::int64_t e) {
        std::int64_t done = 0;
#if COMPRESSOR_KERNELS_AVX2
        done = simd::dequantize_u8(e - b, x.data() + b, q, y.data() + b);
#endif
        ref::dequantize(e - b - done, x.data() + b + done, q, y.data() + b + done);
      },
      detail::kEltwiseGrain);
}

/// y = requant(s_a (a - z_a) + s_b (b - z_b)); relu clamps at y's zero point.
inline void add_u8_requant(TensorView<const std::uint8_t> a, QuantParams qa,
                           TensorView<const std::uint8_t> b, QuantParams qb,
                           TensorView<std::uint8_t> y, QuantParams qy, bool relu) {
  check_same_shape(b.shape(), a.shape(), "add_u8_requant second input");
  check_same_shape(y.shape(), a.shape(), "add_u8_requant output");
  detail::require_qparams(qa, "add_u8_requant first input");
  detail::require_qparams(qb, "add_u8_requant second input");
  detail::require_qparams(qy, "add_u8_requant output");
  parallel_for(
      a.numel(),
      [&](std::int64_t s, std::int64_t e) {
        std::int64_t done = 0;
#if COMPRESSOR_KERNELS_AVX2
        done = simd::add_u8(e - s, a.data() + s, qa, b.data() + s, qb, y.data() + s, qy, relu);
#endif
        ref::add(e - s - done, a.data() + s + done, qa, b.data() + s + done, qb,
                 y.data() + s + done, qy, relu);
      },
      detail::kEltwiseGrain);
}

}  // namespace compressor::kernels
