// fp32 FMA peak probe of the training benchmarks: a tight asm loop of
// independent vfmadd231ps on zmm (the AVX-512 GEMM micro-kernel's
// instruction) or ymm (the AVX2 one), 12 accumulators (more than FMA latency
// x issue width), so every fp32 GEMM figure can be stated as a fraction of
// this machine's measured peak. In asm so that no compiler can merge the
// products, and so that it needs no -m flags (it runs only where the CPU
// has the instructions: kernels::path_supported). Separate from
// benchmarks/kernels/peak_probe.hpp (the int8 probes).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "compressor/kernels/isa.hpp"

namespace compressor::bench {

#if COMPRESSOR_X86
namespace detail {

// clang-format off
#define COMPRESSOR_F32_PROBE_BODY(R)                                                   \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "0\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "1\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "2\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "3\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "4\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "5\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "6\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "7\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "8\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "9\n\t"                                     \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "10\n\t"                                    \
  "vfmadd231ps %%" R "14, %%" R "15, %%" R "11\n\t"

/// Flops of `iters` iterations of 12 independent zmm FMAs (32 flops each).
inline double f32_zmm_loop(std::int64_t iters) {
  if (iters <= 0) return 0;
  std::int64_t n = iters;
  asm volatile(
      "vpxor %%xmm14, %%xmm14, %%xmm14\n\t"
      "vpxor %%xmm15, %%xmm15, %%xmm15\n\t"
      "1:\n\t"
      COMPRESSOR_F32_PROBE_BODY("zmm")
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm14", "xmm15", "cc");
  return 12.0 * 32.0 * static_cast<double>(iters);
}

/// The same on ymm (16 flops each).
inline double f32_ymm_loop(std::int64_t iters) {
  if (iters <= 0) return 0;
  std::int64_t n = iters;
  asm volatile(
      "vpxor %%xmm14, %%xmm14, %%xmm14\n\t"
      "vpxor %%xmm15, %%xmm15, %%xmm15\n\t"
      "1:\n\t"
      COMPRESSOR_F32_PROBE_BODY("ymm")
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm14", "xmm15", "cc");
  return 12.0 * 16.0 * static_cast<double>(iters);
}
// clang-format on
#undef COMPRESSOR_F32_PROBE_BODY

}  // namespace detail

/// Best of 5 runs of ~20-50 ms on one thread: fp32 FMA flop/s of the widest
/// vector the path uses (zmm on avx512 and avx512_vnni, ymm on avx2 and
/// avx_vnni), 0 on scalar.
inline double f32_peak_flops(kernels::Path p) {
  if (!kernels::path_has_avx2(p)) return 0;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const double ops = kernels::path_has_avx512(p) ? detail::f32_zmm_loop(20'000'000)
                                                   : detail::f32_ymm_loop(20'000'000);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, ops / s);
  }
  return best;
}
#else
inline double f32_peak_flops(kernels::Path) {
  return 0;
}
#endif

}  // namespace compressor::bench
