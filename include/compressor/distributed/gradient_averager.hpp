// GradientAverager: the gradient allreduce of data-parallel training, as a
// Trainer gradient hook (attach()). After backward on every rank it makes
// each gradient the gradient of the mean loss over the GLOBAL batch:
//
//   g = sum_r (n_r / N) * g_r,   N = sum_r n_r,
//
// where g_r is rank r's gradient of the mean loss over its n_r samples. With
// equal shares this is the plain average; with the uneven (or empty) shares
// of a short last batch (data/loader.hpp, sharding) it is still exactly the
// single-process gradient of that batch, up to float summation order.
//
// Buckets: the parameters in REVERSE order of named_parameters() (the order
// backward finishes their gradients, as PyTorch DDP does), packed into
// contiguous float buckets of about bucket_bytes (25 MB by default; a larger
// parameter gets a bucket of its own). Each bucket's MPI_Iallreduce starts as
// soon as it is packed, so the reduction of one bucket overlaps the packing
// of the next; all are awaited before the optimizer step. Attached to a
// Trainer, the buckets start while backward still runs: the model's
// gradient-ready hook (nn::Module) reports each module whose gradients are
// final, and a bucket starts once all of its are (in bucket order, the same
// on every rank); with Open MPI's default progress the reductions advance
// when the averager calls MPI (MPI_Testall at each hook, then MPI_Waitall).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "compressor/distributed/mpi.hpp"
#include "compressor/distributed/replicate.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/train/trainer.hpp"

namespace compressor::distributed {

class GradientAverager {
 public:
  static constexpr std::int64_t kDefaultBucketBytes = std::int64_t{25} << 20;

  /// One bucket: parameters [first, last) of the reversed parameter list.
  struct Bucket {
    std::size_t first = 0, last = 0;
    std::int64_t numel = 0;
  };

  GradientAverager(const Communicator& comm, nn::Module& model,
                   std::int64_t bucket_bytes = kDefaultBucketBytes)
      : comm_(comm), model_(model), bucket_bytes_(bucket_bytes) {
    require(bucket_bytes >= 4, "GradientAverager: bucket_bytes must be >= 4, got ", bucket_bytes);
  }
  GradientAverager(const GradientAverager&) = delete;
  GradientAverager& operator=(const GradientAverager&) = delete;

  /// Attaches to trainer (which must not outlive this averager): begin()
  /// before every backward, finish() after it, so that each bucket's
  /// reduction starts as soon as backward has finished its gradients.
  void attach(train::Trainer& trainer) {
    trainer.add_before_backward([this](std::int64_t n) { begin(n); });
    trainer.add_gradient_hook([this](std::int64_t n) { finish(n); });
  }

  /// Replaces every gradient by the sample-weighted mean over ranks (see the
  /// top of this file), after backward: begin() then finish(), no overlap.
  /// local_samples is this rank's batch size (0 for an empty share).
  /// Collective: every rank calls it once per step.
  void average(std::int64_t local_samples) {
    begin(local_samples);
    finish(local_samples);
  }

