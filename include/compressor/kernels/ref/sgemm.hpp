// Scalar reference of the fp32 GEMM: the oracle of the SIMD sgemm.
// C[i, j] = (accumulate ? C[i, j] : 0) + sum_k A[i, k] * B[k, j], summed in
// increasing k with one fused multiply-add per term (std::fma), the order and
// rounding of the SIMD kernel, so the two agree bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

#include "compressor/kernels/sgemm_operands.hpp"

namespace compressor::kernels::ref {

inline void sgemm(std::int64_t M, std::int64_t N, std::int64_t K, StridedMatrix A, StridedMatrix B,
                  float* C, std::int64_t ldc, bool accumulate) {
  for (std::int64_t i = 0; i < M; ++i)
    for (std::int64_t j = 0; j < N; ++j) {
      float s = accumulate ? C[i * ldc + j] : 0.f;
      for (std::int64_t k = 0; k < K; ++k) s = std::fma(A.at(i, k), B.at(k, j), s);
      C[i * ldc + j] = s;
    }
}

}  // namespace compressor::kernels::ref
