// Masks that live with the model while it trains. MaskedTraining holds the
// masks of a model and its optimizer and applies them at every step:
//
//   before the update   gradients of pruned weights := 0
//   after the update    pruned weights := 0, and their entries of the
//                       optimizer state (momentum, Adam moments) := 0
//
// so the sparsity after every step equals the masks' (not only after a final
// re-mask). Construction applies the masks to the weights and the state at
// once (fine-tuning with a momentum buffer from before pruning would
// otherwise move pruned weights at the first step).
//
//   prune::MaskSet masks = prune::prune_unstructured(model, {.sparsity = 0.9});
//   train::Sgd sgd(model, {.lr = 0.01f, .momentum = 0.9f});
//   train::Trainer trainer(model, loss, sgd, train::Task::classification);
//   prune::MaskedTraining masked(model, sgd, std::move(masks));
//   masked.attach(trainer);   // masked must outlive the trainer's use
//   trainer.fit(train_set, &val_set, {.epochs = 2});
//
// Without a Trainer call before_update() between backward and
// optimizer.step(), and after_step() after it.
#pragma once

#include <string>
#include <utility>

#include "compressor/core/error.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/prune/mask.hpp"
#include "compressor/train/optimizer.hpp"
#include "compressor/train/trainer.hpp"

namespace compressor::prune {

class MaskedTraining {
 public:
  /// The optimizer must be built on model (parameter names are the masks').
  MaskedTraining(nn::Module& model, train::Optimizer& optimizer, MaskSet masks)
      : model_(model), opt_(optimizer), masks_(std::move(masks)) {
    require(&optimizer.model() == &model, "MaskedTraining: the ", optimizer.name(),
            " optimizer is built on a ", optimizer.model().type_name(),
            ", not on the masked model: its parameter names would not be the masks'");
    apply();
  }
  MaskedTraining(const MaskedTraining&) = delete;
  MaskedTraining& operator=(const MaskedTraining&) = delete;

  /// Registers before_update() and after_step() with the trainer (whose
  /// optimizer must be this one). This object must outlive the trainer's use.
  void attach(train::Trainer& trainer) {
    trainer.add_before_update([this] { before_update(); });
    trainer.add_after_step([this] { after_step(); });
  }

  /// Zeroes the gradients of the pruned weights.
  void before_update() { masks_.apply_to_gradients(model_); }
  /// Zeroes the pruned weights and their optimizer state.
  void after_step() { apply(); }

  const MaskSet& masks() const { return masks_; }
  /// Replaces the masks (a gradual schedule's next step) and applies them.
  void set_masks(MaskSet m) {
    masks_ = std::move(m);
    apply();
  }

  nn::Module& model() const { return model_; }
  train::Optimizer& optimizer() const { return opt_; }

 private:
  void apply() {
    masks_.apply_to_weights(model_);
    masks_.apply_to_optimizer(opt_);
  }

  nn::Module& model_;
  train::Optimizer& opt_;
  MaskSet masks_;
};

}  // namespace compressor::prune
