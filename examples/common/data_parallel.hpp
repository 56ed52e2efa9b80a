// The experiments' data-parallel mode (docs/distributed.md): a program built
// with COMPRESSOR_EXAMPLE_MPI=1 (compressor::distributed found) and started
// by mpirun as one of N ranks trains every stage on all ranks, each on its
// share of every batch, with averaged gradients, and validates on its share
// of the validation set; rank 0 alone measures, prints and writes. Built
// without MPI, DataParallel is the single process and the program refuses to
// run as one of several ranks.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "compressor/core/error.hpp"
#include "compressor/data/loader.hpp"
#include "compressor/distributed/launch.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/prune/mask.hpp"
#include "compressor/train/trainer.hpp"
#if COMPRESSOR_EXAMPLE_MPI
#include "compressor/distributed/compression.hpp"
#include "compressor/distributed/gradient_averager.hpp"
#include "compressor/distributed/metrics.hpp"
#include "compressor/distributed/mpi.hpp"
#include "compressor/distributed/replicate.hpp"
#include "compressor/distributed/sync_batchnorm.hpp"
#endif

namespace examples {

class DataParallel {
 public:
  /// The single process.
  DataParallel() = default;
#if COMPRESSOR_EXAMPLE_MPI
  explicit DataParallel(const compressor::distributed::Communicator& comm)
      : comm_(comm), rank_(comm.rank()), size_(comm.size()) {}
#endif

  int rank() const {
    return rank_;
  }
  int size() const {
    return size_;
  }
  /// Rank 0: measures, prints and writes.
  bool lead() const {
    return rank_ == 0;
  }

  /// Runs body(dp) as rank r of a data-parallel run when started by a launcher
  /// as one of several ranks (an error on any rank ends all with "rank N:
  /// ..."; ranks other than 0 print nothing on stdout), else as the single
  /// process. Built without MPI, a multi-rank launch is refused.
  static int run(int& argc, char**& argv, std::string_view program,
                 const std::function<int(DataParallel&)>& body) {
#if COMPRESSOR_EXAMPLE_MPI
    (void)program;
    if (compressor::distributed::launched_world_size().first > 1) {
      int rc = 0;
      const int mpi_rc = compressor::distributed::run(
          argc, argv, [&](compressor::distributed::Communicator& comm) {
            DataParallel dp(comm);
            if (!dp.lead() && std::freopen("/dev/null", "w", stdout) == nullptr)
              throw compressor::IoError("cannot silence stdout of rank " +
                                        std::to_string(dp.rank()));
            rc = body(dp);
          });
      return mpi_rc != 0 ? mpi_rc : rc;
    }
#else
    (void)argc;
    (void)argv;
    compressor::distributed::require_single_process(program);
#endif
    DataParallel single;
    return body(single);
  }

  /// Waits for every rank (no-op in one process).
  void barrier() const {
#if COMPRESSOR_EXAMPLE_MPI
    if (comm_) comm_->barrier();
#endif
  }

  /// Rank 0's value of v on every rank.
  bool agree(bool v) const {
#if COMPRESSOR_EXAMPLE_MPI
    if (comm_) {
      std::uint8_t b = v ? 1 : 0;
      comm_->broadcast(std::span<std::uint8_t>(&b, 1));
      return b != 0;
    }
#endif
    return v;
  }

  /// Rank 0's parameters and buffers in model on every rank (the replicas
  /// then start a stage identical, BatchNorm statistics included).
  void broadcast(compressor::nn::Module& model) const {
#if COMPRESSOR_EXAMPLE_MPI
    if (comm_) compressor::distributed::broadcast_module(*comm_, model);
#else
    (void)model;
#endif
  }

  /// Rank 0's pruning masks on every rank.
  void broadcast(compressor::prune::MaskSet& masks) const {
#if COMPRESSOR_EXAMPLE_MPI
    if (comm_) (void)compressor::distributed::broadcast_masks(*comm_, masks);
#else
    (void)masks;
#endif
  }

  /// QAT: every min/max observer of model records extremes over all ranks
  /// (on = false: each rank's own again, which every rank must do after
  /// training, before rank 0 alone runs the model). Collective.
  void synchronize_observers(compressor::nn::Module& model, bool on = true) const {
#if COMPRESSOR_EXAMPLE_MPI
    if (comm_) (void)compressor::distributed::synchronize_observers(*comm_, model, on);
#else
    (void)model;
    (void)on;
#endif
  }

  /// LoaderOptions for this rank's share of global batches of `batch`
  /// samples (which must be a multiple of the rank count).
  compressor::data::LoaderOptions shard(compressor::data::LoaderOptions o) const {
    compressor::require(o.batch_size % size_ == 0, "the batch size ", o.batch_size,
                        " is the global batch: it must be a multiple of the number of ranks, ",
                        size_);
    o.batch_size /= size_;
    o.rank = rank_;
    o.world_size = size_;
    return o;
  }

  /// fit() and train_epoch() with o report every rank's samples: global
  /// training metrics, and validation on every rank's shard of the
  /// validation set (a loader from shard()) with rank 0's BatchNorm
  /// statistics. model must outlive o's use. No-op in one process.
  void distribute_metrics(compressor::nn::Module& model, compressor::train::FitOptions& o) const {
#if COMPRESSOR_EXAMPLE_MPI
    if (comm_) compressor::distributed::distribute_metrics(*comm_, model, o);
#else
    (void)model;
    (void)o;
#endif
  }

  /// The metrics of rank 0's model over the data set whose shards the ranks'
  /// sources hold (each rank's from shard()), on every rank; in one process
  /// train::evaluate(). Collective.
  compressor::train::Metrics evaluate(compressor::nn::Module& model, compressor::nn::Loss& loss,
                                      compressor::train::Task task,
                                      compressor::data::BatchSource& source) const {
#if COMPRESSOR_EXAMPLE_MPI
    if (comm_) return compressor::distributed::evaluate(*comm_, model, loss, task, source);
#endif
    return compressor::train::evaluate(model, loss, task, source);
  }

  /// Averages gradients over the ranks after every backward of trainer (a
  /// gradient hook; no-op in one process). The returned object must outlive
  /// the trainer's use.
  std::shared_ptr<void> average_gradients(compressor::train::Trainer& trainer,
                                          compressor::nn::Module& model) const {
#if COMPRESSOR_EXAMPLE_MPI
    if (comm_) {
      auto avg = std::make_shared<compressor::distributed::GradientAverager>(*comm_, model);
      avg->attach(trainer);
      return avg;
    }
#else
    (void)trainer;
    (void)model;
#endif
    return nullptr;
  }

 private:
#if COMPRESSOR_EXAMPLE_MPI
  std::optional<compressor::distributed::Communicator> comm_;
#endif
  int rank_ = 0, size_ = 1;
};

}  // namespace examples
