// WorkerPool: the library's own fork/join for its parallel loops
// (parallel_for, kernels::detail::parallel_units), in place of an OpenMP
// parallel region.
//
// Why: on the 2-core Zen 5 VM an empty `#pragma omp parallel` on 2 threads
// costs 2.7-2.9 us back to back with libgomp's workers spinning, where a
// cache line crosses from one core to the other in about 210 ns
// (docs/performance.md, "Why 2 threads gain little at batch 1"). The int8
// layers of a model at batch 1 take 10-40 us each, so that cost decided
// whether a second core helped at all. Here a job costs one store to start
// and one compare-and-swap per thread that joins it.
//
// How: the pool's workers spin on one state word (generation, threads
// entered, threads inside, closed) for a while after their last job, then
// sleep on a futex. The caller publishes a job, runs units itself, and
// closes the job once no worker is inside it. A worker enters a job with a
// compare-and-swap on the state, so one that wakes late finds the job closed
// (or the next one open) and never touches a finished job's arguments: the
// caller never waits for a worker that has not started, and a sleeping or
// descheduled worker costs the job its help, not its latency. Units are
// handed out from one atomic counter, as parallel_units did under OpenMP.
//
// One caller at a time: a call made while another thread's job runs (a
// loader thread, a user's own threads) runs its units inline. Calls made
// from inside a job run inline too (in_parallel() is true there), as they
// did inside an OpenMP region; thread_index() gives each thread of a job a
// distinct slot in [0, threads).
//
// An exception thrown by a unit stops the job's remaining units from
// starting and is rethrown to the caller once every thread has left the job
// (an exception inside an OpenMP region terminates the program).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace compressor::detail {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

/// The calling thread's slot in the pool job it is running units of, or -1
/// outside a job.
inline int& pool_slot() {
  thread_local int slot = -1;
  return slot;
}

class WorkerPool {
 public:
  /// A unit of work: fn(ctx, i).
  using UnitFn = void (*)(void* ctx, std::int64_t i);

  /// How long an idle worker spins before it sleeps. Long enough to span the
  /// gaps between the layers of a model (a few us) and the serial stretches
  /// of a training step (with 200 us, workers asleep at the next loop made
  /// the CifarCnn's 2-thread training step 2-10% slower than on OpenMP,
  /// whose workers spin longer: docs/performance.md); short enough that an
  /// idle library gives its cores back.
  static constexpr std::chrono::microseconds kSpin{2000};

  /// Most workers a job takes (the state word counts them in 8 bits).
  static constexpr int kMaxHelpers = 255;

  /// The library's pool: created on first use and never destroyed (its
  /// workers sleep at exit), so that code running during static destruction
  /// can still call a parallel loop.
  static WorkerPool& instance() {
    static WorkerPool* const pool = new WorkerPool;
    return *pool;
  }

  WorkerPool() = default;
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  ~WorkerPool() {
    quit_.store(true, std::memory_order_seq_cst);
    wake_.fetch_add(1, std::memory_order_seq_cst);
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }

  /// Runs fn(ctx, i) for every i in [0, n) on the calling thread and up to
  /// `helpers` workers. Returns false, having run nothing, when another
  /// thread's job holds the pool.
  bool try_run(std::int64_t n, int helpers, UnitFn fn, void* ctx) {
    if (busy_.test_and_set(std::memory_order_acquire)) return false;
    struct Release {
      std::atomic_flag& f;
      ~Release() { f.clear(std::memory_order_release); }
    } release{busy_};
    helpers = std::clamp(helpers, 0, kMaxHelpers);
    try {
      spawn(helpers);
    } catch (const std::system_error&) {
      // No thread to be had: the job runs on the workers there are.
    }
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    n_.store(n, std::memory_order_relaxed);
    limit_.store(helpers, std::memory_order_relaxed);
    next_.value.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    const std::uint64_t gen = (state_.load(std::memory_order_relaxed) >> kGenShift) + 1;
    state_.store(gen << kGenShift, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      wake_.fetch_add(1, std::memory_order_seq_cst);
      wake_.notify_all();
    }
    run_units(0);
    close();
    if (error_) std::rethrow_exception(error_);
    return true;
  }

  /// Workers started so far.
  int workers() const {
    std::lock_guard<std::mutex> lock(spawn_mutex_);
    return static_cast<int>(workers_.size());
  }

