// Synchronised BatchNorm for data-parallel training: every BatchNorm2d of a
// model normalises with the statistics of the GLOBAL batch (all ranks'
// samples) instead of its own rank's share, as PyTorch's SyncBatchNorm does.
// The layer (nn/batchnorm.hpp) does the arithmetic; this header gives it an
// MPI allreduce as its nn::StatisticsReducer.
//
// Cost: per BatchNorm layer and step, one allreduce of 2C+1 doubles in
// forward and one of 2C+1 in backward (C channels), on the critical path.
// Every rank must run forward and backward in every step: an empty share of
// a short last batch is an error (Trainer::step says so) rather than a hang;
// use LoaderOptions::drop_last, or sizes that give every rank a sample.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "compressor/distributed/mpi.hpp"
#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::distributed {

/// nn::StatisticsReducer over a communicator (MPI_Allreduce, sum of doubles).
class MpiStatisticsReducer final : public nn::StatisticsReducer {
 public:
  explicit MpiStatisticsReducer(const Communicator& comm) : comm_(comm) {}
  void sum(std::span<double> values) override { comm_.allreduce_sum(values); }

 private:
  Communicator comm_;
};

/// Makes every BatchNorm2d in model synchronise its batch statistics over the
/// ranks of comm (on = false: back to per-rank statistics); returns how many
/// layers it set. Collective in the sense that all ranks must make the same
/// choice (checked here). The communicator must outlive the model's training.
inline std::int64_t synchronize_batchnorm(const Communicator& comm, nn::Module& model,
                                          bool on = true) {
  comm.require_same(on ? 1u : 0u, "the synchronised-BatchNorm switch");
  auto reducer = on ? std::make_shared<MpiStatisticsReducer>(comm) : nullptr;
  std::int64_t n = 0;
  model.visit([&](const std::string&, nn::Module& m) {
    if (auto* bn = dynamic_cast<nn::BatchNorm2d*>(&m)) {
      bn->set_statistics_reducer(reducer);
      ++n;
    }
  });
  comm.require_same(static_cast<std::uint64_t>(n), "the number of BatchNorm layers");
  return n;
}

}  // namespace compressor::distributed
