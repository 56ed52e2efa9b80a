// BatchNorm2d over the channel (last) dimension of NHWC activations. In
// training it normalises with the batch statistics and updates running
// statistics with momentum (running_var uses the unbiased batch variance, as
// PyTorch does); in eval it uses the running statistics. A momentum of 0
// means a cumulative average over the batches since the last
// reset_running_stats() (PyTorch's momentum=None). Frozen (Module::freeze()),
// it normalises with the running statistics and leaves them alone in training
// mode too, while gamma and beta still train (QAT freezes the statistics
// after a set epoch; fine-tuning a pruned model may too).
//
// Synchronised statistics (data-parallel training, docs/distributed.md): with
// a StatisticsReducer set, training-mode forward normalises with the mean and
// variance over the samples of ALL replicas (one reduction of the per-channel
// sums and the row count), and backward reduces the two per-channel sums of
// the input gradient, so that each replica's input gradient is exactly its
// share of the single-process gradient of the global batch (see
// backward_impl). gamma's and beta's gradients stay local: the gradient
// averaging combines them as it does every other parameter's.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "compressor/core/threading.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

/// Sums per-channel statistics over the replicas of data-parallel training:
/// what synchronised BatchNorm needs from the transport. The MPI one is
/// distributed::synchronize_batchnorm()'s; the core library knows only this.
class StatisticsReducer {
 public:
  virtual ~StatisticsReducer() = default;
  /// Collective (every replica calls it at the same point of every step):
  /// replaces values by their element-wise sum over the replicas.
  virtual void sum(std::span<double> values) = 0;
};

class BatchNorm2d : public Module, public Normalization {
 public:
  explicit BatchNorm2d(std::int64_t channels, float eps = 1e-5f, float momentum = 0.1f)
      : c_(channels), eps_(eps), momentum_(momentum) {
    require(channels > 0, "BatchNorm2d: channels must be positive, got ", channels);
    weight_ = Tensor<float>(Shape{c_}, 1.f);
    bias_ = Tensor<float>(Shape{c_}, 0.f);
    running_mean_ = Tensor<float>(Shape{c_}, 0.f);
    running_var_ = Tensor<float>(Shape{c_}, 1.f);
    num_batches_tracked_ = Tensor<std::int64_t>(Shape{}, 0);
    register_parameter("weight", weight_, weight_grad_);
    register_parameter("bias", bias_, bias_grad_);
    register_buffer("running_mean", running_mean_);
    register_buffer("running_var", running_var_);
    register_buffer("num_batches_tracked", num_batches_tracked_);
    mean_.resize(Shape{c_});
    invstd_.resize(Shape{c_});
  }

  std::string_view type_name() const override { return "BatchNorm2d"; }

  // Normalization
  std::int64_t channels() const override { return c_; }
  float eps() const override { return eps_; }
  float momentum() const override { return momentum_; }
  /// Momentum of the running statistics; 0 = cumulative average.
  void set_momentum(float m) override {
    require(m >= 0.f && m <= 1.f, "BatchNorm2d: momentum must be in [0, 1], got ", m);
    momentum_ = m;
  }
  /// Running mean 0, running variance 1, no batches tracked.
  void reset_running_stats() override {
    running_mean_.fill(0.f);
    running_var_.fill(1.f);
    num_batches_tracked_[0] = 0;
  }
  Tensor<float>& weight() override { return weight_; }
  Tensor<float>& bias() override { return bias_; }
  Tensor<float>& running_mean() override { return running_mean_; }
  Tensor<float>& running_var() override { return running_var_; }
  std::unique_ptr<Module> select_channels(std::span<const std::int64_t> keep) const override {
    check_channel_selection(keep, c_, "BatchNorm2d channels");
    auto bn =
        std::make_unique<BatchNorm2d>(static_cast<std::int64_t>(keep.size()), eps_, momentum_);
    gather_axis(weight_, 0, keep, bn->weight_);
    gather_axis(bias_, 0, keep, bn->bias_);
    gather_axis(running_mean_, 0, keep, bn->running_mean_);
    gather_axis(running_var_, 0, keep, bn->running_var_);
    bn->num_batches_tracked_ = num_batches_tracked_;
    return bn;
  }

  /// Whether forward() normalises with (and updates) the batch statistics:
  /// in training mode, unless frozen.
  bool uses_batch_statistics() const { return is_training() && !is_frozen(); }

