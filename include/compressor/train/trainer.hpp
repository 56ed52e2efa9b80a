// Trainer: the training loop. Each step sets the scheduled learning rate (and
// momentum, where the schedule cycles it), runs forward, the loss and backward, then the
// gradient hooks (data-parallel training averages gradients across ranks there), the
// before_update hooks (pruning masks gradients there), the optimizer update and the after_step
// hooks (pruning re-applies masks there). A non-finite loss stops training with an error instead of
// training on garbage. Progress (step, loss, metric, samples/s, ETA) goes to the log stream.
//
// Modes: the Trainer switches train/eval only at the fit() and evaluate()
// boundaries. fit() saves every module's own mode, calls model.train() and
// puts the saved modes back when it returns or throws; evaluate() does the
// same around model.eval(). step() and train_epoch() leave modes alone: a
// caller driving them puts the model in training mode itself (a new model is
// in it). A BatchNorm frozen with Module::freeze() keeps its running
// statistics in either mode (train()/eval() do not touch the frozen flag).
#pragma once

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "compressor/data/batch.hpp"
#include "compressor/nn/loss.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/train/metrics.hpp"
#include "compressor/train/optimizer.hpp"
#include "compressor/train/progress.hpp"
#include "compressor/train/schedule.hpp"

namespace compressor::train {

struct EpochReport;

struct FitOptions {
  int epochs = 1;
  /// Resuming an interrupted run: fit() starts at this (1-based) epoch, the
  /// earlier ones counting as done. On a trainer that has not stepped yet,
  /// fit() first counts their steps (first_epoch - 1 times train's
  /// num_batches()) as taken, so that the schedule continues where the
  /// interrupted run stopped; the caller restores the weights and the
  /// optimizer state (io/optimizer_state.hpp). Each epoch's data order
  /// depends only on the loader's seed and the epoch, so the resumed run is
  /// the uninterrupted one.
  int first_epoch = 1;
  /// Called after each epoch of fit() (after its validation), e.g. to save a
  /// training checkpoint that a later fit() resumes from with first_epoch.
  std::function<void(const EpochReport&)> after_epoch;
  std::ostream* log = &std::cerr;  ///< progress and epoch lines; nullptr for silence
  double progress_interval = 2.0;  ///< seconds between progress lines
  /// Called once after every optimizer step of fit()/train_epoch(), after the
  /// trainer's own after_step hooks (Trainer::add_after_step).
  std::function<void()> after_step;
  std::function<void(int epoch)> before_epoch;
  /// Data-parallel training: the number of ranks sharing each global batch
  /// equally. The progress lines count this rank's samples times this, the
  /// global rate (exact but for a short last batch); their loss and metric
  /// are this rank's. Without reduce_metrics, so are EpochReport's train
  /// metrics and samples_per_second.
  int ranks = 1;
  /// Data-parallel training: replaces this rank's sums with those of every
  /// rank (a collective: every rank's fit()/train_epoch() calls it at the
  /// same points). Set, an epoch's train metrics and samples_per_second are
  /// global, and fit() validates on every rank, each on its shard of the
  /// validation set, to the metrics of the whole set.
  /// distributed::distribute_metrics() sets it and before_validation.
  std::function<void(MetricAccumulator&)> reduce_metrics;
  /// Runs on every rank right before fit()'s validation (data-parallel: gives
  /// every replica rank 0's BatchNorm statistics, which evaluation uses).
  std::function<void()> before_validation;
};

struct EpochReport {
  int epoch = 0;  ///< 1-based
  Metrics train;
  std::optional<Metrics> val;
  double seconds = 0;
  double samples_per_second = 0;
  float lr = 0;  ///< learning rate of the epoch's last step
};

/// "loss 0.1234 acc 91.20%" or "loss 12.3 mae 4.567".
inline std::string format_metrics(const Metrics& m) {
  char buf[96];
  if (m.task == Task::classification)
    std::snprintf(buf, sizeof buf, "loss %.4f acc %.2f%%", m.loss, 100.0 * m.accuracy);
  else
    std::snprintf(buf, sizeof buf, "loss %.4f mae %.3f rmse %.3f", m.loss, m.mae, m.rmse);
  return buf;
}

/// Saves each module's own training mode and puts it back when destroyed.
class ModeGuard {
 public:
  explicit ModeGuard(nn::Module& model) : model_(model), saved_(model.save_modes()) {}
  ModeGuard(const ModeGuard&) = delete;
  ModeGuard& operator=(const ModeGuard&) = delete;
  ~ModeGuard() { model_.restore_modes(saved_); }

