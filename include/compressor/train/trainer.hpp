// Trainer: the training loop. Each step sets the scheduled learning rate,
// runs forward, the loss, backward and the optimizer, then an optional
// after_step hook (pruning uses it to re-apply masks). A non-finite loss stops
// training with an error instead of training on garbage. Progress (step, loss,
// metric, samples/s, ETA) goes to the log stream.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "compressor/data/batch.hpp"
#include "compressor/nn/loss.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/train/metrics.hpp"
#include "compressor/train/optimizer.hpp"
#include "compressor/train/progress.hpp"
#include "compressor/train/schedule.hpp"

namespace compressor::train {

struct FitOptions {
  int epochs = 1;
  std::ostream* log = &std::cerr;    ///< progress and epoch lines; nullptr for silence
  double progress_interval = 2.0;    ///< seconds between progress lines
  std::function<void()> after_step;  ///< called after every optimizer step
  std::function<void(int epoch)> before_epoch;
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

class Trainer {
 public:
  Trainer(nn::Module& model, nn::Loss& loss, Optimizer& optimizer, Task task,
          const LrSchedule* schedule = nullptr)
      : model_(model), loss_(loss), opt_(optimizer), task_(task), schedule_(schedule) {}

  std::int64_t global_step() const { return step_; }

  /// One optimizer step on a batch; returns the loss.
  float step(const data::Batch& batch, MetricAccumulator* metrics = nullptr) {
    model_.train();
    if (schedule_) opt_.set_lr(schedule_->lr_at(step_));
    const auto pred = model_.forward(batch.inputs);
    const float loss = loss_.compute(pred, batch);
    if (!std::isfinite(loss))
      throw Error(detail::concat("training diverged: ", loss_.name(), " loss is ", loss,
                                 " at step ", step_ + 1, " (learning rate ", opt_.lr(),
                                 "); lower the learning rate or check the data"));
    if (metrics) metrics->add(pred, batch, loss);
    opt_.zero_grad();
    (void)model_.backward(loss_.backward());
    opt_.step();
    ++step_;
    return loss;
  }

  EpochReport train_epoch(data::BatchSource& source, int epoch, const FitOptions& o = {}) {
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
      if (o.after_step) o.after_step();
      progress.update(++done, acc.result().samples,
                      format_metrics(acc.result()) + " lr " + std::to_string(opt_.lr()));
    }
    rep.train = acc.result();
    rep.seconds = progress.elapsed();
    rep.samples_per_second =
        rep.seconds > 0 ? static_cast<double>(rep.train.samples) / rep.seconds : 0;
    rep.lr = opt_.lr();
    return rep;
  }

  /// Metrics of the model in eval mode over one pass of source; restores the mode.
  Metrics evaluate(data::BatchSource& source) { return evaluate(model_, loss_, task_, source); }

  std::vector<EpochReport> fit(data::BatchSource& train, data::BatchSource* val,
                               const FitOptions& o) {
    std::vector<EpochReport> reports;
    for (int e = 1; e <= o.epochs; ++e) {
      if (o.before_epoch) o.before_epoch(e);
      EpochReport rep = train_epoch(train, e, o);
      if (val) rep.val = evaluate(*val);
      if (o.log) {
        *o.log << "epoch " << e << "/" << o.epochs << " done in " << format_duration(rep.seconds)
               << ": train " << format_metrics(rep.train);
        if (rep.val) *o.log << " | val " << format_metrics(*rep.val);
        *o.log << '\n';
      }
      reports.push_back(rep);
    }
    return reports;
  }

  static Metrics evaluate(nn::Module& model, nn::Loss& loss, Task task, data::BatchSource& source) {
    const bool was_training = model.is_training();
    model.eval();
    MetricAccumulator acc(task);
    source.start_epoch(0);
    data::Batch batch;
    while (source.next(batch)) {
      const auto pred = model.forward(batch.inputs);
      acc.add(pred, batch, loss.compute(pred, batch));
    }
    model.train(was_training);
    return acc.result();
  }

 private:
  nn::Module& model_;
  nn::Loss& loss_;
  Optimizer& opt_;
  Task task_;
  const LrSchedule* schedule_;
  std::int64_t step_ = 0;
};

}  // namespace compressor::train
