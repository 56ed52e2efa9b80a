// Public int8 NHWC pooling kernels:
//   max_pool_u8         k x k window, stride, padding (padded taps ignored);
//                       output keeps the input's QuantParams
//   global_avg_pool_u8  (N, H, W, C) -> (N, C), requantized to the output's
//                       QuantParams with the one rounding rule
// Vectorized over channels (AVX2 bodies on every path but scalar,
// kernels/isa.hpp), threaded with OpenMP over output rows / images.
#pragma once

#include <algorithm>
#include <cstdint>

#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/ref/eltwise_u8.hpp"
#include "compressor/kernels/simd/eltwise_u8.hpp"

namespace compressor::kernels {

namespace detail {
/// out[c] = the max over t[0..taps) of t[i][c] (taps >= 1; t[0] may be out).
inline void max_of_taps(const std::uint8_t* const* t, int taps, std::int64_t C, std::uint8_t* out,
                        bool vector) {
  std::int64_t c = vector ? simd::max_taps_u8_avx2(taps, t, C, out) : 0;
  for (; c < C; ++c) {
    std::uint8_t m = t[0][c];
    for (int u = 1; u < taps; ++u) m = std::max(m, t[u][c]);
    out[c] = m;
  }
}
}  // namespace detail

/// Output shape of a k x k max pool over an NHWC input.
inline Shape max_pool_output_shape(const Shape& in, std::int64_t k, std::int64_t stride,
                                   std::int64_t pad) {
  require(k > 0 && stride > 0 && pad >= 0 && 2 * pad <= k, "max_pool_u8: bad window ", k,
          " stride ", stride, " pad ", pad);
  require<ShapeError>(in.rank() == 4 && in[1] + 2 * pad >= k && in[2] + 2 * pad >= k,
                      "max_pool_u8: input shape ", in, " is not NHWC with H, W >= ", k,
                      " after padding");
  return Shape{in[0], (in[1] + 2 * pad - k) / stride + 1, (in[2] + 2 * pad - k) / stride + 1,
               in[3]};
}

inline void max_pool_u8(TensorView<const std::uint8_t> x, TensorView<std::uint8_t> y,
                        std::int64_t k, std::int64_t stride, std::int64_t pad) {
  check_same_shape(y.shape(), max_pool_output_shape(x.shape(), k, stride, pad),
                   "max_pool_u8 output");
  const std::int64_t H = x.dim(1), W = x.dim(2), C = x.dim(3), OH = y.dim(1), OW = y.dim(2);
  const bool vector = path_has_avx2(kernel_path());
  // At least ~64 KB of window reads per thread: a smaller share costs more
  // in starting the threads than it saves (a batch-1 CifarCnn pool ran
  // slower on 2 threads than on 1).
  const std::int64_t row_bytes = std::max<std::int64_t>(1, OW * C * k * k);
  parallel_for(
      x.dim(0) * OH,
      [&](std::int64_t b, std::int64_t e) {
        // The window's taps inside the input (never none: 2 * pad <= k), up
        // to kMaxTaps at a time; a larger window carries its running max in
        // `out` as the next batch's first tap.
        constexpr int kMaxTaps = 64;
        const std::uint8_t* taps[kMaxTaps];
        for (std::int64_t row = b; row < e; ++row) {
          const std::int64_t n = row / OH, oh = row % OH;
          const std::int64_t i0 = std::max<std::int64_t>(0, oh * stride - pad);
          const std::int64_t i1 = std::min(H, oh * stride - pad + k);
          for (std::int64_t ow = 0; ow < OW; ++ow) {
            const std::int64_t j0 = std::max<std::int64_t>(0, ow * stride - pad);
            const std::int64_t j1 = std::min(W, ow * stride - pad + k);
            std::uint8_t* out = y.data() + (row * OW + ow) * C;
            int t = 0;
            for (std::int64_t i = i0; i < i1; ++i)
              for (std::int64_t j = j0; j < j1; ++j) {
                if (t == kMaxTaps) {
                  detail::max_of_taps(taps, t, C, out, vector);
                  t = 0;
                  taps[t++] = out;
                }
                taps[t++] = x.data() + ((n * H + i) * W + j) * C;
              }
            detail::max_of_taps(taps, t, C, out, vector);
          }
        }
      },
      std::max<std::int64_t>(1, (std::int64_t{1} << 16) / row_bytes));
}

inline void global_avg_pool_u8(TensorView<const std::uint8_t> x, QuantParams qx,
                               TensorView<std::uint8_t> y, QuantParams qy) {
  require<ShapeError>(x.rank() == 4 && x.dim(1) * x.dim(2) > 0, "global_avg_pool_u8: input shape ",
                      x.shape(), " is not NHWC with H*W > 0");
  check_same_shape(y.shape(), Shape{x.dim(0), x.dim(3)}, "global_avg_pool_u8 output");
  require(qx.scale > 0.f && qy.scale > 0.f && qx.zero_point >= 0 && qx.zero_point <= 255 &&
              qy.zero_point >= 0 && qy.zero_point <= 255,
          "global_avg_pool_u8: bad quantization parameters (scales ", qx.scale, ", ", qy.scale,
          ", zero points ", qx.zero_point, ", ", qy.zero_point, ")");
  const std::int64_t HW = x.dim(1) * x.dim(2), C = x.dim(3);
  const float m = average_multiplier(qx.scale, qy.scale, HW);
  const bool vector = path_has_avx2(kernel_path());
  parallel_for(x.dim(0), [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t n = b; n < e; ++n) {
      const std::uint8_t* in = x.data() + n * HW * C;
      std::uint8_t* out = y.data() + n * C;
      std::int64_t c =
          vector ? simd::avg_pool_u8_avx2(HW, C, in, qx.zero_point, m, qy.zero_point, out) : 0;
      for (; c < C; ++c) {
        std::int32_t sum = 0;
        for (std::int64_t p = 0; p < HW; ++p) sum += in[p * C + c];
        out[c] = requantize(sum - static_cast<std::int32_t>(HW) * qx.zero_point, m, qy.zero_point);
      }
    }
  });
}

