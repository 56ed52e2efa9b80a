// TemporalPool: per-frame features (N, T, F) -> one feature vector per clip.
//   mean          (N, F): the mean over T
//   mean_max_min  (N, 3F): [mean over T | max over T | min over T]
// The max and min pass their gradient to the frame that holds them (the first
// one on ties); a NaN anywhere in a clip's column makes its max and min NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>

#include "compressor/core/threading.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

enum class TemporalPoolMode {
  mean,          ///< mean over T: F features
  mean_max_min,  ///< mean, max and min over T, concatenated: 3F features
};

inline std::string_view to_string(TemporalPoolMode m) {
  return m == TemporalPoolMode::mean ? "mean" : "mean_max_min";
}

class TemporalPool : public Module {
 public:
  explicit TemporalPool(TemporalPoolMode mode = TemporalPoolMode::mean) : mode_(mode) {}

  std::string_view type_name() const override { return "TemporalPool"; }
  TemporalPoolMode mode() const { return mode_; }
  /// Output features for f per-frame features.
  std::int64_t out_features(std::int64_t f) const {
    return mode_ == TemporalPoolMode::mean ? f : 3 * f;
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<TemporalPool>(mode_);
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    if (x.rank() != 3 || x.dim(1) == 0)
      throw ShapeError(detail::concat(
          "TemporalPool: expected per-frame features (N, T, F) with T > 0, got ", x.shape().str()));
    in_shape_ = x.shape();
    const std::int64_t n = x.dim(0), t = x.dim(1), f = x.dim(2), of = out_features(f);
    out_.resize(Shape{n, of});
    if (mode_ == TemporalPoolMode::mean_max_min) arg_.resize(Shape{n, 2, f});
    const float inv = 1.f / static_cast<float>(t);
    parallel_for(n, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const float* xi = x.data() + i * t * f;
        float* y = out_.data() + i * of;
        for (std::int64_t j = 0; j < f; ++j) {
          float sum = 0.f;
          for (std::int64_t k = 0; k < t; ++k) sum += xi[k * f + j];
          y[j] = sum * inv;
        }
        if (mode_ == TemporalPoolMode::mean) continue;
        std::int32_t* amax = arg_.data() + i * 2 * f;
        std::int32_t* amin = amax + f;
        for (std::int64_t j = 0; j < f; ++j) {
          std::int64_t kmax = 0, kmin = 0;
          bool nan = std::isnan(xi[j]);
          for (std::int64_t k = 1; k < t; ++k) {
            const float v = xi[k * f + j];
            nan = nan || std::isnan(v);
            if (v > xi[kmax * f + j]) kmax = k;
            if (v < xi[kmin * f + j]) kmin = k;
          }
          amax[j] = static_cast<std::int32_t>(kmax);
          amin[j] = static_cast<std::int32_t>(kmin);
          constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
          y[f + j] = nan ? kNaN : xi[kmax * f + j];
          y[2 * f + j] = nan ? kNaN : xi[kmin * f + j];
        }
      }
    });
    return out_;
  }

  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "TemporalPool::backward grad_out");
    if (!input_grad()) return {};
    grad_in_.resize(in_shape_);
    const std::int64_t n = in_shape_[0], t = in_shape_[1], f = in_shape_[2], of = out_features(f);
    const float inv = 1.f / static_cast<float>(t);
    parallel_for(n, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const float* dy = grad_out.data() + i * of;
        float* dx = grad_in_.data() + i * t * f;
        for (std::int64_t k = 0; k < t; ++k)
          for (std::int64_t j = 0; j < f; ++j) dx[k * f + j] = dy[j] * inv;
        if (mode_ == TemporalPoolMode::mean) continue;
        const std::int32_t* amax = arg_.data() + i * 2 * f;
        const std::int32_t* amin = amax + f;
        for (std::int64_t j = 0; j < f; ++j) {
          dx[amax[j] * f + j] += dy[f + j];
          dx[amin[j] * f + j] += dy[2 * f + j];
        }
      }
    });
    return grad_in_;
  }

 private:
  TemporalPoolMode mode_;
  Shape in_shape_;
  Tensor<float> out_, grad_in_;
  Tensor<std::int32_t> arg_;  // (N, 2, F): frame of the max, frame of the min
};

}  // namespace compressor::nn
