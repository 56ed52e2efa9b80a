// Peak probes: tight loops of the micro-kernels' instructions, so every kernel
// figure can be reported as a fraction of this machine's measured peak.
//  - int8: vpmaddubsw + vpmaddwd + vpaddd (64 ops each triple on a ymm), the
//    exact instruction mix of the u8s8 GEMM micro-kernel;
//  - fp32: vfmadd231ps (16 flops each on a ymm), Eigen's GEMM instruction.
#pragma once

#include <chrono>
#include <cstdint>

#include "compressor/core/threading.hpp"
#include "compressor/kernels/simd/arch/avx2/u8s8.hpp"

namespace compressor::bench {

#if COMPRESSOR_KERNELS_AVX2
namespace detail {
namespace avx2 = kernels::simd::avx2;

/// Keeps x in a register and opaque to the optimizer (no hoisting).
template <class V>
inline void opaque(V& x) {
  auto r = static_cast<typename V::register_type>(x);
  asm volatile("" : "+x"(r));
  x = V(r);
}

/// int8 ops (2 per multiply-add) done by `iters` iterations.
inline double u8s8_loop(std::int64_t iters) {
  using avx2::Vec;
  auto a = Vec<std::uint8_t>(3);
  auto w = Vec<std::int8_t>(-5);
  const Vec<std::int16_t> ones(1);
  Vec<std::int32_t> acc[8];
  for (auto& x : acc) x = Vec<std::int32_t>(0);
  for (std::int64_t i = 0; i < iters; ++i) {
    opaque(a);
    opaque(w);
    for (auto& x : acc) x = avx2::dot4_add(x, a, w, ones);
  }
  Vec<std::int32_t> s(0);
  for (auto& x : acc) s += x;
  volatile std::int32_t sink = xsimd::hadd(s);
  (void)sink;
  return 8.0 * 64.0 * static_cast<double>(iters);
}

inline double f32_fma_loop(std::int64_t iters) {
  using V = avx2::Vec<float>;
  V a(1.0001f), b(0.9999f), acc[10];
  for (auto& x : acc) x = V(0.f);
  for (std::int64_t i = 0; i < iters; ++i) {
    opaque(a);
    for (auto& x : acc) x = xsimd::fma(a, b, x);
  }
  V s(0.f);
  for (auto& x : acc) s += x;
  volatile float sink = xsimd::hadd(s);
  (void)sink;
  return 10.0 * 16.0 * static_cast<double>(iters);
}

/// Best of 5 runs of ~50 ms, summed over `threads` OpenMP threads; ops/s.
template <class Loop>
double measure(Loop loop, int threads) {
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    double ops = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : ops)
    ops += loop(std::int64_t{10'000'000});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, ops / s);
  }
  return best;
}
}  // namespace detail

/// Measured int8 peak (ops/s) of the vpmaddubsw/vpmaddwd/vpaddd mix.
inline double int8_peak_ops(int threads) {
  return detail::measure(detail::u8s8_loop, threads);
}
/// Measured fp32 FMA peak (flop/s).
inline double f32_peak_flops(int threads) {
  return detail::measure(detail::f32_fma_loop, threads);
}
#else
inline double int8_peak_ops(int) {
  return 0;
}
inline double f32_peak_flops(int) {
  return 0;
}
#endif

}  // namespace compressor::bench
