// Re-estimates the running statistics of every BatchNorm2d in a model from
// data, as torch.optim.swa_utils.update_bn does: statistics reset, then a
// cumulative average over the batches of a forward pass in training mode (no
// gradients, no parameter change). Use it after anything that leaves the
// running statistics stale: pruning, weight averaging, or a short training
// run whose momentum-averaged statistics have not settled.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compressor/data/batch.hpp"
#include "compressor/nn/capabilities.hpp"

namespace compressor::train {

/// Returns the number of batches used (all of one epoch of source when
/// max_batches is 0). Each module's mode and the BN momenta are restored.
/// A frozen BatchNorm keeps its statistics (it does not update them).
inline std::int64_t recalibrate_batchnorm(nn::Module& model, data::BatchSource& source,
                                          std::int64_t max_batches = 0) {
  std::vector<std::pair<nn::Normalization*, float>> bns;
  model.visit([&](const std::string&, nn::Module& m) {
    if (auto* bn = nn::as<nn::Normalization>(m)) bns.emplace_back(bn, bn->momentum());
  });
  if (bns.empty()) return 0;
  const auto modes = model.save_modes();
  for (auto& [bn, momentum] : bns) {
    bn->reset_running_stats();
    bn->set_momentum(0.f);
  }
  model.train();
  source.start_epoch(0);
  data::Batch batch;
  std::int64_t used = 0;
  while ((max_batches == 0 || used < max_batches) && source.next(batch)) {
    (void)model.forward(batch.inputs);
    ++used;
  }
  for (auto& [bn, momentum] : bns) bn->set_momentum(momentum);
  model.restore_modes(modes);
  return used;
}

}  // namespace compressor::train