/// Pooling over the frames of clips: x (N, T, F) uint8 -> y (N, F) holding
/// the mean over T, or with max_min (N, 3F) holding [mean | max | min] over T,
/// all requantized to y's parameters by the one rule (the mean with
/// average_multiplier(s_x, s_y, T) on int32 sums, max and min with
/// s_x / s_y). Scalar loops the compiler vectorises over F; threaded over clips.
inline void temporal_pool_u8(TensorView<const std::uint8_t> x, QuantParams qx, bool max_min,
                             TensorView<std::uint8_t> y, QuantParams qy) {
  require<ShapeError>(x.rank() == 3 && x.dim(1) > 0, "temporal_pool_u8: input shape ", x.shape(),
                      " is not (N, T, F) with T > 0");
  const std::int64_t N = x.dim(0), T = x.dim(1), F = x.dim(2), OF = max_min ? 3 * F : F;
  check_same_shape(y.shape(), Shape{N, OF}, "temporal_pool_u8 output");
  require(qx.scale > 0.f && qy.scale > 0.f && qx.zero_point >= 0 && qx.zero_point <= 255 &&
              qy.zero_point >= 0 && qy.zero_point <= 255,
          "temporal_pool_u8: bad quantization parameters (scales ", qx.scale, ", ", qy.scale,
          ", zero points ", qx.zero_point, ", ", qy.zero_point, ")");
  const float m_mean = average_multiplier(qx.scale, qy.scale, T);
  const float m_one = average_multiplier(qx.scale, qy.scale, 1);
  const auto tz = static_cast<std::int32_t>(T) * qx.zero_point;
  parallel_for(N, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t n = b; n < e; ++n) {
      const std::uint8_t* in = x.data() + n * T * F;
      std::uint8_t* out = y.data() + n * OF;
      for (std::int64_t f = 0; f < F; ++f) {
        std::int32_t sum = 0;
        std::uint8_t hi = 0, lo = 255;
        for (std::int64_t t = 0; t < T; ++t) {
          const std::uint8_t v = in[t * F + f];
          sum += v;
          hi = v > hi ? v : hi;
          lo = v < lo ? v : lo;
        }
        out[f] = requantize(sum - tz, m_mean, qy.zero_point);
        if (!max_min) continue;
        out[F + f] = requantize(hi - qx.zero_point, m_one, qy.zero_point);
        out[2 * F + f] = requantize(lo - qx.zero_point, m_one, qy.zero_point);
      }
    }
  });
}

}  // namespace compressor::kernels
