// Peak probes: tight loops of the micro-kernels' instructions, so every kernel
// figure can be reported as a fraction of this machine's measured peak.
//  - int8: vpmaddubsw + vpmaddwd + vpaddd (64 ops each triple on a ymm), the
//    exact register-to-register mix of the u8s8 GEMM micro-kernel (4 x 2
//    distinct operand pairs, 8 accumulators), in asm so that no compiler can
//    merge the products;
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

/// One u8s8 multiply-add step of the micro-kernel: acc += madd(maddubs(a, w), ones).
// clang-format off
#define COMPRESSOR_PROBE_DOT(A, W, ACC)                \
  "vpmaddubsw %%ymm" #W ", %%ymm" #A ", %%ymm15\n\t"    \
  "vpmaddwd %%ymm6, %%ymm15, %%ymm15\n\t"               \
  "vpaddd %%ymm15, %%ymm" #ACC ", %%ymm" #ACC "\n\t"

/// int8 ops (2 per multiply-add) done by `iters` iterations of the 4 x 16
/// micro-kernel's register part: 4 broadcast activation registers (ymm0-3) x
/// 2 weight registers (ymm4-5), 8 distinct products into 8 accumulators
/// (ymm7-14), ones in ymm6. Written in asm because with intrinsics and
/// identical inputs per chain the compiler computes one product for all 8
/// accumulators (common subexpression), which once made this "peak" 8x too
/// high for the multiplies it claims to count.
inline double u8s8_loop(std::int64_t iters) {
  if (iters <= 0) return 0;
  std::int64_t n = iters;
  asm volatile(
      "vpcmpeqw %%ymm6, %%ymm6, %%ymm6\n\t"
      "vpsrlw $15, %%ymm6, %%ymm6\n\t"       // ones (int16)
      "vpxor %%xmm0, %%xmm0, %%xmm0\n\t"     // some activations and weights
      "vpsubw %%ymm6, %%ymm0, %%ymm0\n\t"
      "vpaddb %%ymm6, %%ymm0, %%ymm1\n\t"
      "vpaddb %%ymm6, %%ymm1, %%ymm2\n\t"
      "vpaddb %%ymm6, %%ymm2, %%ymm3\n\t"
      "vpsubb %%ymm6, %%ymm6, %%ymm4\n\t"
      "vpaddb %%ymm6, %%ymm6, %%ymm5\n\t"
      "1:\n\t"
      COMPRESSOR_PROBE_DOT(0, 4, 7) COMPRESSOR_PROBE_DOT(0, 5, 8)
      COMPRESSOR_PROBE_DOT(1, 4, 9) COMPRESSOR_PROBE_DOT(1, 5, 10)
      COMPRESSOR_PROBE_DOT(2, 4, 11) COMPRESSOR_PROBE_DOT(2, 5, 12)
      COMPRESSOR_PROBE_DOT(3, 4, 13) COMPRESSOR_PROBE_DOT(3, 5, 14)
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
  return 8.0 * 64.0 * static_cast<double>(iters);
}
// clang-format on
#undef COMPRESSOR_PROBE_DOT

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
