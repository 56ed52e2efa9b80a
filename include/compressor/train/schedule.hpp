// Learning-rate schedules as functions of the optimizer step (0-based): the
// training loop sets lr = schedule.lr_at(step) before every step, and the
// momentum (SGD's momentum, Adam's beta1) to momentum_at(step) where the
// schedule cycles it (OneCycleLr, as PyTorch's OneCycleLR does by default).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <optional>

#include "compressor/core/error.hpp"

namespace compressor::train {

class LrSchedule {
 public:
  virtual ~LrSchedule() = default;
  virtual float lr_at(std::int64_t step) const = 0;
  /// The momentum to set at this step, or nothing to leave the optimizer's.
  virtual std::optional<float> momentum_at(std::int64_t) const { return std::nullopt; }
};

/// Constant learning rate.
class ConstantLr : public LrSchedule {
 public:
  explicit ConstantLr(float lr) : lr_(lr) {}
  float lr_at(std::int64_t) const override { return lr_; }

 private:
  float lr_;
};

/// torch.optim.lr_scheduler.StepLR: lr = base * gamma^floor(step / step_size).
class StepLr : public LrSchedule {
 public:
  StepLr(float base_lr, std::int64_t step_size, float gamma = 0.1f)
      : base_(base_lr), step_size_(step_size), gamma_(gamma) {
    require(step_size > 0, "StepLr: step_size must be positive, got ", step_size);
  }
  float lr_at(std::int64_t step) const override {
    return static_cast<float>(
        base_ * std::pow(static_cast<double>(gamma_), static_cast<double>(step / step_size_)));
  }

 private:
  float base_;
  std::int64_t step_size_;
  float gamma_;
};

/// Linear warm-up (base * (step+1) / warmup_steps) for warmup_steps steps, then
/// cosine annealing from base to min_lr at total_steps (CosineAnnealingLR).
class CosineLr : public LrSchedule {
 public:
  CosineLr(float base_lr, std::int64_t total_steps, std::int64_t warmup_steps = 0,
           float min_lr = 0.f)
      : base_(base_lr), total_(total_steps), warmup_(warmup_steps), min_(min_lr) {
    require(total_steps > 0 && warmup_steps >= 0 && warmup_steps < total_steps,
            "CosineLr: need 0 <= warmup_steps < total_steps, got ", warmup_steps, " and ",
            total_steps);
  }
  float lr_at(std::int64_t step) const override {
    if (step < warmup_) return base_ * static_cast<float>(step + 1) / static_cast<float>(warmup_);
    const double t = std::min<double>(
        1.0, static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_));
    return static_cast<float>(min_ + (base_ - min_) * 0.5 * (1.0 + std::cos(std::numbers::pi * t)));
  }

 private:
  float base_;
  std::int64_t total_, warmup_;
  float min_;
};

/// torch.optim.lr_scheduler.CosineAnnealingWarmRestarts with T_mult = 1:
/// cosine from base_lr down to min_lr over each cycle of cycle_steps steps,
/// then back to base_lr. The cyclical schedule of stochastic weight
/// averaging: a snapshot at the end of each cycle, where the rate is lowest.
class CosineRestartsLr : public LrSchedule {
 public:
  CosineRestartsLr(float base_lr, std::int64_t cycle_steps, float min_lr = 0.f)
      : cycle_(checked(cycle_steps)), cosine_(base_lr, cycle_steps, 0, min_lr) {}
  float lr_at(std::int64_t step) const override { return cosine_.lr_at(step % cycle_); }

 private:
  static std::int64_t checked(std::int64_t cycle_steps) {
    require(cycle_steps > 0, "CosineRestartsLr: cycle_steps must be > 0, got ", cycle_steps);
    return cycle_steps;
  }
  std::int64_t cycle_;
  CosineLr cosine_;  ///< one cycle
};

