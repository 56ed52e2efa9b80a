// Losses: softmax cross-entropy (with label smoothing), MSE and L1, each the
// mean over the batch as in PyTorch's default reduction. forward() returns the
// loss and caches what backward() needs; backward() returns dL/d(prediction).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "compressor/core/tensor.hpp"
#include "compressor/data/batch.hpp"

namespace compressor::nn {

/// Common interface so a training loop can take any loss.
class Loss {
 public:
  virtual ~Loss() = default;
  virtual std::string_view name() const = 0;
  /// Loss of pred against the batch's labels or targets.
  virtual float compute(TensorView<const float> pred, const data::Batch& batch) = 0;
  /// dL/d(pred) of the last compute(); valid until the next call.
  virtual TensorView<const float> backward() = 0;
};

/// Mean softmax cross-entropy of logits (N, K) against class indices (N).
/// With label smoothing s the target is (1-s)*onehot + s/K, as in PyTorch.
class SoftmaxCrossEntropy : public Loss {
 public:
  explicit SoftmaxCrossEntropy(float label_smoothing = 0.f) : smoothing_(label_smoothing) {
    require(label_smoothing >= 0.f && label_smoothing < 1.f,
            "SoftmaxCrossEntropy: label_smoothing must be in [0, 1), got ", label_smoothing);
  }
  std::string_view name() const override { return "cross_entropy"; }

  float forward(TensorView<const float> logits, TensorView<const std::int32_t> labels) {
    if (logits.rank() != 2 || labels.rank() != 1 || labels.dim(0) != logits.dim(0))
      throw ShapeError(
          detail::concat("SoftmaxCrossEntropy: expected logits (N, K) and labels (N),"
                         " got ",
                         logits.shape().str(), " and ", labels.shape().str()));
    const std::int64_t n = logits.dim(0), k = logits.dim(1);
    require(n > 0, "SoftmaxCrossEntropy: empty batch");
    grad_.resize(logits.shape());
    double total = 0;
    const double off = smoothing_ / static_cast<double>(k);
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int32_t y = labels[i];
      if (y < 0 || y >= k)
        throw ValueError(detail::concat("SoftmaxCrossEntropy: label ", y, " of sample ", i,
                                        " is outside [0, ", k, ")"));
      const float* z = logits.data() + i * k;
      float* g = grad_.data() + i * k;
      const float zmax = *std::max_element(z, z + k);
      double sum = 0;
      for (std::int64_t j = 0; j < k; ++j) sum += std::exp(static_cast<double>(z[j] - zmax));
      const double log_sum = std::log(sum);
      double mean_neg_logp = 0;
      for (std::int64_t j = 0; j < k; ++j) {
        const double logp = static_cast<double>(z[j] - zmax) - log_sum;
        mean_neg_logp -= logp;
        const double target = (j == y ? 1.0 - smoothing_ : 0.0) + off;
        g[j] = static_cast<float>((std::exp(logp) - target) / static_cast<double>(n));
      }
      const double nll = -(static_cast<double>(z[y] - zmax) - log_sum);
      total += (1.0 - smoothing_) * nll + smoothing_ * mean_neg_logp / static_cast<double>(k);
    }
    return static_cast<float>(total / static_cast<double>(n));
  }

  float compute(TensorView<const float> pred, const data::Batch& batch) override {
    return forward(pred, batch.labels);
  }
  TensorView<const float> backward() override { return grad_; }

 private:
  float smoothing_;
  Tensor<float> grad_;
};

namespace internal {
inline void check_regression_shapes(std::string_view who, TensorView<const float> pred,
                                    TensorView<const float> target) {
  if (!(pred.shape() == target.shape()))
    throw ShapeError(detail::concat(who, ": prediction ", pred.shape().str(), " and target ",
                                    target.shape().str(), " differ"));
  require(pred.numel() > 0, who, ": empty batch");
}
}  // namespace internal

/// Mean over elements of a pointwise loss f(pred - target), with its
/// derivative f'. MSE: f(d) = d^2; L1: f(d) = |d| (subgradient 0 at d = 0).
template <class Derived>
class PointwiseLoss : public Loss {
 public:
  float forward(TensorView<const float> pred, TensorView<const float> target) {
    internal::check_regression_shapes(name(), pred, target);
    grad_.resize(pred.shape());
    const double inv = 1.0 / static_cast<double>(pred.numel());
    double total = 0;
    for (std::int64_t i = 0; i < pred.numel(); ++i) {
      const double d = static_cast<double>(pred[i]) - target[i];
      total += Derived::value(d);
      grad_[i] = static_cast<float>(Derived::derivative(d) * inv);
    }
    return static_cast<float>(total * inv);
  }
  float compute(TensorView<const float> pred, const data::Batch& batch) override {
    return forward(pred, batch.targets);
  }
  TensorView<const float> backward() override { return grad_; }

 private:
  Tensor<float> grad_;
};

/// Mean squared error.
class MSELoss : public PointwiseLoss<MSELoss> {
 public:
  std::string_view name() const override { return "mse"; }
  static double value(double d) { return d * d; }
  static double derivative(double d) { return 2.0 * d; }
};

/// Mean absolute error.
class L1Loss : public PointwiseLoss<L1Loss> {
 public:
  std::string_view name() const override { return "l1"; }
  static double value(double d) { return std::abs(d); }
  static double derivative(double d) { return d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0); }
};

}  // namespace compressor::nn
