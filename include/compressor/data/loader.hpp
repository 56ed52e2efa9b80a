// DataLoader: a BatchSource over any Dataset. Shuffles per epoch, cuts the
// order into batches (the last one partial unless drop_last), and prepares
// the next batches on a background std::thread (one per loader, kept across
// epochs) while the caller trains on the current one. Optionally an OpenMP
// team inside that thread fills a batch.
//
// Determinism: the order of epoch e comes from Rng::derive(~seed, e) and
// sample i's augmentation from Rng::derive(seed, e * N + i), so batches are
// the same for any thread count and prefetch depth.
//
// Sharding (data-parallel training, docs/distributed.md): with world_size W >
// 1 every rank builds the same loader (same data set, batch_size and seed)
// with its own rank r. The epoch's order is the same on every rank; it is cut
// into global batches of G = W * batch_size positions (the last one g <= G,
// or dropped under drop_last), and rank r takes positions [r*g/W, (r+1)*g/W)
// of each global batch: batch_size each in a full one, and an even split
// (sizes differ by at most one, some may be 0) of the last, partial one. So
// every sample is seen exactly once per epoch across ranks, step b of all
// ranks together is batch b of a single process with batch size G, and every
// rank has the same num_batches(). A sharded loader therefore also returns
// EMPTY batches (its share of a short last batch, or a batch whose samples
// were all skipped) instead of passing over them, so that the ranks stay in
// step; the Trainer runs such a step with a zero gradient of weight 0.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <numeric>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/rng.hpp"
#include "compressor/data/batch.hpp"
#include "compressor/data/dataset.hpp"
#include "compressor/data/error_policy.hpp"