 private:
  nn::Module& model_;
  nn::ModeSnapshot saved_;
};

/// The metric sums of model over one pass of source. An nn::Module is
/// evaluated in eval mode and each of its modules gets its own mode back
/// afterwards (also on an exception); any other FloatModel (a converted
/// model, a wrapper) is just run forward.
template <FloatModel M>
MetricAccumulator accumulate(M& model, nn::Loss& loss, Task task, data::BatchSource& source) {
  std::optional<ModeGuard> modes;
  if constexpr (std::derived_from<M, nn::Module>) {
    modes.emplace(model);
    model.eval();
  }
  MetricAccumulator acc(task);
  source.start_epoch(0);
  data::Batch batch;
  while (source.next(batch)) {
    if (batch.size() == 0) continue;  // a sharded loader's empty share
    const TensorView<const float> pred = model.forward(batch.inputs);
    acc.add(pred, batch, loss.compute(pred, batch));
  }
  return acc;
}

/// Metrics of model over one pass of source (accumulate()'s result).
template <FloatModel M>
Metrics evaluate(M& model, nn::Loss& loss, Task task, data::BatchSource& source) {
  return accumulate(model, loss, task, source).result();
}

class Trainer {
 public:
  Trainer(nn::Module& model, nn::Loss& loss, Optimizer& optimizer, Task task,
          const LrSchedule* schedule = nullptr)
      : model_(model), loss_(loss), opt_(optimizer), task_(task), schedule_(schedule) {
    bool found = false;
    model.visit([&](const std::string&, nn::Module& m) { found = found || &m == &opt_.model(); });
    require(found, "Trainer: the ", opt_.name(), " optimizer was built on a ",
            opt_.model().type_name(), " that is neither the trained ", model.type_name(),
            " nor one of its modules");
  }

  std::int64_t global_step() const { return step_; }

  /// Adds a hook run once after every optimizer step, whoever drives step()
  /// (fit(), train_epoch() or the caller); hooks run in the order added, then
  /// FitOptions::after_step. Kept for the trainer's life.
  void add_after_step(std::function<void()> hook) {
    require(static_cast<bool>(hook), "Trainer::add_after_step: empty hook");
    after_step_.push_back(std::move(hook));
  }
  /// Adds a hook run once per step right before backward (after the loss
  /// and zero_grad()), with the number of samples of the step's batch; also
  /// for an empty batch (before the gradient hooks). Data-parallel training
  /// prepares its gradient reductions there, to start them while backward
  /// runs. Hooks run in the order added; kept for the trainer's life.
  void add_before_backward(std::function<void(std::int64_t batch_samples)> hook) {
    require(static_cast<bool>(hook), "Trainer::add_before_backward: empty hook");
    before_backward_.push_back(std::move(hook));
  }
  /// Adds a hook run once per step right after backward, before the
  /// before_update hooks, with the number of samples of the step's batch:
  /// data-parallel training averages the gradients across ranks there
  /// (distributed::GradientAverager). Hooks run in the order added; kept for
  /// the trainer's life. With such a hook, step() also accepts an EMPTY batch
  /// (a sharded loader's share of a short last batch): no forward or
  /// backward, a zero gradient, the hooks with 0 samples, then the update.
  void add_gradient_hook(std::function<void(std::int64_t batch_samples)> hook) {
    require(static_cast<bool>(hook), "Trainer::add_gradient_hook: empty hook");
    gradient_hooks_.push_back(std::move(hook));
  }
  /// Adds a hook run once per step after backward and before the optimizer
  /// update: the gradients are final there (pruning masks them). Hooks run in
  /// the order added; kept for the trainer's life.
  void add_before_update(std::function<void()> hook) {
    require(static_cast<bool>(hook), "Trainer::add_before_update: empty hook");
    before_update_.push_back(std::move(hook));
  }