  /// Before backward: counts the global batch (a small allreduce; every
  /// rank, also with an empty share) and watches backward: each bucket's
  /// reduction starts once every gradient in it is final (the model's
  /// gradient-ready hook), in bucket order, the same on every rank.
  void begin(std::int64_t local_samples) {
    require(local_samples >= 0, "GradientAverager: negative sample count ", local_samples);
    require(!active_, "GradientAverager: begin() twice without finish()");
    const auto t0 = std::chrono::steady_clock::now();
    bind();
    const std::int64_t total = comm_.sum(local_samples);
    require(total > 0, "GradientAverager: no rank had a sample in this step");
    scale_ = static_cast<float>(local_samples) / static_cast<float>(total);
    requests_.assign(buckets_.size(), MPI_REQUEST_NULL);
    ready_.assign(params_.size(), 0);
    pending_.resize(buckets_.size());
    for (std::size_t k = 0; k < buckets_.size(); ++k)
      pending_[k] = static_cast<std::int64_t>(buckets_[k].last - buckets_[k].first);
    next_ = 0;
    fired_.clear();
    active_ = true;
    if (!hook_) {
      hook_ = std::make_shared<const nn::Module::GradientReadyHook>(
          [this](nn::Module& m) { gradients_ready(m); });
    }
    model_.set_gradient_ready_hook(hook_);  // also reaches modules added since the last step
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  /// After backward: starts the buckets not started yet, waits for all and
  /// writes the averaged gradients back. Collective.
  void finish(std::int64_t local_samples) {
    (void)local_samples;
    require(active_, "GradientAverager: finish() without begin()");
    const auto t0 = std::chrono::steady_clock::now();
    model_.set_gradient_ready_hook(nullptr);
    active_ = false;
    overlapped_ += static_cast<std::int64_t>(next_);
    while (next_ < buckets_.size()) start(next_++);
    const auto t1 = std::chrono::steady_clock::now();
    detail::check(
        MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE),
        "MPI_Waitall(gradient buckets)");
    const auto t2 = std::chrono::steady_clock::now();
    for (std::size_t k = 0; k < buckets_.size(); ++k) {
      const Bucket& b = buckets_[k];
      const float* buf = storage_[k].data();
      for (std::size_t i = b.first; i < b.last; ++i) {
        Tensor<float>& g = *params_[i].grad;
        float* dst = g.data();
        for (std::int64_t j = 0; j < g.numel(); ++j) dst[j] = buf[j];
        buf += g.numel();
      }
    }
    const auto t3 = std::chrono::steady_clock::now();
    seconds_ += std::chrono::duration<double>(t3 - t0).count() + hook_seconds_;
    hook_seconds_ = 0;
    wait_seconds_ += std::chrono::duration<double>(t2 - t1).count();
    ++steps_;
  }

  /// The buckets of the last step, first reduced first.
  const std::vector<Bucket>& buckets() const { return buckets_; }
  /// Parameter names in bucket order (reverse of named_parameters()).
  std::vector<std::string> bucket_order() const {
    std::vector<std::string> out;
    for (const auto& p : params_) out.push_back(p.name);
    return out;
  }
  std::int64_t steps() const { return steps_; }
  /// Buckets whose reduction started while backward was still running,
  /// summed over steps (of buckets().size() per step).
  std::int64_t overlapped_buckets() const { return overlapped_; }
  /// Seconds in the averager (count, packing during and after backward,
  /// reduction, unpacking) and the part spent waiting for the reductions
  /// after backward, summed over steps.
  double seconds() const { return seconds_; }
  double wait_seconds() const { return wait_seconds_; }