namespace compressor::data {

struct LoaderOptions {
  std::int64_t batch_size = 128;
  bool shuffle = true;
  bool drop_last = false;  ///< drop the last, partial batch of an epoch
  std::uint64_t seed = 0;
  int prefetch = 2;  ///< batches prepared ahead on a background thread; 0 = in next()
  int threads = 1;   ///< OpenMP threads filling one batch (samples in parallel)
  /// A sample whose get() throws: stop (rethrown from next()) or skip (dropped
  /// from its batch, which comes out smaller; one warning per sample).
  ErrorPolicy errors;
  /// Data-parallel sharding (see the top of this file): this process's rank
  /// in [0, world_size) and the number of ranks; batch_size is per rank.
  int rank = 0;
  int world_size = 1;
};

class DataLoader final : public BatchSource {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
      : ds_(std::move(dataset)), opt_(std::move(options)) {
    require(ds_ != nullptr, "DataLoader: null dataset");
    require(opt_.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ", opt_.batch_size);
    require(opt_.prefetch >= 0, "DataLoader: prefetch must be >= 0, got ", opt_.prefetch);
    require(opt_.threads >= 1, "DataLoader: threads must be >= 1, got ", opt_.threads);
    require<ShapeError>(ds_->sample_shape().rank() < Shape::kMaxRank, "DataLoader: sample shape ",
                        ds_->sample_shape(), " leaves no room for the batch dimension");
    require(opt_.world_size >= 1, "DataLoader: world_size must be >= 1, got ", opt_.world_size);
    require(opt_.rank >= 0 && opt_.rank < opt_.world_size, "DataLoader: rank must be in [0, ",
            opt_.world_size, "), got ", opt_.rank);
    n_ = ds_->size();
    require(opt_.world_size == 1 || opt_.world_size <= n_, "DataLoader: world size ",
            opt_.world_size, " is larger than the data set (", n_,
            " samples): some rank would get no sample in any epoch");
    bad_.assign(static_cast<std::size_t>(n_), 0);
  }
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;
  ~DataLoader() override {
    if (!worker_.joinable()) return;
    {
      std::lock_guard lock(mu_);
      shutdown_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  void start_epoch(std::uint64_t epoch) override {
    cancel_job();  // the worker is idle from here until the new job is posted
    epoch_ = epoch;
    order_ = epoch_order(epoch);
    taken_ = 0;
    started_ = true;
    failed_ = false;
    if (opt_.prefetch == 0 || num_batches() == 0) return;
    if (!worker_.joinable()) worker_ = std::thread([this] { work(); });
    {
      std::lock_guard lock(mu_);
      job_pending_ = true;
    }
    cv_.notify_all();
  }

  /// The next batch of the epoch; false at its end. Under OnError::skip a
  /// batch whose samples were all bad is passed over.
  bool next(Batch& out) override {
    if (!started_) start_epoch(0);
    while (!failed_ && taken_ < num_batches()) {
      take(out);
      if (out.size() > 0 || sharded()) return true;
    }
    return false;
  }

  /// Batches per epoch; the same on every rank of a sharded loader.
  std::int64_t num_batches() const override {
    const std::int64_t g = global_batch();
    return opt_.drop_last ? n_ / g : (n_ + g - 1) / g;
  }
  /// Samples per epoch (this rank's share when sharded), less the samples
  /// known to be bad.
  std::int64_t num_samples() const override {
    const std::int64_t nb = num_batches();
    std::int64_t used = 0;
    if (nb > 0) used = (nb - 1) * opt_.batch_size + shard(nb - 1).second;
    return used - skipped();
  }

  /// Batch size across all ranks: world_size * batch_size.
  std::int64_t global_batch() const { return opt_.batch_size * opt_.world_size; }
  /// Positions [first, first + count) of the epoch's order that make this
  /// rank's batch b (count may be 0 for the last batch when sharded).
  std::pair<std::int64_t, std::int64_t> shard(std::int64_t b) const {
    const std::int64_t begin = b * global_batch();
    const std::int64_t g = std::min(global_batch(), n_ - begin);
    const std::int64_t lo = opt_.rank * g / opt_.world_size;
    const std::int64_t hi = (opt_.rank + 1) * g / opt_.world_size;
    return {begin + lo, hi - lo};
  }
  bool sharded() const { return opt_.world_size > 1; }

  /// Samples skipped so far (OnError::skip); each is skipped in later epochs
  /// without being read again.
  std::int64_t skipped() const {
    std::lock_guard lock(bad_mu_);
    return skipped_;
  }
  /// Seconds next() spent waiting for the background thread (0 when data
  /// loading keeps up with training).
  double waited_seconds() const {
    std::lock_guard lock(mu_);
    return waited_;
  }

  /// The sample order of an epoch.
  std::vector<std::int64_t> epoch_order(std::uint64_t epoch) const {
    std::vector<std::int64_t> order(static_cast<std::size_t>(n_));
    std::iota(order.begin(), order.end(), std::int64_t{0});
    if (opt_.shuffle) {
      Rng rng = Rng::derive(~opt_.seed, epoch);
      rng.shuffle(std::span(order));
    }
    return order;
  }

  const Dataset& dataset() const { return *ds_; }
  const LoaderOptions& options() const { return opt_; }

 private:
  struct Slot {
    Batch batch;
    std::exception_ptr error;
  };

  void take(Batch& out) {
    if (opt_.prefetch == 0) {
      try {
        fill(taken_++, out);
      } catch (...) {
        failed_ = true;
        throw;
      }
      return;
    }
    Slot slot;
    {
      std::unique_lock lock(mu_);
      if (ready_.empty()) {
        const auto t0 = std::chrono::steady_clock::now();
        cv_.wait(lock, [&] { return !ready_.empty(); });
        waited_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      slot = std::move(ready_.front());
      ready_.pop_front();
    }
    ++taken_;
    if (slot.error) {
      failed_ = true;
      cancel_job();
      std::rethrow_exception(slot.error);
    }
    std::swap(out, slot.batch);
    {
      std::lock_guard lock(mu_);
      free_.push_back(std::move(slot.batch));  // the caller's previous buffers, for reuse
    }
    cv_.notify_all();
  }

  /// The worker thread: one per loader, alive until destruction. Each job
  /// (posted by start_epoch) fills the batches of the current epoch in order,
  /// staying at most `prefetch` batches ahead of next().
  void work() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return shutdown_ || job_pending_; });
      if (shutdown_) return;
      job_pending_ = false;
      busy_ = true;
      for (std::int64_t b = 0; b < num_batches(); ++b) {
        cv_.wait(lock, [&] {
          return shutdown_ || cancel_ || static_cast<int>(ready_.size()) < opt_.prefetch;
        });
        if (shutdown_ || cancel_) break;
        Slot slot;
        if (!free_.empty()) {
          slot.batch = std::move(free_.back());
          free_.pop_back();
        }
        lock.unlock();
        try {
          fill(b, slot.batch);
        } catch (...) {
          slot.error = std::current_exception();
        }
        lock.lock();
        const bool error = slot.error != nullptr;
        ready_.push_back(std::move(slot));
        cv_.notify_all();
        if (error) break;
      }
      busy_ = false;
      cv_.notify_all();
    }
  }

