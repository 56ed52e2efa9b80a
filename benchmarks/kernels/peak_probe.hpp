// Peak probes: tight asm loops of the micro-kernels' instructions on
// registers only, so every kernel figure can be reported as a fraction of
// this machine's measured peak for its path. In asm so that no compiler can
// merge the products (with intrinsics and identical inputs per chain the
// compiler computes one product for all accumulators, which once made a
// "peak" 8x too high), and in functions carrying their path's target
// attribute (the assembler needs no -m flags; the compiler needs the target
// to accept zmm16-31 in the clobbers). Each probe runs only on a CPU that has
// its instructions (peak_ops returns 0 otherwise).
//
//   u8s8_ymm_maddubs  vpmaddubsw + vpmaddwd(ones) + vpaddd, ymm (avx2; 64 ops each triple)
//   u8s8_zmm_maddubs  the same on zmm (avx512; 128 ops)
//   u8s8_ymm_vnni     {vex} vpdpbusd ymm (avx_vnni; 64 ops)
//   u8s8_zmm_vnni     vpdpbusd zmm (avx512_vnni; 128 ops)
//   f32_ymm_fma       vfmadd231ps ymm (16 flops)
//   f32_zmm_fma       vfmadd231ps zmm (32 flops)
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string_view>

#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/simd/target.hpp"