/// torch.optim.lr_scheduler.SequentialLR: first for steps [0, milestone),
/// then second, restarted at step 0. The momentum is the active schedule's
/// (none: the optimizer keeps its own). Holds both by reference: they must
/// outlive it.
class SequentialLr : public LrSchedule {
 public:
  SequentialLr(const LrSchedule& first, const LrSchedule& second, std::int64_t milestone)
      : first_(first), second_(second), milestone_(milestone) {
    require(milestone >= 0, "SequentialLr: milestone must be >= 0, got ", milestone);
  }
  float lr_at(std::int64_t step) const override {
    return step < milestone_ ? first_.lr_at(step) : second_.lr_at(step - milestone_);
  }
  std::optional<float> momentum_at(std::int64_t step) const override {
    return step < milestone_ ? first_.momentum_at(step) : second_.momentum_at(step - milestone_);
  }

 private:
  const LrSchedule& first_;
  const LrSchedule& second_;
  std::int64_t milestone_;
};

/// torch.optim.lr_scheduler.OneCycleLR (cosine annealing, two phases): warm-up
/// from max_lr/div_factor to max_lr over pct_start of the steps, then down to
/// max_lr/(div_factor*final_div_factor). The momentum cycles the other way,
/// from max_momentum down to base_momentum while the rate rises and back up
/// while it falls (PyTorch's default cycle_momentum=True, 0.85 / 0.95);
/// cycle_momentum(false) leaves the optimizer's momentum alone.
class OneCycleLr : public LrSchedule {
 public:
  OneCycleLr(float max_lr, std::int64_t total_steps, float pct_start = 0.3f,
             float div_factor = 25.f, float final_div_factor = 1e4f)
      : max_(max_lr),
        total_(total_steps),
        initial_(max_lr / div_factor),
        final_(max_lr / (div_factor * final_div_factor)) {
    require(total_steps > 1 && pct_start > 0.f && pct_start < 1.f,
            "OneCycleLr: need total_steps > 1 and 0 < pct_start < 1");
    up_end_ = static_cast<double>(pct_start) * static_cast<double>(total_steps) - 1.0;
    down_end_ = static_cast<double>(total_steps) - 1.0;
  }
  float lr_at(std::int64_t step) const override {
    const double s = static_cast<double>(std::min(step, total_ - 1));
    if (s <= up_end_) return anneal(initial_, max_, up_end_ > 0 ? s / up_end_ : 1.0);
    return anneal(max_, final_, (s - up_end_) / (down_end_ - up_end_));
  }
  std::optional<float> momentum_at(std::int64_t step) const override {
    if (!cycle_) return std::nullopt;
    const double s = static_cast<double>(std::min(step, total_ - 1));
    if (s <= up_end_) return anneal(max_momentum_, base_momentum_, up_end_ > 0 ? s / up_end_ : 1.0);
    return anneal(base_momentum_, max_momentum_, (s - up_end_) / (down_end_ - up_end_));
  }
  /// Cycles the momentum between base and max (on by default, 0.85 / 0.95),
  /// or not at all.
  OneCycleLr& cycle_momentum(bool on, float base = 0.85f, float max = 0.95f) {
    require(!on || (base >= 0.f && base <= max && max < 1.f),
            "OneCycleLr: momentum cycling needs 0 <= base_momentum <= max_momentum < 1, got ", base,
            " and ", max);
    cycle_ = on;
    base_momentum_ = base;
    max_momentum_ = max;
    return *this;
  }

 private:
  static float anneal(double from, double to, double pct) {
    return static_cast<float>(to + (from - to) / 2.0 * (std::cos(std::numbers::pi * pct) + 1.0));
  }
  float max_;
  std::int64_t total_;
  double initial_, final_, up_end_ = 0, down_end_ = 0;
  bool cycle_ = true;
  double base_momentum_ = 0.85, max_momentum_ = 0.95;
};

}  // namespace compressor::train
