// Pruning schedules over fine-tuning.
//
//   one-shot     prune_unstructured() (or prune_channels()), then fine-tune
//                with MaskedTraining: nothing more is needed here.
//   gradual      GradualPruning: the sparsity follows the cubic schedule of
//                Zhu & Gupta (2017, "To prune, or not to prune"),
//                  s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3
//                for t = t0, t0 + dt, ..., t0 + n dt (the masks are
//                recomputed at those steps and held in between).
//   iterative    iterative_targets() and prune_iteratively(): R rounds of
//                prune + fine-tune, each round removing the same fraction of
//                the weights left, s_r = 1 - (1 - s_f)^(r / R).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/prune/masked_training.hpp"
#include "compressor/prune/unstructured.hpp"
#include "compressor/train/trainer.hpp"

namespace compressor::prune {

/// Zhu & Gupta's cubic sparsity schedule over optimizer steps.
struct CubicSchedule {
  double initial_sparsity = 0.0;  ///< s_i, applied at begin_step
  double final_sparsity = 0.9;    ///< s_f, reached at end_step
  std::int64_t begin_step = 0;    ///< t0
  std::int64_t end_step = 1000;   ///< t0 + n dt
  std::int64_t frequency = 100;   ///< dt: steps between mask updates

  void check() const {
    check_ratio(initial_sparsity, "CubicSchedule::initial_sparsity");
    check_ratio(final_sparsity, "CubicSchedule::final_sparsity");
    require(initial_sparsity <= final_sparsity, "CubicSchedule: initial_sparsity ",
            initial_sparsity, " exceeds final_sparsity ", final_sparsity);
    require(begin_step >= 0 && end_step >= begin_step, "CubicSchedule: need 0 <= begin_step (",
            begin_step, ") <= end_step (", end_step, ")");
    require(frequency > 0, "CubicSchedule::frequency must be positive, got ", frequency);
  }

  /// Whether the masks are updated after `step` optimizer steps.
  bool is_update_step(std::int64_t step) const {
    return step >= begin_step && step <= end_step &&
           ((step - begin_step) % frequency == 0 || step == end_step);
  }

  /// The target after `step` optimizer steps: 0 before t0, s_f from the end
  /// step on, and in between the cubic at the last update step.
  double sparsity_at(std::int64_t step) const {
    if (step < begin_step) return 0.0;
    if (step >= end_step || end_step == begin_step) return final_sparsity;
    const std::int64_t t = begin_step + (step - begin_step) / frequency * frequency;
    const double x = 1.0 - double(t - begin_step) / double(end_step - begin_step);
    return final_sparsity + (initial_sparsity - final_sparsity) * x * x * x;
  }
};

/// Gradual magnitude (or random) pruning during fine-tuning: masks applied
/// at every step as MaskedTraining does, recomputed from the current weights
/// at the schedule's update steps (masks only grow).
class GradualPruning {
 public:
  /// policy: layers, scope and criterion (its sparsity is ignored: the
  /// schedule sets it). Counts steps from 0; a begin_step of 0 prunes now.
  GradualPruning(nn::Module& model, train::Optimizer& optimizer, UnstructuredOptions policy,
                 const CubicSchedule& schedule)
      : policy_(std::move(policy)),
        schedule_(schedule),
        masked_(model, optimizer, masks_for(model, policy_, schedule, 0, nullptr)) {
    schedule_.check();
  }

  void attach(train::Trainer& trainer) {
    trainer.add_before_update([this] { masked_.before_update(); });
    trainer.add_after_step([this] { after_step(); });
  }
  void before_update() { masked_.before_update(); }
  /// Counts the step, updates the masks on an update step, applies them.
  void after_step() {
    ++steps_;
    if (schedule_.is_update_step(steps_))
      masked_.set_masks(masks_for(masked_.model(), policy_, schedule_, steps_, &masked_.masks()));
    else
      masked_.after_step();
  }

  std::int64_t steps() const { return steps_; }
  const MaskSet& masks() const { return masked_.masks(); }
  /// The target sparsity of the current masks.
  double target() const { return schedule_.sparsity_at(steps_); }

 private:
  static MaskSet masks_for(nn::Module& model, UnstructuredOptions o, const CubicSchedule& s,
                           std::int64_t step, const MaskSet* previous) {
    s.check();
    o.sparsity = s.sparsity_at(step);
    return unstructured_masks(model, o, previous);
  }

  UnstructuredOptions policy_;
  CubicSchedule schedule_;
  MaskedTraining masked_;
  std::int64_t steps_ = 0;
};

/// The sparsity after each of `rounds` rounds reaching final_sparsity, each
/// round pruning the same fraction of the remaining weights.
inline std::vector<double> iterative_targets(double final_sparsity, int rounds) {
  check_ratio(final_sparsity, "iterative pruning: final sparsity");
  require(rounds > 0, "iterative pruning: rounds must be positive, got ", rounds);
  std::vector<double> t;
  for (int r = 1; r <= rounds; ++r)
    t.push_back(1.0 - std::pow(1.0 - final_sparsity, double(r) / double(rounds)));
  t.back() = final_sparsity;
  return t;
}

/// Iterative pruning: for each round r, prunes model to iterative_targets()[r]
/// (keeping earlier rounds' masks) and calls fine_tune(r, masks), which
/// typically trains with a MaskedTraining on those masks. Returns the last masks.
inline MaskSet prune_iteratively(nn::Module& model, UnstructuredOptions policy, int rounds,
                                 const std::function<void(int, const MaskSet&)>& fine_tune) {
  MaskSet masks;
  int r = 0;
  for (const double s : iterative_targets(policy.sparsity, rounds)) {
    policy.sparsity = s;
    masks = prune_unstructured(model, policy, masks.empty() ? nullptr : &masks);
    if (fine_tune) fine_tune(r, masks);
    ++r;
  }
  return masks;
}

}  // namespace compressor::prune