  /// One optimizer step on a batch; returns the loss. Leaves the modes as
  /// they are: call model.train() first when driving step() yourself.
  float step(const data::Batch& batch, MetricAccumulator* metrics = nullptr) {
    if (schedule_) {
      opt_.set_lr(schedule_->lr_at(step_));
      if (const auto m = schedule_->momentum_at(step_))
        require(opt_.set_momentum(*m), "Trainer: the schedule cycles the momentum but ",
                opt_.name(), " has none (OneCycleLr::cycle_momentum(false) turns it off)");
    }
    float loss = 0.f;
    if (batch.size() == 0) {
      require(!gradient_hooks_.empty(), "Trainer::step: empty batch at step ", step_ + 1,
              " (only a sharded loader of data-parallel training yields those, and the "
              "trainer then has a gradient hook)");
      require_no_collective_modules();
      opt_.zero_grad();
      for (auto& hook : before_backward_) hook(0);
    } else {
      const auto pred = model_.forward(batch.inputs);
      loss = loss_.compute(pred, batch);
      if (!std::isfinite(loss))
        throw Error(detail::concat("training diverged: ", loss_.name(), " loss is ", loss,
                                   " at step ", step_ + 1, " (learning rate ", opt_.lr(),
                                   "); lower the learning rate or check the data"));
      if (metrics) metrics->add(pred, batch, loss);
      opt_.zero_grad();
      for (auto& hook : before_backward_) hook(batch.size());
      (void)model_.backward(loss_.backward());
    }
    for (auto& hook : gradient_hooks_) hook(batch.size());
    for (auto& hook : before_update_) hook();
    opt_.step();
    ++step_;
    for (auto& hook : after_step_) hook();
    if (epoch_after_step_ != nullptr && *epoch_after_step_) (*epoch_after_step_)();
    return loss;
  }

  /// One pass over source; o.after_step runs once per step. Leaves the modes
  /// as they are (fit() sets training mode).
  EpochReport train_epoch(data::BatchSource& source, int epoch, const FitOptions& o = {}) {
    const EpochHook hook(epoch_after_step_, &o.after_step);
    require(o.ranks >= 1, "FitOptions::ranks must be >= 1, got ", o.ranks);
    EpochReport rep;
    rep.epoch = epoch;
    MetricAccumulator acc(task_);
    source.start_epoch(static_cast<std::uint64_t>(epoch - 1));
    Progress progress(o.log, "epoch " + std::to_string(epoch) + "/" + std::to_string(o.epochs),
                      source.num_batches(), o.progress_interval);
    data::Batch batch;
    std::int64_t done = 0;
    while (source.next(batch)) {
      step(batch, &acc);
      progress.update(++done, acc.result().samples * o.ranks,
                      format_metrics(acc.result()) + " lr " + std::to_string(opt_.lr()));
    }
    rep.seconds = progress.elapsed();
    const std::int64_t samples = acc.result().samples;
    if (o.reduce_metrics) o.reduce_metrics(acc);  // every rank's samples
    rep.train = acc.result();
    const std::int64_t global = o.reduce_metrics ? rep.train.samples : samples * o.ranks;
    rep.samples_per_second = rep.seconds > 0 ? static_cast<double>(global) / rep.seconds : 0;
    rep.lr = opt_.lr();
    return rep;
  }

  /// Metrics of the model in eval mode over one pass of source; each module
  /// gets its own mode back. The loss is the evaluation loss if one was set.
  Metrics evaluate(data::BatchSource& source) { return accumulate(source).result(); }
  /// evaluate()'s sums (data-parallel evaluation adds them over the ranks).
  MetricAccumulator accumulate(data::BatchSource& source) {
    return train::accumulate(model_, eval_loss_ ? *eval_loss_ : loss_, task_, source);
  }
  /// Evaluates (evaluate(), fit()'s validation) with this loss instead of the
  /// training loss, e.g. cross-entropy without the label smoothing used in
  /// training, as PyTorch users report it; nullptr goes back to the training
  /// loss. Kept by reference.
  void set_eval_loss(nn::Loss* loss) { eval_loss_ = loss; }