  /// Synchronised statistics: the batch statistics (and their gradients) are
  /// summed over the replicas through r; null goes back to per-replica
  /// statistics. Not copied by clone(): a copy is attached again.
  void set_statistics_reducer(std::shared_ptr<StatisticsReducer> r) { reducer_ = std::move(r); }
  /// Whether the batch statistics are synchronised over replicas.
  bool synchronized() const { return reducer_ != nullptr; }
  bool reduces_across_replicas() const override {
    return synchronized() && uses_batch_statistics();
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<BatchNorm2d>(c_, eps_, momentum_);
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    if (x.rank() != 4 || x.dim(3) != c_)
      throw ShapeError(detail::concat("BatchNorm2d(", c_, "): expected an NHWC input (N, H, W, ",
                                      c_, "), got ", x.shape().str()));
    x_ = x;
    const std::int64_t rows = x.numel() / c_;
    if (uses_batch_statistics()) {
      // Per-channel mean and biased variance, in double, reduced in a fixed order.
      channel_sums(x.data(), nullptr, rows, sum_, sq_);
      // n: the values per channel the statistics cover (all replicas' when synchronised).
      double n = static_cast<double>(rows);
      if (reducer_) n = reduce_sums(n);
      rows_ = static_cast<double>(rows);
      global_rows_ = n;
      require(n > 1, "BatchNorm2d: training needs more than one value per channel, got input ",
              x.shape(), reducer_ ? " (on all replicas together)" : "");
      num_batches_tracked_[0] += 1;
      const double m =
          momentum_ > 0.f ? momentum_ : 1.0 / static_cast<double>(num_batches_tracked_[0]);
      for (std::int64_t c = 0; c < c_; ++c) {
        const double mean = sum_[c] / n;
        const double var = std::max(0.0, sq_[c] / n - mean * mean);
        mean_[c] = static_cast<float>(mean);
        invstd_[c] = static_cast<float>(1.0 / std::sqrt(var + eps_));
        running_mean_[c] = static_cast<float>((1 - m) * running_mean_[c] + m * mean);
        running_var_[c] = static_cast<float>((1 - m) * running_var_[c] + m * var * n / (n - 1));
      }
    } else {
      for (std::int64_t c = 0; c < c_; ++c) {
        mean_[c] = running_mean_[c];
        invstd_[c] = 1.f / std::sqrt(running_var_[c] + eps_);
      }
    }
    // y = x * scale + shift with scale = gamma * invstd, shift = beta - mean * scale.
    scale_.resize(Shape{c_});
    shift_.resize(Shape{c_});
    for (std::int64_t c = 0; c < c_; ++c) {
      scale_[c] = weight_[c] * invstd_[c];
      shift_[c] = bias_[c] - mean_[c] * scale_[c];
    }
    out_.resize(x.shape());
    const float* xp = x.data();
    float* yp = out_.data();
    const float* sc = scale_.data();
    const float* sh = shift_.data();
    const std::int64_t c = c_;
    parallel_for(
        rows,
        [&](std::int64_t r0, std::int64_t r1) {
          for (std::int64_t r = r0; r < r1; ++r)
            for (std::int64_t j = 0; j < c; ++j) yp[r * c + j] = xp[r * c + j] * sc[j] + sh[j];
        },
        64);
    return out_;
  }

  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "BatchNorm2d::backward grad_out");
    const std::int64_t rows = grad_out.numel() / c_;
    // sum_ = sum(dy), sq_ = sum(dy * xhat) per channel.
    channel_sums(grad_out.data(), x_.data(), rows, sum_, sq_);
    for (std::int64_t c = 0; c < c_; ++c) {
      bias_grad_[c] += static_cast<float>(sum_[c]);
      weight_grad_[c] += static_cast<float>(sq_[c]);
    }
    if (!input_grad()) return {};
    grad_in_.resize(grad_out.shape());
    const float* dy = grad_out.data();
    const float* xp = x_.data();
    float* dx = grad_in_.data();
    const std::int64_t c = c_;
    if (uses_batch_statistics()) {
      // dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
      if (reducer_) {
        // Replica r's dy is the gradient of ITS mean loss over n_r samples;
        // the global batch's is w_r * dy with w_r = n_r / N (= rows / global
        // rows). The single-process dx over the global batch, in replica r's
        // units (divided by w_r, as the gradient averaging expects), is
        //   gamma * invstd * (dy - A / rows - xhat * B / rows),
        // A, B = sum over replicas of w_r * sum(dy), w_r * sum(dy * xhat).
        // With equal shares, A / rows is the plain global mean of dy.
        const double w = rows_ / global_rows_;
        for (std::int64_t j = 0; j < c_; ++j) {
          sum_[j] *= w;
          sq_[j] *= w;
        }
        (void)reduce_sums(0);
      }
      a_.resize(Shape{c_});
      b_.resize(Shape{c_});
      for (std::int64_t j = 0; j < c_; ++j) {
        a_[j] = static_cast<float>(sum_[j] / rows);
        b_[j] = static_cast<float>(sq_[j] / rows);
      }
      const float *m = mean_.data(), *is = invstd_.data(), *g = weight_.data(), *pa = a_.data(),
                  *pb = b_.data();
      parallel_for(
          rows,
          [&](std::int64_t r0, std::int64_t r1) {
            for (std::int64_t r = r0; r < r1; ++r)
              for (std::int64_t j = 0; j < c; ++j) {
                const float xhat = (xp[r * c + j] - m[j]) * is[j];
                dx[r * c + j] = g[j] * is[j] * (dy[r * c + j] - pa[j] - xhat * pb[j]);
              }
          },
          64);
    } else {
      const float* sc = scale_.data();
      parallel_for(
          rows,
          [&](std::int64_t r0, std::int64_t r1) {
            for (std::int64_t r = r0; r < r1; ++r)
              for (std::int64_t j = 0; j < c; ++j) dx[r * c + j] = dy[r * c + j] * sc[j];
          },
          64);
    }
    return grad_in_;
  }

 private:
  /// Sums sum_, sq_ and count over the replicas in one reduction; returns
  /// the summed count.
  double reduce_sums(double count) {
    const auto c = static_cast<std::size_t>(c_);
    reduce_buf_.resize(2 * c + 1);
    std::copy(sum_.begin(), sum_.end(), reduce_buf_.begin());
    std::copy(sq_.begin(), sq_.end(), reduce_buf_.begin() + static_cast<std::ptrdiff_t>(c));
    reduce_buf_[2 * c] = count;
    reducer_->sum(reduce_buf_);
    std::copy_n(reduce_buf_.begin(), c, sum_.begin());
    std::copy_n(reduce_buf_.begin() + static_cast<std::ptrdiff_t>(c), c, sq_.begin());
    return reduce_buf_[2 * c];
  }

  /// Per-channel sums over rows of v: s1 = sum(v), s2 = sum(v*v) when x is
  /// null, else s2 = sum(v * xhat(x)). Each thread reduces a contiguous block of
  /// rows: 16 rows at a time in float (vectorised), each 16-row sum added
  /// into a double; threads are combined in thread order, so the result is
  /// deterministic for a given thread count.
  void channel_sums(const float* v, const float* x, std::int64_t rows, std::vector<double>& s1,
                    std::vector<double>& s2) {
    const std::int64_t c = c_;
    const int threads = num_threads();
    constexpr std::int64_t kBlock = 16;
    partial_.assign(static_cast<std::size_t>(threads) * 2 * static_cast<std::size_t>(c), 0.0);
    block_.resize(static_cast<std::size_t>(threads) * 2 * static_cast<std::size_t>(c));
    const float* m = mean_.data();
    const float* is = invstd_.data();
    parallel_for(threads, [&](std::int64_t t0, std::int64_t t1) {
      for (std::int64_t t = t0; t < t1; ++t) {
        const std::int64_t r0 = rows * t / threads, r1 = rows * (t + 1) / threads;
        double* __restrict p1 = partial_.data() + t * 2 * c;
        double* __restrict p2 = p1 + c;
        float* __restrict f1 = block_.data() + t * 2 * c;
        float* __restrict f2 = f1 + c;
        for (std::int64_t b = r0; b < r1; b += kBlock) {
          std::fill_n(f1, 2 * c, 0.f);
          for (std::int64_t r = b; r < std::min(r1, b + kBlock); ++r) {
            const float* __restrict vr = v + r * c;
            if (x) {
              const float* __restrict xr = x + r * c;
              for (std::int64_t j = 0; j < c; ++j) {
                f1[j] += vr[j];
                f2[j] += vr[j] * ((xr[j] - m[j]) * is[j]);
              }
            } else {
              for (std::int64_t j = 0; j < c; ++j) {
                f1[j] += vr[j];
                f2[j] += vr[j] * vr[j];
              }
            }
          }
          for (std::int64_t j = 0; j < c; ++j) {
            p1[j] += f1[j];
            p2[j] += f2[j];
          }
        }
      }
    });
    s1.assign(static_cast<std::size_t>(c), 0.0);
    s2.assign(static_cast<std::size_t>(c), 0.0);
    for (int t = 0; t < threads; ++t)
      for (std::int64_t j = 0; j < c; ++j) {
        s1[static_cast<std::size_t>(j)] += partial_[static_cast<std::size_t>((t * 2) * c + j)];
        s2[static_cast<std::size_t>(j)] += partial_[static_cast<std::size_t>((t * 2 + 1) * c + j)];
      }
  }

  std::int64_t c_;
  float eps_, momentum_;
  Tensor<float> weight_, weight_grad_, bias_, bias_grad_;
  Tensor<float> running_mean_, running_var_;
  Tensor<std::int64_t> num_batches_tracked_;
  Tensor<float> mean_, invstd_, scale_, shift_, a_, b_;
  Tensor<float> out_, grad_in_;
  TensorView<const float> x_;
  std::vector<double> sum_, sq_, partial_, reduce_buf_;
  std::vector<float> block_;
  std::shared_ptr<StatisticsReducer> reducer_;
  double rows_ = 0, global_rows_ = 0;  // of the last training-mode forward
};

}  // namespace compressor::nn
