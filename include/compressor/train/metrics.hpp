// Metrics accumulated over batches: mean loss, and top-1 accuracy for
// classification or MAE, RMSE and R^2 for regression.
#pragma once

#include <array>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/data/batch.hpp"

namespace compressor::train {

enum class Task : std::uint8_t { classification, regression };

/// A model evaluate() can run: forward() of a float NHWC batch gives float
/// predictions ((N, K) logits or (N, 1) regression outputs). Every
/// nn::Module is one; so is any type with such a forward().
template <class M>
concept FloatModel = requires(M& m, TensorView<const float> x) {
  { m.forward(x) } -> std::convertible_to<TensorView<const float>>;
};

struct Metrics {
  Task task = Task::classification;
  std::int64_t samples = 0;
  double loss = std::numeric_limits<double>::quiet_NaN();  ///< mean over samples
  double accuracy = 0;                                     ///< classification, in [0, 1]
  double mae = 0, rmse = 0, r2 = 0;                        ///< regression
  double target_mean = 0;                                  ///< regression: mean of targets

  /// The headline figure: accuracy for classification, MAE for regression.
  double headline() const { return task == Task::classification ? accuracy : mae; }
  std::string headline_name() const { return task == Task::classification ? "acc" : "mae"; }
};

class MetricAccumulator {
 public:
  /// The running sums, in the order of sums(): samples, correct
  /// predictions, loss x samples, |error|, error^2, target, target^2.
  static constexpr std::size_t kSums = 7;
  using Sums = std::array<double, kSums>;

  explicit MetricAccumulator(Task task) : task_(task) {}
  /// An accumulator holding sums (from sums(), possibly added over several
  /// accumulators, e.g. by an allreduce over data-parallel ranks).
  MetricAccumulator(Task task, const Sums& sums) : task_(task) {
    require(sums[0] >= 0 && sums[1] >= 0 && sums[1] <= sums[0] && std::floor(sums[0]) == sums[0] &&
                std::floor(sums[1]) == sums[1],
            "MetricAccumulator: the sample and correct counts must be whole numbers with 0 <= "
            "correct <= samples, got ",
            sums[0], " and ", sums[1]);
    n_ = static_cast<std::int64_t>(sums[0]);
    correct_ = static_cast<std::int64_t>(sums[1]);
    loss_sum_ = sums[2];
    abs_ = sums[3];
    sq_ = sums[4];
    sy_ = sums[5];
    syy_ = sums[6];
  }

  Task task() const { return task_; }
  /// The sums behind result() (counts are exact as doubles up to 2^53).
  Sums sums() const {
    return {
        static_cast<double>(n_), static_cast<double>(correct_), loss_sum_, abs_, sq_, sy_, syy_};
  }
  /// Adds other's samples: the result() of one accumulator that saw both.
  void merge(const MetricAccumulator& other) {
    require(other.task_ == task_, "MetricAccumulator::merge: the tasks differ");
    const Sums a = sums(), b = other.sums();
    Sums s{};
    for (std::size_t i = 0; i < kSums; ++i) s[i] = a[i] + b[i];
    *this = MetricAccumulator(task_, s);
  }

  /// Adds a batch: pred is (N, K) logits or (N, 1) regression outputs.
  void add(TensorView<const float> pred, const data::Batch& batch, double loss) {
    const std::int64_t n = pred.dim(0);
    n_ += n;
    loss_sum_ += loss * static_cast<double>(n);
    if (task_ == Task::classification) {
      const std::int64_t k = pred.dim(1);
      for (std::int64_t i = 0; i < n; ++i) {
        const float* z = pred.data() + i * k;
        std::int64_t best = 0;
        for (std::int64_t j = 1; j < k; ++j)
          if (z[j] > z[best]) best = j;
        correct_ += best == batch.labels[i];
      }
    } else {
      for (std::int64_t i = 0; i < n; ++i) {
        const double y = batch.targets[i], d = static_cast<double>(pred[i]) - y;
        abs_ += std::abs(d);
        sq_ += d * d;
        sy_ += y;
        syy_ += y * y;
      }
    }
  }

  Metrics result() const {
    Metrics m;
    m.task = task_;
    m.samples = n_;
    if (n_ == 0) return m;
    const double n = static_cast<double>(n_);
    m.loss = loss_sum_ / n;
    if (task_ == Task::classification) {
      m.accuracy = static_cast<double>(correct_) / n;
    } else {
      m.mae = abs_ / n;
      m.rmse = std::sqrt(sq_ / n);
      m.target_mean = sy_ / n;
      const double sst = syy_ - sy_ * sy_ / n;
      m.r2 = sst > 0 ? 1.0 - sq_ / sst : std::numeric_limits<double>::quiet_NaN();
    }
    return m;
  }

 private:
  Task task_;
  std::int64_t n_ = 0, correct_ = 0;
  double loss_sum_ = 0, abs_ = 0, sq_ = 0, sy_ = 0, syy_ = 0;
};

}  // namespace compressor::train
