// Helpers shared by the int8 benchmarks: measured peaks, counters, random data.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/kernels/int8_traits.hpp"
#include "peak_probe.hpp"

namespace compressor::bench {

/// Measured peaks (ops/s) for 1 and 2 threads, filled by main() before the
/// run: int8 / f32 those of the best path's streams, probe[p][t] each probe's.
struct Peaks {
  double int8[3] = {0, 0, 0};
  double f32[3] = {0, 0, 0};
  double probe[6][3] = {};
};
inline Peaks& peaks() {
  static Peaks p;
  return p;
}

/// GOPS and the fraction of the measured int8 (or fp32) peak at `threads`.
inline void set_counters(benchmark::State& st, double ops, int threads, bool fp32 = false) {
  using benchmark::Counter;
  st.counters["GOPS"] = Counter(ops * 1e-9, Counter::kIsIterationInvariantRate);
  const double peak = fp32 ? peaks().f32[threads] : peaks().int8[threads];
  if (peak > 0) st.counters["peak_frac"] = Counter(ops / peak, Counter::kIsIterationInvariantRate);
}

/// GOPS and the fraction of probe p's measured peak at `threads`.
inline void set_counters(benchmark::State& st, double ops, int threads, Probe p) {
  using benchmark::Counter;
  st.counters["GOPS"] = Counter(ops * 1e-9, Counter::kIsIterationInvariantRate);
  const double peak = peaks().probe[static_cast<int>(p)][threads];
  if (peak > 0) st.counters["peak_frac"] = Counter(ops / peak, Counter::kIsIterationInvariantRate);
}

inline std::vector<std::uint8_t> random_u8(std::size_t n, Rng& rng) {
  std::vector<std::uint8_t> v(n);
  for (auto& x : v) x = static_cast<std::uint8_t>(rng.below(256));
  return v;
}
/// Weights on a grid (the narrow one by default).
inline std::vector<std::int8_t> random_s8(std::size_t n, Rng& rng,
                                          kernels::WeightGrid grid = kernels::WeightGrid::narrow) {
  const std::int32_t lo = kernels::weight_min(grid), hi = kernels::weight_max(grid);
  std::vector<std::int8_t> v(n);
  const auto span = static_cast<std::uint64_t>(hi - lo + 1);
  for (auto& x : v) x = static_cast<std::int8_t>(lo + static_cast<int>(rng.below(span)));
  return v;
}
inline std::vector<float> random_f32(std::size_t n, Rng& rng) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.uniform(-1, 1));
  return v;
}

}  // namespace compressor::bench