  /// Trains epochs o.first_epoch..o.epochs in training mode (validating on
  /// val after each when given, then calling o.after_epoch); each module gets its own mode back
  /// when fit() returns or throws. Data-parallel with o.reduce_metrics: every rank passes its shard
  /// of the validation set as val (or every rank none).
  std::vector<EpochReport> fit(data::BatchSource& train, data::BatchSource* val,
                               const FitOptions& o) {
    require(o.first_epoch >= 1 && o.first_epoch <= o.epochs + 1,
            "FitOptions::first_epoch must be in [1, epochs + 1] = [1, ", o.epochs + 1, "], got ",
            o.first_epoch);
    if (step_ == 0) step_ = static_cast<std::int64_t>(o.first_epoch - 1) * train.num_batches();
    const ModeGuard modes(model_);
    model_.train();
    std::vector<EpochReport> reports;
    for (int e = o.first_epoch; e <= o.epochs; ++e) {
      if (o.before_epoch) o.before_epoch(e);
      EpochReport rep = train_epoch(train, e, o);
      if (val) {
        if (o.before_validation) o.before_validation();
        MetricAccumulator sums = accumulate(*val);
        if (o.reduce_metrics) o.reduce_metrics(sums);
        rep.val = sums.result();
      }
      if (o.log) {
        *o.log << "epoch " << e << "/" << o.epochs << " done in " << format_duration(rep.seconds)
               << ": train " << format_metrics(rep.train);
        if (rep.val) *o.log << " | val " << format_metrics(*rep.val);
        *o.log << '\n';
      }
      if (o.after_epoch) o.after_epoch(rep);
      reports.push_back(rep);
    }
    return reports;
  }

  /// train::evaluate() (any FloatModel).
  template <FloatModel M>
  static Metrics evaluate(M& model, nn::Loss& loss, Task task, data::BatchSource& source) {
    return train::evaluate(model, loss, task, source);
  }

 private:
  /// An empty share cannot join the reductions of synchronised BatchNorm or
  /// of observers reducing their ranges (they run inside forward and
  /// backward): an error, not a hang of the other ranks.
  void require_no_collective_modules() {
    model_.visit([&](const std::string& path, nn::Module& m) {
      if (m.reduces_across_replicas())
        throw Error(detail::concat(
            "Trainer::step: this rank's share of batch ", step_ + 1, " is empty, but '", path,
            "' (", m.type_name(),
            ") reduces over the ranks in every training step, which every rank joins with at "
            "least one sample; drop the short last batch (LoaderOptions::drop_last) or choose a "
            "data set size and batch size that leave every rank a sample"));
    });
  }

  /// Points step() at train_epoch()'s FitOptions::after_step for the epoch.
  class EpochHook {
   public:
    EpochHook(const std::function<void()>*& slot, const std::function<void()>* hook)
        : slot_(slot), saved_(std::exchange(slot, hook)) {}
    EpochHook(const EpochHook&) = delete;
    EpochHook& operator=(const EpochHook&) = delete;
    ~EpochHook() { slot_ = saved_; }

   private:
    const std::function<void()>*& slot_;
    const std::function<void()>* saved_;
  };

  nn::Module& model_;
  nn::Loss& loss_;
  Optimizer& opt_;
  Task task_;
  const LrSchedule* schedule_;
  nn::Loss* eval_loss_ = nullptr;
  std::int64_t step_ = 0;
  std::vector<std::function<void()>> before_update_, after_step_;
  std::vector<std::function<void(std::int64_t)>> gradient_hooks_, before_backward_;
  const std::function<void()>* epoch_after_step_ = nullptr;
};

}  // namespace compressor::train
