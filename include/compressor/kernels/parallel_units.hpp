// parallel_units: the kernels' parallel loop over independent work units (row
// blocks, weight panels, sparse pixel blocks) on the WorkerPool, handed out
// dynamically from an atomic counter instead of compressor::parallel_for's
// fixed chunks.
//
// On a shared machine a thread that loses its core for a while would hold up
// a static split until it gets the core back; here the other threads take its
// remaining units. Results do not depend on which thread runs a unit (every
// output element is computed by one unit, always the same way), so the
// kernels stay deterministic and bit-exact.
#pragma once

#include <algorithm>
#include <cstdint>

#include "compressor/core/threading.hpp"

namespace compressor::kernels::detail {

/// Multiply-adds a kernel call gives each thread at least: a smaller call
/// runs on fewer threads. A layer split over two cores leaves its output in
/// both, where the next layer fetches half of it from the other core.
/// Measured on the 2-core Zen 5 VM under OpenMP (docs/performance.md, "Small
/// layers on one thread"): the int8 convs of a CifarCnn pruned to half its
/// channels, 4.7 M multiply-adds each at batch 1, ran 1.0-1.5x slower on 2
/// threads than on 1 inside the model. On the WorkerPool (a loop starts in
/// ~0.3 us, an OpenMP region took ~2.7), 1 M or 2 M moved the 90%-sparse
/// CifarCnn by 0-5%, inside the VM's spread ("A thread pool of our own").
/// On the Zen 4 VM, 2 M against 4 M took that half-channel CifarCnn from
/// 0.077-0.088 to 0.049-0.056 ms per image on 2 threads in 9 of 12 rounds
/// (0.073-0.076 in the others), the dense models unchanged (docs/pruning.md,
/// "Int8, a second thread from 2 M multiply-adds").
inline constexpr std::int64_t kMinMacsPerThread = std::int64_t{2} << 20;

/// The grain threads_for_macs uses: kMinMacsPerThread unless a
/// ScopedThreadGrain says otherwise.
inline std::int64_t& min_macs_per_thread() {
  static std::int64_t grain = kMinMacsPerThread;
  return grain;
}

/// Threads worth giving a kernel call of `macs` multiply-adds (computed,
/// zeros included): between 1 and num_threads().
inline std::int64_t threads_for_macs(std::int64_t macs) {
  return std::clamp<std::int64_t>(macs / min_macs_per_thread(), 1, num_threads());
}

/// Runs fn(i) for every i in [0, n), on up to min(num_threads(),
/// max_threads) threads; inline when one thread is asked for or when already
/// inside a parallel region.
template <class Fn>
void parallel_units(std::int64_t n, Fn&& fn, std::int64_t max_threads = INT64_MAX) {
  if (n <= 0) return;
  const auto threads = static_cast<int>(std::min({std::int64_t{num_threads()}, max_threads, n}));
  if (threads <= 1 || in_parallel()) {
    for (std::int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  // The pool's unit counter has a cache line to itself: next to the
  // callers' small argument structs (row sources, epilogues) that every
  // thread reads, each fetch_add would take that line away from the other
  // threads (measured under OpenMP: 12-16% slower int8 GEMMs of ~15 us on 2
  // threads).
  compressor::detail::pool_run(n, threads, fn);
}

}  // namespace compressor::kernels::detail

namespace compressor::kernels {

/// Sets the multiply-adds per thread below which the int8 kernels use fewer
/// threads (detail::kMinMacsPerThread) for its lifetime; not thread-safe.
/// Tests set 1, so that small shapes take the threaded code too.
class ScopedThreadGrain {
 public:
  explicit ScopedThreadGrain(std::int64_t macs_per_thread) : saved_(detail::min_macs_per_thread()) {
    detail::min_macs_per_thread() = std::max<std::int64_t>(1, macs_per_thread);
  }
  ~ScopedThreadGrain() { detail::min_macs_per_thread() = saved_; }
  ScopedThreadGrain(const ScopedThreadGrain&) = delete;
  ScopedThreadGrain& operator=(const ScopedThreadGrain&) = delete;

 private:
  std::int64_t saved_;
};

}  // namespace compressor::kernels