 private:
  // The state word: threads inside the job (bits 0-7), threads that entered
  // it (8-15), closed (16), generation (17 up).
  static constexpr std::uint64_t kInside = 1, kEntered = std::uint64_t{1} << 8;
  static constexpr std::uint64_t kClosed = std::uint64_t{1} << 16;
  static constexpr int kGenShift = 17;
  static int inside(std::uint64_t s) { return static_cast<int>(s & 0xff); }
  static int entered(std::uint64_t s) { return static_cast<int>((s >> 8) & 0xff); }
  static bool open(std::uint64_t s) { return (s & kClosed) == 0; }
  static std::uint64_t generation(std::uint64_t s) { return s >> kGenShift; }

  void spawn(int helpers) {
    std::lock_guard<std::mutex> lock(spawn_mutex_);
    while (static_cast<int>(workers_.size()) < helpers) workers_.emplace_back([this] { work(); });
  }

  void run_units(int slot) {
    int& mine = pool_slot();
    const int outside = mine;
    mine = slot;
    const UnitFn fn = fn_.load(std::memory_order_relaxed);
    void* const ctx = ctx_.load(std::memory_order_relaxed);
    const std::int64_t n = n_.load(std::memory_order_relaxed);
    try {
      for (std::int64_t i = next_.value.fetch_add(1, std::memory_order_relaxed); i < n;
           i = next_.value.fetch_add(1, std::memory_order_relaxed))
        fn(ctx, i);
    } catch (...) {
      next_.value.store(n, std::memory_order_relaxed);  // no unit starts after this
      std::lock_guard<std::mutex> lock(error_mutex_);
      if (!error_) error_ = std::current_exception();
    }
    mine = outside;
  }

  /// Waits until no worker is inside the job, then closes it to late ones.
  void close() {
    std::uint64_t s = state_.load(std::memory_order_acquire);
    for (int spins = 0;; ++spins) {
      if (inside(s) == 0) {
        if (state_.compare_exchange_weak(s, s | kClosed, std::memory_order_acq_rel,
                                         std::memory_order_acquire))
          return;
        continue;
      }
      // A worker inside has lost its core: let it have this one.
      if (spins >= 4096) std::this_thread::yield();
      cpu_relax();
      s = state_.load(std::memory_order_acquire);
    }
  }

  void work() {
    using Clock = std::chrono::steady_clock;
    std::uint64_t seen = 0;  // any open job is new to a worker that starts
    auto idle_since = Clock::now();
    for (int spins = 0;;) {
      std::uint64_t s = state_.load(std::memory_order_acquire);
      if (quit_.load(std::memory_order_relaxed)) return;
      if (generation(s) != seen && open(s)) {
        if (entered(s) >= limit_.load(std::memory_order_relaxed)) {
          seen = generation(s);  // the job has all the threads it asked for
          continue;
        }
        if (!state_.compare_exchange_weak(s, s + kEntered + kInside, std::memory_order_acq_rel,
                                          std::memory_order_relaxed))
          continue;
        seen = generation(s);
        run_units(1 + entered(s));
        state_.fetch_sub(kInside, std::memory_order_release);
        idle_since = Clock::now();
        spins = 0;
        continue;
      }
      seen = generation(s);  // a job closed before this worker saw it
      cpu_relax();
      if (++spins % 256 != 0 || Clock::now() - idle_since < kSpin) continue;
      // Sleep until a caller bumps wake_ (it does when it sees a sleeper).
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      const std::uint32_t w = wake_.load(std::memory_order_seq_cst);
      s = state_.load(std::memory_order_seq_cst);
      if (generation(s) == seen && !quit_.load(std::memory_order_seq_cst))
        wake_.wait(w, std::memory_order_seq_cst);
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      idle_since = Clock::now();
      spins = 0;
    }
  }

  // The job's arguments: written by the caller before it opens the job,
  // read by threads inside it (atomics, so that a late worker's read of a
  // newer job's values is a harmless race, settled by its compare-and-swap).
  std::atomic<UnitFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<std::int64_t> n_{0};
  std::atomic<int> limit_{0};
  std::exception_ptr error_;
  std::mutex error_mutex_;

  // Each hot word on a cache line of its own.
  alignas(64) std::atomic<std::uint64_t> state_{kClosed};
  struct alignas(64) Counter {
    std::atomic<std::int64_t> value{0};
  };
  Counter next_;
  alignas(64) std::atomic<int> sleepers_{0};
  std::atomic<std::uint32_t> wake_{0};
  std::atomic<bool> quit_{false};
  std::atomic_flag busy_;  // clear (C++20)

  mutable std::mutex spawn_mutex_;
  std::vector<std::thread> workers_;
};

}  // namespace compressor::detail
