// parallel_units: the kernels' OpenMP loop over independent work units (row
// blocks, weight panels, sparse pixel blocks), handed out dynamically from an
// atomic counter instead of compressor::parallel_for's fixed chunks.
//
// On a shared machine a thread that loses its core for a while would hold up
// a static split until it gets the core back; here the other threads take its
// remaining units. Results do not depend on which thread runs a unit (every
// output element is computed by one unit, always the same way), so the
// kernels stay deterministic and bit-exact.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "compressor/core/threading.hpp"

namespace compressor::kernels::detail {

/// Runs fn(i) for every i in [0, n), on up to num_threads() threads; inline
/// when one thread is asked for or when already inside a parallel region.
template <class Fn>
void parallel_units(std::int64_t n, Fn&& fn) {
  if (n <= 0) return;
  const auto threads = static_cast<int>(std::min<std::int64_t>(num_threads(), n));
  if (threads <= 1 || in_parallel()) {
    for (std::int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
#ifdef _OPENMP
  // The counter has a cache line to itself: it lives on the calling thread's
  // stack next to the callers' small argument structs (row sources,
  // epilogues) that every thread reads, and each fetch_add would otherwise
  // take that line away from the other threads (measured: 12-16% slower
  // int8 GEMMs of ~15 us on 2 threads).
  struct alignas(64) Counter {
    std::atomic<std::int64_t> value{0};
  } next;
  static_assert(sizeof(Counter) == 64);
#pragma omp parallel num_threads(threads)
  {
    for (std::int64_t i = next.value.fetch_add(1, std::memory_order_relaxed); i < n;
         i = next.value.fetch_add(1, std::memory_order_relaxed))
      fn(i);
  }
#else
  for (std::int64_t i = 0; i < n; ++i) fn(i);
#endif
}

}  // namespace compressor::kernels::detail
