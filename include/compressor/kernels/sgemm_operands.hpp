// Operands of the fp32 GEMM (sgemm.hpp): a read-only float matrix given by a
// pointer and two strides, so one kernel serves A, A^T, B and B^T without
// copies (the convolution's forward, input-gradient and weight-gradient
// products).
#pragma once

#include <cstdint>

namespace compressor::kernels {

/// Element (i, j) at data[i * row_stride + j * col_stride].
struct StridedMatrix {
  const float* data = nullptr;
  std::int64_t row_stride = 0;
  std::int64_t col_stride = 1;

  /// A row-major matrix with leading dimension ld.
  static StridedMatrix row_major(const float* p, std::int64_t ld) { return {p, ld, 1}; }
  /// The transpose of a row-major matrix with leading dimension ld.
  static StridedMatrix transposed(const float* p, std::int64_t ld) { return {p, 1, ld}; }

  float at(std::int64_t i, std::int64_t j) const { return data[i * row_stride + j * col_stride]; }
};

}  // namespace compressor::kernels
