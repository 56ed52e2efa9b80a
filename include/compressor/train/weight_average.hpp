// WeightAverage: a running average of a model's parameters over snapshots,
// as stochastic weight averaging (SWA; torch.optim.swa_utils.AveragedModel)
// takes it: the equal-weight mean of the snapshots taken (at the end of each
// learning-rate cycle, say), or an exponential moving average. Only
// parameters are averaged; the BatchNorm running statistics of the averaged
// weights are not the average of the snapshots' statistics, so after
// copy_to() re-estimate them with recalibrate_batchnorm()
// (train/bn_recalibration.hpp), as torch.optim.swa_utils.update_bn does.
//
//   train::WeightAverage avg(net);
//   for (int e = 1; e <= swa_epochs; ++e) {
//     trainer.train_epoch(loader, e);
//     avg.update(net);
//   }
//   avg.copy_to(net);
//   train::recalibrate_batchnorm(net, loader);
//
// io/optimizer_state.hpp saves and restores it in training checkpoints.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::train {

class WeightAverage {
 public:
  /// One averaged tensor per parameter of a model.
  struct Entry {
    std::string name;
    Tensor<float> value;
  };

  /// The equal-weight mean of every snapshot update() takes (SWA).
  explicit WeightAverage(nn::Module& model) : WeightAverage(model, 0.f) {}
  /// An exponential moving average: the first update() copies the weights,
  /// each later one moves the average to decay * average + (1 - decay) *
  /// weights. decay in (0, 1).
  static WeightAverage exponential(nn::Module& model, float decay) {
    require(decay > 0.f && decay < 1.f, "WeightAverage::exponential: decay must be in (0, 1), got ",
            decay);
    return WeightAverage(model, decay);
  }

  /// Adds a snapshot of model's parameters (the model averaged from: the
  /// same parameter names and shapes).
  void update(nn::Module& model) {
    const auto params = matching(model, "update");
    ++count_;
    const float w =
        decay_ > 0.f ? (count_ == 1 ? 1.f : 1.f - decay_) : 1.f / static_cast<float>(count_);
    for (std::size_t i = 0; i < params.size(); ++i) {
      float* a = entries_[i].value.data();
      const float* x = params[i].value->data();
      const std::int64_t n = params[i].value->numel();
      for (std::int64_t j = 0; j < n; ++j) a[j] += w * (x[j] - a[j]);
    }
  }

  /// Writes the average into model's parameters; needs at least one
  /// snapshot.
  void copy_to(nn::Module& model) const {
    require(count_ > 0, "WeightAverage::copy_to: no snapshot taken yet (call update() first)");
    const auto params = matching(model, "copy_to");
    for (std::size_t i = 0; i < params.size(); ++i) {
      const float* a = entries_[i].value.data();
      std::copy(a, a + entries_[i].value.numel(), params[i].value->data());
    }
  }

  /// Snapshots taken so far.
  std::int64_t count() const { return count_; }
  /// 0 for the equal-weight mean, else the exponential decay.
  float decay() const { return decay_; }
  const std::vector<Entry>& entries() const { return entries_; }

  /// Replaces the average and its snapshot count (restoring a checkpoint):
  /// values must hold one tensor per entry, in entries()' order, of the same
  /// shape. Nothing changes when they do not fit.
  void restore(std::vector<Tensor<float>> values, std::int64_t count) {
    require(count >= 0, "WeightAverage::restore: negative snapshot count ", count);
    require(values.size() == entries_.size(), "WeightAverage::restore: ", values.size(),
            " tensors for ", entries_.size(), " parameters");
    for (std::size_t i = 0; i < values.size(); ++i)
      require(values[i].shape() == entries_[i].value.shape(), "WeightAverage::restore: '",
              entries_[i].name, "' has shape ", entries_[i].value.shape(), ", got ",
              values[i].shape());
    for (std::size_t i = 0; i < values.size(); ++i) entries_[i].value = std::move(values[i]);
    count_ = count;
  }

 private:
  WeightAverage(nn::Module& model, float decay) : decay_(decay) {
    for (const nn::ParameterRef& p : model.named_parameters())
      entries_.push_back({p.name, Tensor<float>(p.value->shape(), 0.f)});
    require(!entries_.empty(), "WeightAverage: ", model.type_name(), " has no parameters");
  }

  /// model's parameters, checked against the averaged ones.
  std::vector<nn::ParameterRef> matching(nn::Module& model, const char* what) const {
    std::vector<nn::ParameterRef> params = model.named_parameters();
    require(params.size() == entries_.size(), "WeightAverage::", what, ": ", model.type_name(),
            " has ", params.size(), " parameters, the average ", entries_.size());
    for (std::size_t i = 0; i < params.size(); ++i)
      require(params[i].name == entries_[i].name &&
                  params[i].value->shape() == entries_[i].value.shape(),
              "WeightAverage::", what, ": parameter ", i, " is '", params[i].name, "' of shape ",
              params[i].value->shape(), ", the average's '", entries_[i].name, "' of shape ",
              entries_[i].value.shape());
    return params;
  }

  float decay_ = 0.f;
  std::int64_t count_ = 0;
  std::vector<Entry> entries_;
};

}  // namespace compressor::train
