// Target attributes of the SIMD paths (kernels/isa.hpp): every function above
// the scalar path carries one, so it compiles to its instruction set whatever
// -m flags the includer uses, and no header body depends on those flags.
//
//   COMPRESSOR_TARGET_AVX2         AVX2 + FMA (+ F16C, BMI2): Path::avx2
//   COMPRESSOR_TARGET_AVX_VNNI     + AVX-VNNI (ymm vpdpbusd): Path::avx_vnni
//   COMPRESSOR_TARGET_AVX512       + AVX-512 F/BW/VL/DQ: Path::avx512
//   COMPRESSOR_TARGET_AVX512_VNNI  + AVX512-VNNI (zmm vpdpbusd): Path::avx512_vnni
//
// The *_INLINE forms add always_inline, for the small helpers a kernel calls:
// GCC and clang inline a function into a caller only when the callee's target
// is a subset of the caller's, so a helper of the AVX2 set may be used by
// every path, one of the AVX-512 set only by the AVX-512 paths. Lambdas do
// not inherit the enclosing function's target: kernels use none.
#pragma once

#include <immintrin.h>

#define COMPRESSOR_TARGET_AVX2 __attribute__((target("avx2,fma,f16c,bmi2")))
#define COMPRESSOR_TARGET_AVX_VNNI __attribute__((target("avx2,fma,f16c,bmi2,avxvnni")))
#define COMPRESSOR_TARGET_AVX512 \
  __attribute__((target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq")))
#define COMPRESSOR_TARGET_AVX512_VNNI \
  __attribute__((target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

#define COMPRESSOR_INLINE_AVX2 inline __attribute__((always_inline, target("avx2,fma,f16c,bmi2")))
#define COMPRESSOR_INLINE_AVX512       \
  inline __attribute__((always_inline, \
                        target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq")))
#define COMPRESSOR_INLINE_AVX_VNNI \
  inline __attribute__((always_inline, target("avx2,fma,f16c,bmi2,avxvnni")))
#define COMPRESSOR_INLINE_AVX512_VNNI \
  inline __attribute__((              \
      always_inline, target("avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

// Full unrolling of the loops over a tile's rows and panels, so that every
// accumulator is a register: GCC 12 unrolls a 12-row body of two vpdpbusd
// only partly and keeps the accumulator array on the stack otherwise. Clang
// unrolls these loops by itself (and its `#pragma unroll` warns, as an error
// under -Werror, where a loop with an early exit cannot be fully unrolled).
#if defined(__clang__)
#define COMPRESSOR_UNROLL
#else
#define COMPRESSOR_UNROLL _Pragma("GCC unroll 32")
#endif