 private:
  /// The gradient-ready hook: marks m's parameters final and starts every
  /// bucket, in order, whose gradients are all final; then lets MPI progress
  /// the reductions already started.
  void gradients_ready(nn::Module& m) {
    if (!active_) return;
    const auto t0 = std::chrono::steady_clock::now();
    // A second backward of m in one step would add to gradients whose bucket
    // may be on the wire already: an error, not a silently lost share.
    require(fired_.insert(&m).second, "GradientAverager: '", m.type_name(),
            "' ran backward twice in one step; a module with parameters must run once per "
            "forward in data-parallel training (its gradients are reduced as soon as its "
            "backward returns)");
    for (const auto& p : m.named_parameters()) {
      const auto it = index_.find(p.grad);
      if (it == index_.end() || ready_[it->second]) continue;
      ready_[it->second] = 1;
      --pending_[bucket_of_[it->second]];
    }
    while (next_ < buckets_.size() && pending_[next_] == 0) start(next_++);
    if (next_ > 0) {
      int done = 0;
      detail::check(
          MPI_Testall(static_cast<int>(next_), requests_.data(), &done, MPI_STATUSES_IGNORE),
          "MPI_Testall(gradient buckets)");
    }
    hook_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  /// Packs bucket k (scaled by n_local / N) and starts its reduction.
  void start(std::size_t k) {
    const Bucket& b = buckets_[k];
    float* buf = storage_[k].data();
    for (std::size_t i = b.first; i < b.last; ++i) {
      const Tensor<float>& g = *params_[i].grad;
      const float* src = g.data();
      for (std::int64_t j = 0; j < g.numel(); ++j) buf[j] = src[j] * scale_;
      buf += g.numel();
    }
    detail::check(MPI_Iallreduce(MPI_IN_PLACE, storage_[k].data(),
                                 Communicator::checked_count(storage_[k].size()), MPI_FLOAT,
                                 MPI_SUM, comm_.handle(), &requests_[k]),
                  "MPI_Iallreduce(gradient bucket)");
  }

  /// Re-reads the parameters (the model may have been edited between steps)
  /// and rebuilds the buckets when their names or sizes changed; the ranks
  /// check that they all hold the same structure then.
  void bind() {
    auto refs = model_.named_parameters();
    std::vector<nn::ParameterRef> rev(refs.rbegin(), refs.rend());
    bool same = rev.size() == params_.size();
    for (std::size_t i = 0; same && i < rev.size(); ++i)
      same = rev[i].name == params_[i].name && rev[i].grad->numel() == numels_[i];
    params_ = std::move(rev);
    for (const auto& p : params_)
      require<ShapeError>(p.grad->shape() == p.value->shape(), "GradientAverager: gradient of '",
                          p.name, "' has shape ", p.grad->shape(), ", not ", p.value->shape());
    if (same && !buckets_.empty()) return;
    comm_.require_same(structure_fingerprint(model_),
                       "the model's structure (names and shapes of parameters and buffers)");
    numels_.clear();
    buckets_.clear();
    const std::int64_t cap = bucket_bytes_ / static_cast<std::int64_t>(sizeof(float));
    Bucket cur;
    for (std::size_t i = 0; i < params_.size(); ++i) {
      const std::int64_t n = params_[i].grad->numel();
      numels_.push_back(n);
      if (cur.numel > 0 && cur.numel + n > cap) {
        buckets_.push_back(cur);
        cur = Bucket{i, i, 0};
      }
      cur.last = i + 1;
      cur.numel += n;
    }
    if (cur.last > cur.first) buckets_.push_back(cur);
    index_.clear();
    bucket_of_.assign(params_.size(), 0);
    for (std::size_t k = 0; k < buckets_.size(); ++k)
      for (std::size_t i = buckets_[k].first; i < buckets_[k].last; ++i) bucket_of_[i] = k;
    for (std::size_t i = 0; i < params_.size(); ++i) index_[params_[i].grad] = i;
    storage_.assign(buckets_.size(), {});
    for (std::size_t k = 0; k < buckets_.size(); ++k)
      storage_[k].assign(static_cast<std::size_t>(buckets_[k].numel), 0.f);
  }

  Communicator comm_;
  nn::Module& model_;
  std::int64_t bucket_bytes_;
  std::vector<nn::ParameterRef> params_;  // reversed named_parameters()
  std::vector<std::int64_t> numels_;
  std::vector<Bucket> buckets_;
  std::vector<std::vector<float>> storage_;
  std::vector<MPI_Request> requests_;
  std::unordered_map<const Tensor<float>*, std::size_t> index_;  // gradient -> params_ index
  std::vector<std::size_t> bucket_of_;                           // params_ index -> bucket
  std::unordered_set<const nn::Module*> fired_;                  // hooks seen this step
  std::vector<std::uint8_t> ready_;                              // per params_ index, this step
  std::vector<std::int64_t> pending_;  // per bucket: gradients not final yet
  std::size_t next_ = 0;               // the next bucket to start
  float scale_ = 0.f;
  bool active_ = false;
  std::shared_ptr<const nn::Module::GradientReadyHook> hook_;
  std::int64_t steps_ = 0, overlapped_ = 0;
  double seconds_ = 0, wait_seconds_ = 0, hook_seconds_ = 0;
};

}  // namespace compressor::distributed
