// Data-parallel evaluation (docs/distributed.md): every rank evaluates its
// shard of a data set (a loader with LoaderOptions{rank, world_size}) and
// the ranks add their metric sums, so each gets the metrics of the whole set
// in 1/N of the time.
//
//   allreduce(comm, acc)                 acc's sums over all ranks
//   evaluate(comm, model, loss, task, s) the metrics of root's model over
//                                        every rank's shard
//   distribute_metrics(comm, model, o)   fit() with o: global training
//                                        metrics, validation on every rank
//
// With per-rank BatchNorm statistics the replicas' running statistics
// differ; evaluation uses them, so these first give every rank root's (the
// model rank 0 saves), and the result is root's model's on the whole set.
#pragma once

#include <span>

#include "compressor/distributed/mpi.hpp"
#include "compressor/distributed/replicate.hpp"
#include "compressor/nn/loss.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/train/metrics.hpp"
#include "compressor/train/trainer.hpp"

namespace compressor::distributed {

/// Replaces acc's sums with their sum over the ranks of comm. Collective.
inline void allreduce(const Communicator& comm, train::MetricAccumulator& acc) {
  train::MetricAccumulator::Sums s = acc.sums();
  comm.allreduce_sum(std::span<double>(s));
  acc = train::MetricAccumulator(acc.task(), s);
}

/// The metrics of root's model over every rank's share of a data set
/// (source: this rank's shard), on every rank: root's buffers are broadcast
/// first, then each rank evaluates its shard and the sums are added.
/// Collective.
inline train::Metrics evaluate(const Communicator& comm, nn::Module& model, nn::Loss& loss,
                               train::Task task, data::BatchSource& source, int root = 0) {
  broadcast_buffers(comm, model, root);
  train::MetricAccumulator acc = train::accumulate(model, loss, task, source);
  allreduce(comm, acc);
  return acc.result();
}

/// Sets o.reduce_metrics and o.before_validation for data-parallel fit()
/// and train_epoch(): each epoch's training metrics over all ranks, and
/// validation of rank 0's model (its buffers broadcast first) on every
/// rank's shard of the validation set. comm and model must outlive o's use.
inline void distribute_metrics(const Communicator& comm, nn::Module& model, train::FitOptions& o) {
  o.reduce_metrics = [&comm](train::MetricAccumulator& acc) { allreduce(comm, acc); };
  o.before_validation = [&comm, &model] { broadcast_buffers(comm, model); };
}

}  // namespace compressor::distributed