namespace compressor::bench {

enum class Probe {
  u8s8_ymm_maddubs,
  u8s8_zmm_maddubs,
  u8s8_ymm_vnni,
  u8s8_zmm_vnni,
  f32_ymm_fma,
  f32_zmm_fma
};

constexpr std::string_view probe_name(Probe p) {
  switch (p) {
    case Probe::u8s8_ymm_maddubs:
      return "u8s8_ymm_maddubs";
    case Probe::u8s8_zmm_maddubs:
      return "u8s8_zmm_maddubs";
    case Probe::u8s8_ymm_vnni:
      return "u8s8_ymm_vnni";
    case Probe::u8s8_zmm_vnni:
      return "u8s8_zmm_vnni";
    case Probe::f32_ymm_fma:
      return "f32_ymm_fma";
    case Probe::f32_zmm_fma:
      return "f32_zmm_fma";
  }
  return "?";
}

/// The path whose instructions a probe runs.
constexpr kernels::Path probe_path(Probe p) {
  switch (p) {
    case Probe::u8s8_ymm_maddubs:
    case Probe::f32_ymm_fma:
      return kernels::Path::avx2;
    case Probe::u8s8_ymm_vnni:
      return kernels::Path::avx_vnni;
    case Probe::u8s8_zmm_maddubs:
    case Probe::f32_zmm_fma:
      return kernels::Path::avx512;
    case Probe::u8s8_zmm_vnni:
      return kernels::Path::avx512_vnni;
  }
  return kernels::Path::scalar;
}

/// The int8 instruction stream of the GEMM kernels of `path`'s best int8
/// kernel (for narrow weights); scalar has none (its peak is reported as 0).
constexpr Probe int8_probe(kernels::Path path) {
  switch (path) {
    case kernels::Path::avx_vnni:
      return Probe::u8s8_ymm_vnni;
    case kernels::Path::avx512:
      return Probe::u8s8_zmm_maddubs;
    case kernels::Path::avx512_vnni:
      return Probe::u8s8_zmm_vnni;
    default:
      return Probe::u8s8_ymm_maddubs;
  }
}

namespace detail {

// clang-format off
#define COMPRESSOR_PROBE_DOT(R, A, W, ACC, T)                    \
  "vpmaddubsw %%" #R #W ", %%" #R #A ", %%" #R #T "\n\t"           \
  "vpmaddwd %%" #R "6, %%" #R #T ", %%" #R #T "\n\t"               \
  "vpaddd %%" #R #T ", %%" #R #ACC ", %%" #R #ACC "\n\t"

/// 4 broadcast activation registers (0-3) x 2 weight registers (4-5): 8
/// distinct products into 8 accumulators (7-14), ones in 6, product temps
/// 15 (ymm) or 16-23 (zmm). Returns the int8 ops done.
COMPRESSOR_TARGET_AVX2 inline double u8s8_ymm_maddubs(std::int64_t iters) {
  std::int64_t n = iters;
  asm volatile(
      "vpcmpeqw %%ymm6, %%ymm6, %%ymm6\n\t"
      "vpsrlw $15, %%ymm6, %%ymm6\n\t"
      "vpxor %%xmm0, %%xmm0, %%xmm0\n\t"
      "vpsubw %%ymm6, %%ymm0, %%ymm0\n\t"
      "vpaddb %%ymm6, %%ymm0, %%ymm1\n\t"
      "vpaddb %%ymm6, %%ymm1, %%ymm2\n\t"
      "vpaddb %%ymm6, %%ymm2, %%ymm3\n\t"
      "vpsubb %%ymm6, %%ymm6, %%ymm4\n\t"
      "vpaddb %%ymm6, %%ymm6, %%ymm5\n\t"
      "1:\n\t"
      COMPRESSOR_PROBE_DOT(ymm, 0, 4, 7, 15) COMPRESSOR_PROBE_DOT(ymm, 0, 5, 8, 15)
      COMPRESSOR_PROBE_DOT(ymm, 1, 4, 9, 15) COMPRESSOR_PROBE_DOT(ymm, 1, 5, 10, 15)
      COMPRESSOR_PROBE_DOT(ymm, 2, 4, 11, 15) COMPRESSOR_PROBE_DOT(ymm, 2, 5, 12, 15)
      COMPRESSOR_PROBE_DOT(ymm, 3, 4, 13, 15) COMPRESSOR_PROBE_DOT(ymm, 3, 5, 14, 15)
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
  return 8.0 * 64.0 * static_cast<double>(iters);
}

COMPRESSOR_TARGET_AVX512 inline double u8s8_zmm_maddubs(std::int64_t iters) {
  std::int64_t n = iters;
  asm volatile(
      "vpternlogd $0xff, %%zmm6, %%zmm6, %%zmm6\n\t"
      "vpsrlw $15, %%zmm6, %%zmm6\n\t"
      "vpxord %%zmm0, %%zmm0, %%zmm0\n\t"
      "vpsubw %%zmm6, %%zmm0, %%zmm0\n\t"
      "vpaddb %%zmm6, %%zmm0, %%zmm1\n\t"
      "vpaddb %%zmm6, %%zmm1, %%zmm2\n\t"
      "vpaddb %%zmm6, %%zmm2, %%zmm3\n\t"
      "vpsubb %%zmm6, %%zmm6, %%zmm4\n\t"
      "vpaddb %%zmm6, %%zmm6, %%zmm5\n\t"
      "1:\n\t"
      COMPRESSOR_PROBE_DOT(zmm, 0, 4, 7, 16) COMPRESSOR_PROBE_DOT(zmm, 0, 5, 8, 17)
      COMPRESSOR_PROBE_DOT(zmm, 1, 4, 9, 18) COMPRESSOR_PROBE_DOT(zmm, 1, 5, 10, 19)
      COMPRESSOR_PROBE_DOT(zmm, 2, 4, 11, 20) COMPRESSOR_PROBE_DOT(zmm, 2, 5, 12, 21)
      COMPRESSOR_PROBE_DOT(zmm, 3, 4, 13, 22) COMPRESSOR_PROBE_DOT(zmm, 3, 5, 14, 23)
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21",
        "xmm22", "xmm23", "cc");
  return 8.0 * 128.0 * static_cast<double>(iters);
}
#undef COMPRESSOR_PROBE_DOT

/// 2 activation (0-1) x 2 weight (2-3) registers into 12 accumulators
/// (4-15): VEX-encoded (AVX-VNNI) vpdpbusd can address only ymm0-15.
COMPRESSOR_TARGET_AVX_VNNI inline double u8s8_ymm_vnni(std::int64_t iters) {
  std::int64_t n = iters;
#define COMPRESSOR_PROBE_VNNI(A, W, ACC) "%{vex%} vpdpbusd %%ymm" #W ", %%ymm" #A ", %%ymm" #ACC "\n\t"
  asm volatile(
      "vpcmpeqb %%ymm0, %%ymm0, %%ymm0\n\t"
      "vpabsb %%ymm0, %%ymm1\n\t"
      "vpaddb %%ymm1, %%ymm1, %%ymm2\n\t"
      "vpsubb %%ymm1, %%ymm2, %%ymm3\n\t"
      "1:\n\t"
      COMPRESSOR_PROBE_VNNI(0, 2, 4) COMPRESSOR_PROBE_VNNI(0, 3, 5)
      COMPRESSOR_PROBE_VNNI(1, 2, 6) COMPRESSOR_PROBE_VNNI(1, 3, 7)
      COMPRESSOR_PROBE_VNNI(0, 2, 8) COMPRESSOR_PROBE_VNNI(0, 3, 9)
      COMPRESSOR_PROBE_VNNI(1, 2, 10) COMPRESSOR_PROBE_VNNI(1, 3, 11)
      COMPRESSOR_PROBE_VNNI(0, 2, 12) COMPRESSOR_PROBE_VNNI(0, 3, 13)
      COMPRESSOR_PROBE_VNNI(1, 2, 14) COMPRESSOR_PROBE_VNNI(1, 3, 15)
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
#undef COMPRESSOR_PROBE_VNNI
  return 12.0 * 64.0 * static_cast<double>(iters);
}

/// 2 activation (0-1) x 2 weight (2-3) registers into 24 accumulators (4-27).
COMPRESSOR_TARGET_AVX512_VNNI inline double u8s8_zmm_vnni(std::int64_t iters) {
  std::int64_t n = iters;
#define COMPRESSOR_PROBE_VNNI(A, W, ACC) "vpdpbusd %%zmm" #W ", %%zmm" #A ", %%zmm" #ACC "\n\t"
#define COMPRESSOR_PROBE_VNNI4(ACC0, ACC1, ACC2, ACC3) \
  COMPRESSOR_PROBE_VNNI(0, 2, ACC0) COMPRESSOR_PROBE_VNNI(0, 3, ACC1) \
  COMPRESSOR_PROBE_VNNI(1, 2, ACC2) COMPRESSOR_PROBE_VNNI(1, 3, ACC3)
  asm volatile(
      "vpternlogd $0xff, %%zmm0, %%zmm0, %%zmm0\n\t"
      "vpabsb %%zmm0, %%zmm1\n\t"
      "vpaddb %%zmm1, %%zmm1, %%zmm2\n\t"
      "vpsubb %%zmm1, %%zmm2, %%zmm3\n\t"
      "1:\n\t"
      COMPRESSOR_PROBE_VNNI4(4, 5, 6, 7) COMPRESSOR_PROBE_VNNI4(8, 9, 10, 11)
      COMPRESSOR_PROBE_VNNI4(12, 13, 14, 15) COMPRESSOR_PROBE_VNNI4(16, 17, 18, 19)
      COMPRESSOR_PROBE_VNNI4(20, 21, 22, 23) COMPRESSOR_PROBE_VNNI4(24, 25, 26, 27)
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",
        "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "cc");
#undef COMPRESSOR_PROBE_VNNI4
#undef COMPRESSOR_PROBE_VNNI
  return 24.0 * 128.0 * static_cast<double>(iters);
}

#define COMPRESSOR_PROBE_FMA(R, ACC) "vfmadd231ps %%" #R "1, %%" #R "0, %%" #R #ACC "\n\t"
/// 12 independent FMA chains (accumulators 2-13) on two constant registers.
COMPRESSOR_TARGET_AVX2 inline double f32_ymm_fma(std::int64_t iters) {
  std::int64_t n = iters;
  asm volatile(
      "vxorps %%xmm0, %%xmm0, %%xmm0\n\t"
      "vxorps %%xmm1, %%xmm1, %%xmm1\n\t"
      "1:\n\t"
      COMPRESSOR_PROBE_FMA(ymm, 2) COMPRESSOR_PROBE_FMA(ymm, 3) COMPRESSOR_PROBE_FMA(ymm, 4)
      COMPRESSOR_PROBE_FMA(ymm, 5) COMPRESSOR_PROBE_FMA(ymm, 6) COMPRESSOR_PROBE_FMA(ymm, 7)
      COMPRESSOR_PROBE_FMA(ymm, 8) COMPRESSOR_PROBE_FMA(ymm, 9) COMPRESSOR_PROBE_FMA(ymm, 10)
      COMPRESSOR_PROBE_FMA(ymm, 11) COMPRESSOR_PROBE_FMA(ymm, 12) COMPRESSOR_PROBE_FMA(ymm, 13)
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "cc");
  return 12.0 * 16.0 * static_cast<double>(iters);
}

COMPRESSOR_TARGET_AVX512 inline double f32_zmm_fma(std::int64_t iters) {
  std::int64_t n = iters;
  asm volatile(
      "vxorps %%xmm0, %%xmm0, %%xmm0\n\t"
      "vxorps %%xmm1, %%xmm1, %%xmm1\n\t"
      "1:\n\t"
      COMPRESSOR_PROBE_FMA(zmm, 2) COMPRESSOR_PROBE_FMA(zmm, 3) COMPRESSOR_PROBE_FMA(zmm, 4)
      COMPRESSOR_PROBE_FMA(zmm, 5) COMPRESSOR_PROBE_FMA(zmm, 6) COMPRESSOR_PROBE_FMA(zmm, 7)
      COMPRESSOR_PROBE_FMA(zmm, 8) COMPRESSOR_PROBE_FMA(zmm, 9) COMPRESSOR_PROBE_FMA(zmm, 10)
      COMPRESSOR_PROBE_FMA(zmm, 11) COMPRESSOR_PROBE_FMA(zmm, 12) COMPRESSOR_PROBE_FMA(zmm, 13)
      "dec %0\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "cc");
  return 12.0 * 32.0 * static_cast<double>(iters);
}
#undef COMPRESSOR_PROBE_FMA
// clang-format on

inline double run_probe(Probe p, std::int64_t iters) {
  switch (p) {
    case Probe::u8s8_ymm_maddubs:
      return u8s8_ymm_maddubs(iters);
    case Probe::u8s8_zmm_maddubs:
      return u8s8_zmm_maddubs(iters);
    case Probe::u8s8_ymm_vnni:
      return u8s8_ymm_vnni(iters);
    case Probe::u8s8_zmm_vnni:
      return u8s8_zmm_vnni(iters);
    case Probe::f32_ymm_fma:
      return f32_ymm_fma(iters);
    case Probe::f32_zmm_fma:
      return f32_zmm_fma(iters);
  }
  return 0;
}

}  // namespace detail

/// Measured peak (ops/s) of a probe, summed over `threads` OpenMP threads:
/// best of 5 runs of ~10M loop iterations; 0 where the CPU lacks the
/// instructions.
inline double peak_ops(Probe p, int threads) {
  if (!kernels::path_supported(probe_path(p))) return 0;
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    double ops = 0;
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : ops)
    ops += detail::run_probe(p, std::int64_t{4'000'000});
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, ops / s);
  }
  return best;
}

}  // namespace compressor::bench
