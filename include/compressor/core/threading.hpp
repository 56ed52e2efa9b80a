// The one threading layer: OpenMP. set_num_threads() sets the thread count for
// our own parallel loops and for Eigen's GEMM; every example exposes it as
// --threads. Parallel loops in the library never nest: a loop that is parallel
// calls only single-threaded kernels inside (Eigen detects an enclosing OpenMP
// region and runs single-threaded).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstdint>

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

/// Index of the calling thread inside a parallel region (0 outside).
inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

/// True inside an active parallel region.
inline bool in_parallel() {
#ifdef _OPENMP
  return omp_in_parallel() != 0;
#else
  return false;
#endif
}

/// Runs fn(begin, end) over [0, n) split into contiguous chunks, one per
/// thread, statically (deterministic for a given thread count). Runs inline
/// when n is small (below min_per_thread * 2) or when already in a parallel region.
template <class Fn>
void parallel_for(std::int64_t n, Fn&& fn, std::int64_t min_per_thread = 1) {
  if (n <= 0) return;
  const int threads = static_cast<int>(std::min<std::int64_t>(
      num_threads(), std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, min_per_thread))));
  if (threads <= 1 || in_parallel()) {
    fn(std::int64_t{0}, n);
    return;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t t = omp_get_thread_num();
    const std::int64_t nt = omp_get_num_threads();
    const std::int64_t begin = n * t / nt;
    const std::int64_t end = n * (t + 1) / nt;
    if (begin < end) fn(begin, end);
  }
#else
  fn(std::int64_t{0}, n);
#endif
}

/// Sets n elements to v, split across the threads (a large buffer is
/// written at the bandwidth of every core, not one).
template <class T>
void parallel_fill(T* p, std::int64_t n, T v) {
  parallel_for(
      n, [&](std::int64_t b, std::int64_t e) { std::fill(p + b, p + e, v); }, 1 << 16);
}

}  // namespace compressor
