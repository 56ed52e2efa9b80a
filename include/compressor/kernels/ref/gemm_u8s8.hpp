// Scalar reference of the u8 x s8 -> s32 GEMM: the oracle of the SIMD GEMM.
// C[m, n] = epi(sum_k (A[m, k] - a_zero_point) * W[n, k] + bias[n]), with A
// row-major (M x K, row stride lda) and W row-major (N x K, row stride ldw),
// i.e. OHWI conv weights flattened. Accepts the full int8 weight range.
#pragma once

#include <concepts>
#include <cstdint>

#include "compressor/kernels/epilogue.hpp"

namespace compressor::kernels::ref {

template <GemmEpilogue Epi>
void gemm_u8s8(std::int64_t M, std::int64_t N, std::int64_t K, const std::uint8_t* A,
               std::int64_t lda, std::int32_t a_zero_point, const std::int8_t* W, std::int64_t ldw,
               const Epi& epi, typename Epi::Out* C, std::int64_t ldc) {
  for (std::int64_t m = 0; m < M; ++m) {
    for (std::int64_t n = 0; n < N; ++n) {
      std::int32_t acc = epi.bias ? epi.bias[n] : 0;
      for (std::int64_t k = 0; k < K; ++k)
        acc += (static_cast<std::int32_t>(A[m * lda + k]) - a_zero_point) *
               static_cast<std::int32_t>(W[n * ldw + k]);
      C[m * ldc + n] = epi.apply(acc, n);
    }
  }
}

}  // namespace compressor::kernels::ref
