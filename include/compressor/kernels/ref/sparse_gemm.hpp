// Scalar references of the sparse-weight x dense-activation kernels.
//  fp32: y[m, n] = relu?((s_even + s_odd) + bias[n]) where s_even / s_odd are
//        fma-accumulated over the even / odd positions of row n's nonzeros in
//        CSR order, the exact order the SIMD kernel uses, so the two agree bit
//        for bit.
//  int8: the u8s8 integer sum (order-free), then the dense kernels' epilogue
//        (with RowMax4, of the max of each 4 rows' sums).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "compressor/kernels/epilogue.hpp"
#include "compressor/kernels/sparse_weights.hpp"

namespace compressor::kernels::ref {

inline void sparse_gemm_f32(std::int64_t M, const float* X, std::int64_t ldx,
                            const SparseWeightsF32& W, const float* bias, bool relu, float* Y,
                            std::int64_t ldy) {
  const std::int32_t* cols = W.cols();
  const float* values = W.values();
  for (std::int64_t m = 0; m < M; ++m)
    for (std::int64_t n = 0; n < W.n(); ++n) {
      float s[2] = {0.f, 0.f};
      const std::int64_t b = W.row_begin(n), e = W.row_begin(n + 1);
      const float* x = X + m * ldx;
      for (std::int64_t j = b; j < e; ++j)
        s[(j - b) % 2] = std::fma(values[j], x[cols[j]], s[(j - b) % 2]);
      float y = s[0] + s[1];
      if (bias) y += bias[n];
      Y[m * ldy + n] = relu ? (y > 0.f ? y : 0.f) : y;
    }
}

template <GemmEpilogue Epi>
void sparse_gemm_u8s8(std::int64_t M, const SparseRowsU8& X, std::int32_t x_zero_point,
                      const SparseWeightsS8& W, const Epi& epi, typename Epi::Out* Y,
                      std::int64_t ldy) {
  const std::int32_t* cols = W.cols();
  const std::int8_t* values = W.values();
  constexpr std::int64_t P = gemm_rows_per_output<Epi>;  // RowMax4: the max of 4 rows
  for (std::int64_t m = 0; m < M / P; ++m)
    for (std::int64_t n = 0; n < W.n(); ++n) {
      const std::int64_t b = W.row_begin(n), e = W.row_begin(n + 1);
      std::int32_t best = 0;
      for (std::int64_t r = 0; r < P; ++r) {
        std::int32_t acc = epi.bias ? epi.bias[n] : 0;
        const std::uint8_t* x = X.row(m * P + r);
        for (std::int64_t j = b; j < e; ++j)
          acc += (static_cast<std::int32_t>(x[cols[j]]) - x_zero_point) * values[j];
        best = r == 0 ? acc : std::max(best, acc);
      }
      Y[m * ldy + n] = epi.apply(best, n);
    }
}

/// The rows of X at stride ldx.
template <GemmEpilogue Epi>
void sparse_gemm_u8s8(std::int64_t M, const std::uint8_t* X, std::int64_t ldx,
                      std::int32_t x_zero_point, const SparseWeightsS8& W, const Epi& epi,
                      typename Epi::Out* Y, std::int64_t ldy) {
  sparse_gemm_u8s8(M, SparseRowsU8{X, ldx, nullptr}, x_zero_point, W, epi, Y, ldy);
}

}  // namespace compressor::kernels::ref