  /// Stops the current job (the worker finishes the batch it is filling and
  /// goes idle) and recycles the batches not taken.
  void cancel_job() {
    std::unique_lock lock(mu_);
    cancel_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !busy_ && !job_pending_; });
    cancel_ = false;
    for (auto& s : ready_) free_.push_back(std::move(s.batch));
    ready_.clear();
  }

  bool known_bad(std::int64_t i) const {
    std::lock_guard lock(bad_mu_);
    return bad_[static_cast<std::size_t>(i)] != 0;
  }

  /// Fills batch b of the current epoch.
  void fill(std::int64_t b, Batch& batch) const {
    const auto range = shard(b);
    const std::int64_t begin = range.first, count = range.second;
    const Shape ss = ds_->sample_shape();
    std::int64_t dims[Shape::kMaxRank] = {count};
    for (int d = 0; d < ss.rank(); ++d) dims[d + 1] = ss[d];
    batch.inputs.resize(Shape(std::span<const std::int64_t>(dims, ss.rank() + 1)));
    const bool labels = ds_->target_kind() == TargetKind::label;
    batch.labels.resize(labels ? Shape{count} : Shape{0});
    batch.targets.resize(labels ? Shape{0} : Shape{count, 1});

    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(count));
    std::vector<char> skip(static_cast<std::size_t>(count), 0);
    auto one = [&](std::int64_t k) {
      const std::int64_t i = order_[static_cast<std::size_t>(begin + k)];
      if (known_bad(i)) {
        skip[static_cast<std::size_t>(k)] = 1;
        return;
      }
      try {
        Rng rng = Rng::derive(
            opt_.seed, epoch_ * static_cast<std::uint64_t>(n_) + static_cast<std::uint64_t>(i));
        const Target t = ds_->get(i, batch.inputs.slice(k), rng);
        if (labels)
          batch.labels[k] = t.label;
        else
          batch.targets[k] = t.value;
      } catch (...) {
        errors[static_cast<std::size_t>(k)] = std::current_exception();
      }
    };
    if (opt_.threads > 1 && count > 1) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(opt_.threads) schedule(dynamic, 1)
#endif
      for (std::int64_t k = 0; k < count; ++k) one(k);
    } else {
      for (std::int64_t k = 0; k < count; ++k) one(k);
    }

    // Errors in sample order, so warnings and the first rethrown error do
    // not depend on the thread count.
    for (std::int64_t k = 0; k < count; ++k) {
      auto& e = errors[static_cast<std::size_t>(k)];
      if (!e) continue;
      const std::int64_t i = order_[static_cast<std::size_t>(begin + k)];
      std::int64_t skipped = 0;
      opt_.errors.guard([&] { std::rethrow_exception(e); }, skipped);  // rethrows under stop
      std::lock_guard lock(bad_mu_);
      bad_[static_cast<std::size_t>(i)] = 1;
      skipped_ += skipped;
      skip[static_cast<std::size_t>(k)] = 1;
    }
    compact(batch, skip, labels);
  }

  /// Removes the skipped samples from the batch, keeping the order.
  static void compact(Batch& batch, const std::vector<char>& skip, bool labels) {
    const auto count = static_cast<std::int64_t>(skip.size());
    std::int64_t kept = 0;
    for (std::int64_t k = 0; k < count; ++k) {
      if (skip[static_cast<std::size_t>(k)]) continue;
      if (kept != k) {
        batch.inputs.slice(kept).copy_from(batch.inputs.slice(k));
        if (labels)
          batch.labels[kept] = batch.labels[k];
        else
          batch.targets[kept] = batch.targets[k];
      }
      ++kept;
    }
    if (kept == count) return;
    batch.inputs.resize(batch.inputs.shape().with_dim0(kept));
    batch.labels.resize(labels ? Shape{kept} : Shape{0});
    batch.targets.resize(labels ? Shape{0} : Shape{kept, 1});
  }

  std::shared_ptr<const Dataset> ds_;
  LoaderOptions opt_;
  std::int64_t n_ = 0;

  // Epoch state, owned by the caller's thread (the worker only reads it).
  std::uint64_t epoch_ = 0;
  std::vector<std::int64_t> order_;
  std::int64_t taken_ = 0;
  bool started_ = false;
  bool failed_ = false;

  // The worker and the queue between it and next(), all guarded by mu_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Slot> ready_;
  std::vector<Batch> free_;
  bool job_pending_ = false;  // start_epoch posted a job the worker has not begun
  bool busy_ = false;         // the worker is running a job
  bool cancel_ = false;       // the running job should stop
  bool shutdown_ = false;     // the worker should exit
  double waited_ = 0;
  std::thread worker_;

  // Samples found bad (OnError::skip), shared by the worker and next().
  mutable std::mutex bad_mu_;
  mutable std::vector<char> bad_;
  mutable std::int64_t skipped_ = 0;
};

}  // namespace compressor::data
