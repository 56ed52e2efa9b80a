// Quantization parameters (docs/quantization.md, "The scheme"): uint8
// asymmetric activations per tensor, int8 symmetric weights per output
// channel on the weight grid the kernels compute exactly, int32 bias at
// s_in * s_w. Integer ranges come from kernels::Int8Traits, never repeated as
// numbers here; every rounding goes through kernels/requant.hpp, the one rule
// the int8 kernels use, so the fake-quant model predicts the int8 model.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/kernels/int8_traits.hpp"
#include "compressor/kernels/requant.hpp"

namespace compressor::quant {

using kernels::QuantParams;

/// A real range an activation's parameters are chosen from.
struct Range {
  float min = 0.f;
  float max = 0.f;
};

/// The int8 weight grid: the symmetric integer range a weight channel maps to
/// (kernels/int8_traits.hpp): narrow [-64, 64] or full [-127, 127], both
/// exact in every kernel on every path.
using WeightGrid = kernels::WeightGrid;
using kernels::weight_qmax;

inline std::string_view to_string(WeightGrid g) {
  return kernels::weight_grid_name(g);
}
/// The grid named `s` ("narrow" or "full", as to_string writes it): the
/// int8 files' metadata 'weight_grid' and the tools' --weight-grid.
inline WeightGrid weight_grid_from_string(std::string_view s) {
  if (s == to_string(WeightGrid::narrow)) return WeightGrid::narrow;
  if (s == to_string(WeightGrid::full)) return WeightGrid::full;
  throw ValueError(detail::concat("unknown weight grid '", s,
                                  "' (expected: ", to_string(WeightGrid::narrow), " or ",
                                  to_string(WeightGrid::full), ")"));
}

/// The smallest scale a parameter set may have (PyTorch uses float eps too):
/// a constant tensor still gets a valid, invertible scale.
inline constexpr float kMinScale = std::numeric_limits<float>::epsilon();

/// Asymmetric uint8 parameters covering [r.min, r.max] widened to include 0,
/// so real 0 is exactly representable (zero padding is exact):
/// scale = (max - min) / (qmax - qmin), zero_point = qmin - round(min / scale)
/// clamped into [qmin, qmax]. Throws on a non-finite range.
inline QuantParams choose_activation_params(Range r) {
  require(std::isfinite(r.min) && std::isfinite(r.max) && r.min <= r.max, "activation range [",
          r.min, ", ", r.max, "] is not a finite interval");
  constexpr std::int32_t qmin = kernels::Int8Traits::kActivationMin;
  constexpr std::int32_t qmax = kernels::Int8Traits::kActivationMax;
  const double lo = std::min(0.0, static_cast<double>(r.min));
  const double hi = std::max(0.0, static_cast<double>(r.max));
  const float scale = std::max(kMinScale, static_cast<float>((hi - lo) / (qmax - qmin)));
  const double zp = qmin - std::nearbyint(lo / scale);
  QuantParams q;
  q.scale = scale;
  q.zero_point = static_cast<std::int32_t>(std::clamp(zp, double(qmin), double(qmax)));
  return q;
}

/// The real range a parameter set represents: [scale*(qmin-zp), scale*(qmax-zp)].
inline Range represented_range(QuantParams q) {
  return {q.scale * static_cast<float>(kernels::Int8Traits::kActivationMin - q.zero_point),
          q.scale * static_cast<float>(kernels::Int8Traits::kActivationMax - q.zero_point)};
}

/// real -> uint8 by the one rule (m = 1 / scale, as the quantize kernel).
inline std::uint8_t quantize_activation(float x, QuantParams q) {
  return kernels::quantize(x, kernels::inverse_scale(q.scale), q.zero_point);
}
/// uint8 -> real.
inline float dequantize_activation(std::uint8_t v, QuantParams q) {
  return kernels::dequantize(v, q.scale, q.zero_point);
}
/// x -> quantize -> dequantize: what the int8 model represents x as.
inline float fake_quantize_activation(float x, QuantParams q) {
  return dequantize_activation(quantize_activation(x, q), q);
}

/// Symmetric per-channel weight scales: max|w[o]| / qmax for each of the
/// `channels` rows of a weight whose output channels are its first axis.
/// An all-zero channel gets kMinScale (its weights quantize to 0).
inline std::vector<float> weight_scales(TensorView<const float> w, WeightGrid grid) {
  require<ShapeError>(w.rank() >= 1 && w.dim(0) > 0, "weight_scales: weight of shape ", w.shape());
  const std::int64_t c = w.dim(0), per = w.numel() / c;
  const double qmax = weight_qmax(grid);
  std::vector<float> s(static_cast<std::size_t>(c));
  for (std::int64_t o = 0; o < c; ++o) {
    float m = 0.f;
    for (std::int64_t k = 0; k < per; ++k) {
      const float v = w[o * per + k];
      require(std::isfinite(v), "weight_scales: non-finite weight in output channel ", o);
      m = std::max(m, std::abs(v));
    }
    s[static_cast<std::size_t>(o)] = std::max(kMinScale, static_cast<float>(m / qmax));
  }
  return s;
}

/// w -> int8 on the grid: q = clamp(round_half_even(w * (1 / scale[o])), -qmax, qmax).
inline std::int8_t quantize_weight(float w, float scale, WeightGrid grid) {
  const std::int32_t qmax = weight_qmax(grid);
  return static_cast<std::int8_t>(
      kernels::round_scaled(w, kernels::inverse_scale(scale), 0, -qmax, qmax));
}

/// Quantizes a weight (output channels on axis 0) with per-channel scales.
inline Tensor<std::int8_t> quantize_weights(TensorView<const float> w,
                                            std::span<const float> scales, WeightGrid grid) {
  require<ShapeError>(w.rank() >= 1 && w.dim(0) > 0, "quantize_weights: weight of shape ",
                      w.shape());
  const std::int64_t c = w.dim(0), per = w.numel() / c;
  require<ShapeError>(static_cast<std::int64_t>(scales.size()) == c,
                      "quantize_weights: ", scales.size(), " scales for ", c, " output channels");
  Tensor<std::int8_t> q(w.shape());
  for (std::int64_t o = 0; o < c; ++o)
    for (std::int64_t k = 0; k < per; ++k)
      q.data()[o * per + k] =
          quantize_weight(w[o * per + k], scales[static_cast<std::size_t>(o)], grid);
  return q;
}

/// The weight the int8 model computes with: scale[o] * q.
inline float fake_quantize_weight(float w, float scale, WeightGrid grid) {
  return static_cast<float>(quantize_weight(w, scale, grid)) * scale;
}

/// int32 bias at scale s_in * s_w[o]: round_half_even(b / (s_in * s_w)),
/// clamped into int32 (the accumulator scale, as the kernels dequantize it).
inline std::int32_t quantize_bias(float b, float s_in, float s_w) {
  const float acc_scale = kernels::accumulator_scale(s_in, s_w);
  const double v = std::nearbyint(static_cast<double>(b) / static_cast<double>(acc_scale));
  require(std::isfinite(v), "quantize_bias: non-finite bias ", b);
  return static_cast<std::int32_t>(std::clamp(v, double(std::numeric_limits<std::int32_t>::min()),
                                              double(std::numeric_limits<std::int32_t>::max())));
}

}  // namespace compressor::quant
