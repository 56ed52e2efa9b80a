// Compression fine-tuning, data-parallel (docs/distributed.md):
//
//   broadcast_masks(comm, masks)      rank 0's pruning masks on every rank,
//                                     after checking all ranks mask the same
//                                     layers with the same shapes
//   synchronize_observers(comm, m)    every min/max observer of m records
//                                     each step's extremes over all ranks'
//                                     samples (QAT): its ranges, and the
//                                     fake-quant parameters from them, are
//                                     those of one process with the global
//                                     batch, on every rank
//
// Masks computed from identical replicas (broadcast_module, averaged
// gradients) with the same seed are identical already; broadcast_masks makes
// it hold by construction (and reports how many flags it changed), whatever
// computed them.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "compressor/distributed/mpi.hpp"
#include "compressor/distributed/replicate.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/prune/mask.hpp"
#include "compressor/quant/observer.hpp"

namespace compressor::distributed {

/// Makes every rank's masks rank 0's. All ranks must hold masks of the same
/// layers (names, order, shapes): otherwise a ValueError on every rank.
/// Returns the number of mask flags this rank changed (0 on rank 0, and on
/// every rank whose masks were rank 0's already). Collective.
inline std::int64_t broadcast_masks(const Communicator& comm, prune::MaskSet& masks) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const auto& m : masks.layers()) {
    detail::fnv(h, m.layer.data(), m.layer.size());
    detail::fnv_shape(h, m.shape);
  }
  comm.require_same(h, "the pruning masks' layers and shapes");
  prune::MaskSet out;
  std::int64_t changed = 0;
  for (const auto& m : masks.layers()) {
    prune::LayerMask b = m;
    comm.broadcast(std::span<std::uint8_t>(b.keep));
    b.pruned = 0;
    for (std::size_t i = 0; i < b.keep.size(); ++i) {
      b.pruned += b.keep[i] == 0 ? 1 : 0;
      changed += (b.keep[i] != 0) != (m.keep[i] != 0) ? 1 : 0;
    }
    out.add(std::move(b));
  }
  masks = std::move(out);
  return changed;
}

/// quant::RangeReducer over a communicator: one MPI_Allreduce(MPI_MIN) of
/// (lo, -hi).
class MpiRangeReducer final : public quant::RangeReducer {
 public:
  explicit MpiRangeReducer(const Communicator& comm) : comm_(comm) {}
  void reduce(float& lo, float& hi) override {
    float v[2] = {lo, -hi};
    detail::check(MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_FLOAT, MPI_MIN, comm_.handle()),
                  "MPI_Allreduce(min)");
    lo = v[0];
    hi = -v[1];
  }

 private:
  Communicator comm_;
};

/// Makes every observer in model (the activation observers of a QAT or PTQ
/// model, inside their FakeQuantize) record each tensor's extremes over all
/// ranks (on = false: each rank's own again); returns how many it set. An
/// observer that cannot (the histogram observer) is a ValueError naming its
/// quantization point. The communicator must outlive the training. An
/// observer reduces whenever it observes, in training or evaluation mode:
/// before one rank alone runs the model (evaluation, conversion), every rank
/// calls this with on = false, or that rank waits for the others forever.
inline std::int64_t synchronize_observers(const Communicator& comm, nn::Module& model,
                                          bool on = true) {
  comm.require_same(on ? 1u : 0u, "the synchronised-observers switch");
  auto reducer = on ? std::make_shared<MpiRangeReducer>(comm) : nullptr;
  std::int64_t n = 0;
  model.visit([&](const std::string&, nn::Module& m) {
    if (auto* obs = dynamic_cast<quant::Observer*>(&m)) {
      obs->set_range_reducer(reducer);
      ++n;
    }
  });
  comm.require_same(static_cast<std::uint64_t>(n), "the number of observers");
  return n;
}

}  // namespace compressor::distributed
