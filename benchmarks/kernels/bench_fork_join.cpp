// The cost of starting and joining a parallel loop: the library's WorkerPool
// (parallel_units, one empty unit per thread) against an empty OpenMP
// parallel region on as many threads, back to back (docs/performance.md,
// "A thread pool of our own").
#include <benchmark/benchmark.h>

#include <cstdint>

#include "compressor/core/threading.hpp"
#include "compressor/kernels/parallel_units.hpp"

namespace {

void BM_ForkJoin_pool(benchmark::State& state) {
  const auto threads = static_cast<int>(state.range(0));
  compressor::set_num_threads(threads);
  for (auto _ : state)
    compressor::kernels::detail::parallel_units(
        threads, [](std::int64_t i) { benchmark::DoNotOptimize(i); });
}
BENCHMARK(BM_ForkJoin_pool)->ArgName("threads")->Arg(2)->UseRealTime();

#ifdef _OPENMP
void BM_ForkJoin_openmp(benchmark::State& state) {
  const auto threads = static_cast<int>(state.range(0));
  compressor::set_num_threads(threads);
  for (auto _ : state) {
#pragma omp parallel num_threads(threads)
    {
      int i = omp_get_thread_num();
      benchmark::DoNotOptimize(i);
    }
  }
}
BENCHMARK(BM_ForkJoin_openmp)->ArgName("threads")->Arg(2)->UseRealTime();
#endif

}  // namespace
