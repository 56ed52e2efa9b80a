// Public vectorized elementwise int8 kernels on tensors of any shape:
//   quantize_f32_u8    float -> uint8 with (scale, zero point)
//   dequantize_u8_f32  uint8 -> float
//   add_u8_requant     y = a + b of two quantized tensors, requantized to y's
//                      QuantParams, optional fused ReLU (the ResNet residual)
// Threaded with OpenMP over contiguous chunks; the tails run the reference.
// Paths (kernels/isa.hpp): scalar runs the reference; every other path the
// AVX2 bodies (memory-bound loops: no wider version pays).
#pragma once

#include <cstdint>

#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/ref/eltwise_u8.hpp"
#include "compressor/kernels/simd/eltwise_u8.hpp"

namespace compressor::kernels {

namespace detail {
inline constexpr std::int64_t kEltwiseGrain = 1 << 14;  // elements per thread at least

inline void require_qparams(QuantParams q, const char* what) {
  require(q.scale > 0.f && q.zero_point >= 0 && q.zero_point <= 255, what, ": scale ", q.scale,
          " must be > 0 and zero point ", q.zero_point, " in [0, 255]");
}

/// Runs simd(i, len) -> elements done (where the path in use has AVX2),
/// then ref(i, len) on the rest, over contiguous chunks of [0, n), threaded.
template <class Simd, class Ref>
void run_elementwise(std::int64_t n, Simd simd, Ref ref) {
  const bool vector = path_has_avx2(kernel_path());
  parallel_for(
      n,
      [&](std::int64_t b, std::int64_t e) {
        const std::int64_t done = vector ? simd(b, e - b) : 0;
        ref(b + done, e - b - done);
      },
      kEltwiseGrain);
}
}  // namespace detail

inline void quantize_f32_u8(TensorView<const float> x, QuantParams q, TensorView<std::uint8_t> y) {
  check_same_shape(y.shape(), x.shape(), "quantize_f32_u8 output");
  detail::require_qparams(q, "quantize_f32_u8");
  const float* xp = x.data();
  std::uint8_t* yp = y.data();
  detail::run_elementwise(
      x.numel(),
      [&](std::int64_t i, std::int64_t n) { return simd::quantize_f32_avx2(n, xp + i, q, yp + i); },
      [&](std::int64_t i, std::int64_t n) { ref::quantize(n, xp + i, q, yp + i); });
}

inline void dequantize_u8_f32(TensorView<const std::uint8_t> x, QuantParams q,
                              TensorView<float> y) {
  check_same_shape(y.shape(), x.shape(), "dequantize_u8_f32 output");
  detail::require_qparams(q, "dequantize_u8_f32");
  const std::uint8_t* xp = x.data();
  float* yp = y.data();
  detail::run_elementwise(
      x.numel(),
      [&](std::int64_t i, std::int64_t n) {
        return simd::dequantize_u8_avx2(n, xp + i, q, yp + i);
      },
      [&](std::int64_t i, std::int64_t n) { ref::dequantize(n, xp + i, q, yp + i); });
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
  const std::uint8_t *ap = a.data(), *bp = b.data();
  std::uint8_t* yp = y.data();
  detail::run_elementwise(
      a.numel(),
      [&](std::int64_t i, std::int64_t n) {
        return simd::add_u8_avx2(n, ap + i, qa, bp + i, qb, yp + i, qy, relu);
      },
      [&](std::int64_t i, std::int64_t n) {
        ref::add(n, ap + i, qa, bp + i, qb, yp + i, qy, relu);
      });
}

}  // namespace compressor::kernels
