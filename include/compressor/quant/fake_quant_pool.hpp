// The averaging layers of a fake-quant model, computed with the int8 ops'
// integer rule so that ties round as they do in the int8 model.
//
// The int8 global average pool and temporal pool sum the uint8 inputs in
// int32 and requantize the sum with average_multiplier(s_x, s_y, count)
// (kernels/pool.hpp). With count even, some sums land exactly half-way
// between two output steps (with s_x = s_y and 4 frames, one sum in four),
// and those round half to even. The float layer's mean of the dequantized
// inputs lands a rounding error off the tie instead, so its FakeQuantize
// rounds such a value either way: the fake-quant model differed from the
// int8 model on 1-3% of a temporal pool's values over 4 frames.
//
// These layers run the float layer (its forward keeps what its backward
// needs), then, when the int8 rule applies, replace each output by the int8
// op's result on the input's uint8 values, dequantized: the mean with the
// int32 sum and average_multiplier(s_x, s_y, count), a temporal pool's max
// and min with average_multiplier(s_x, s_y, 1). The rule applies when the
// layer's output hook is an enabled FakeQuantize (s_y and its zero point are
// that hook's) and every input value lies on the input point's grid (the
// fake-quant model's input point puts it there); otherwise, as when
// sensitivity_report() leaves the points around one point unquantized, the
// layer is its float layer. The hook then leaves the outputs unchanged, as
// they are on its grid already. Backward is the float layer's.
// fake_quant_model() (convert.hpp) swaps them in at every pool and
// temporal-pool point.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "compressor/core/threading.hpp"
#include "compressor/kernels/requant.hpp"
#include "compressor/nn/pooling.hpp"
#include "compressor/nn/temporal_pool.hpp"
#include "compressor/quant/fake_quant.hpp"
#include "compressor/quant/qparams.hpp"

namespace compressor::quant {

namespace internal {
/// The output parameters when the int8 rule applies to `layer` on input x
/// (see the file comment), else nullopt.
inline std::optional<QuantParams> int8_rule_output(const nn::Module& layer,
                                                   TensorView<const float> x, QuantParams in) {
  const nn::Module* hook = layer.output_hook();
  const auto* fq = hook != nullptr ? nn::as<FakeQuantize>(*hook) : nullptr;
  if (fq == nullptr || !fq->fake_quant_enabled()) return std::nullopt;
  for (const float v : x.flat())
    if (dequantize_activation(quantize_activation(v, in), in) != v) return std::nullopt;
  return fq->qparams();
}

/// The int8 requantization of an int32 sum, dequantized to the output's grid.
inline float requantize_to_grid(std::int32_t sum, float multiplier, QuantParams out) {
  return kernels::dequantize(kernels::requantize(sum, multiplier, out.zero_point), out.scale,
                             out.zero_point);
}
}  // namespace internal

/// nn::GlobalAvgPool2d whose outputs follow kernels::global_avg_pool_u8.
class FakeQuantGlobalAvgPool2d : public nn::GlobalAvgPool2d {
 public:
  /// `in`: the parameters of the point feeding the pool.
  explicit FakeQuantGlobalAvgPool2d(QuantParams in) : in_(in) {}

  std::string_view type_name() const override { return "FakeQuantGlobalAvgPool2d"; }
  QuantParams input_qparams() const { return in_; }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<FakeQuantGlobalAvgPool2d>(in_);
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    const TensorView<const float> mean = nn::GlobalAvgPool2d::forward_impl(x);  // checks x
    const std::optional<QuantParams> out = internal::int8_rule_output(*this, x, in_);
    if (!out) return mean;
    y_.resize(mean.shape());
    const std::int64_t n = x.dim(0), hw = x.dim(1) * x.dim(2), c = x.dim(3);
    const float m = kernels::average_multiplier(in_.scale, out->scale, hw);
    const auto offset = static_cast<std::int32_t>(hw) * in_.zero_point;
    parallel_for(n, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const float* xi = x.data() + i * hw * c;
        for (std::int64_t j = 0; j < c; ++j) {
          std::int32_t sum = 0;
          for (std::int64_t p = 0; p < hw; ++p) sum += quantize_activation(xi[p * c + j], in_);
          y_.data()[i * c + j] = internal::requantize_to_grid(sum - offset, m, *out);
        }
      }
    });
    return y_;
  }

 private:
  QuantParams in_;
  Tensor<float> y_;
};

/// nn::TemporalPool whose outputs follow kernels::temporal_pool_u8.
class FakeQuantTemporalPool : public nn::TemporalPool {
 public:
  /// `in`: the parameters of the per-frame features' point.
  FakeQuantTemporalPool(nn::TemporalPoolMode mode, QuantParams in)
      : nn::TemporalPool(mode), in_(in) {}

  std::string_view type_name() const override { return "FakeQuantTemporalPool"; }
  QuantParams input_qparams() const { return in_; }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<FakeQuantTemporalPool>(mode(), in_);
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    const TensorView<const float> pooled = nn::TemporalPool::forward_impl(x);  // checks x
    const std::optional<QuantParams> out = internal::int8_rule_output(*this, x, in_);
    if (!out) return pooled;
    y_.resize(pooled.shape());
    const std::int64_t n = x.dim(0), t = x.dim(1), f = x.dim(2), of = out_features(f);
    const bool max_min = mode() == nn::TemporalPoolMode::mean_max_min;
    const float m_mean = kernels::average_multiplier(in_.scale, out->scale, t);
    const float m_one = kernels::average_multiplier(in_.scale, out->scale, 1);
    const auto offset = static_cast<std::int32_t>(t) * in_.zero_point;
    parallel_for(n, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const float* xi = x.data() + i * t * f;
        float* y = y_.data() + i * of;
        for (std::int64_t j = 0; j < f; ++j) {
          std::int32_t sum = 0, hi = 0, lo = 255;
          for (std::int64_t k = 0; k < t; ++k) {
            const std::int32_t v = quantize_activation(xi[k * f + j], in_);
            sum += v;
            hi = v > hi ? v : hi;
            lo = v < lo ? v : lo;
          }
          y[j] = internal::requantize_to_grid(sum - offset, m_mean, *out);
          if (!max_min) continue;
          y[f + j] = internal::requantize_to_grid(hi - in_.zero_point, m_one, *out);
          y[2 * f + j] = internal::requantize_to_grid(lo - in_.zero_point, m_one, *out);
        }
      }
    });
    return y_;
  }

 private:
  QuantParams in_;
  Tensor<float> y_;
};

}  // namespace compressor::quant
