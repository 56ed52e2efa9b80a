// Threading. set_num_threads() sets the thread count for our own parallel
// loops and for Eigen's GEMM; every example exposes it as --threads. Our
// loops (parallel_for here, kernels::detail::parallel_units) run on the
// library's WorkerPool (worker_pool.hpp: a fork / join that costs a fraction
// of an OpenMP region's); the thread count is OpenMP's (omp_set_num_threads,
// OMP_NUM_THREADS), which Eigen's GEMM uses. Parallel loops in the library
// never nest: a loop called inside one runs inline (in_parallel()), and
// Eigen detects an enclosing OpenMP region and runs single-threaded.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

#include "compressor/core/worker_pool.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace compressor {

inline void set_num_threads(int n) {
  n = std::max(n, 1);
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
  Eigen::setNbThreads(n);
}

inline int num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/// Index of the calling thread inside a parallel loop, in [0, threads of
/// the loop); 0 outside.
inline int thread_index() {
  if (const int slot = detail::pool_slot(); slot >= 0) return slot;
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// True inside a parallel loop (a WorkerPool job or an OpenMP region).
inline bool in_parallel() {
  if (detail::pool_slot() >= 0) return true;
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

namespace detail {

/// Runs fn(i) for every i in [0, n) on `threads` threads (the caller among
/// them) of the WorkerPool, units handed out dynamically; inline when
/// another thread's job holds the pool.
template <class Fn>
void pool_run(std::int64_t n, int threads, Fn& fn) {
  const WorkerPool::UnitFn unit = [](void* ctx, std::int64_t i) { (*static_cast<Fn*>(ctx))(i); };
  void* const ctx = const_cast<void*>(static_cast<const void*>(&fn));
  if (!WorkerPool::instance().try_run(n, threads - 1, unit, ctx))
    for (std::int64_t i = 0; i < n; ++i) fn(i);
}

}  // namespace detail

/// Runs fn(begin, end) over [0, n) split into contiguous chunks, one per
/// thread (deterministic for a given thread count; which thread runs a chunk
/// is not). Runs inline when n is small (below min_per_thread * 2) or when
/// already in a parallel loop.
template <class Fn>
void parallel_for(std::int64_t n, Fn&& fn, std::int64_t min_per_thread = 1) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::min<std::int64_t>(
      num_threads(), std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, min_per_thread))));
  if (threads <= 1 || in_parallel()) {
    fn(std::int64_t{0}, n);
    return;
  }
  auto chunk = [&](std::int64_t t) {
    const std::int64_t begin = n * t / threads, end = n * (t + 1) / threads;
    if (begin < end) fn(begin, end);
  };
  detail::pool_run(threads, threads, chunk);
}

/// Sets n elements to v, split across the threads (a large buffer is
/// written at the bandwidth of every core, not one).
template <class T>
void parallel_fill(T* p, std::int64_t n, T v) {
  parallel_for(
      n, [&](std::int64_t b, std::int64_t e) { std::fill(p + b, p + e, v); }, 1 << 16);
}

}  // namespace compressor
