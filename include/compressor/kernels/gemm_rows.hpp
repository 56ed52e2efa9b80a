// Where the int8 GEMM finds the rows of its uint8 A matrix: at a fixed stride
// (a plain matrix, an im2col matrix, a 1x1 stride-1 convolution's input) or
// through a table of row pointers (a 1x1 strided convolution's input pixels,
// read in place instead of gathered into a copy).
#pragma once

#include <cstdint>

namespace compressor::kernels {

/// Row m at a + m * lda.
struct StridedRowsU8 {
  const std::uint8_t* a;
  std::int64_t lda;
  const std::uint8_t* row(std::int64_t m) const { return a + m * lda; }
};

/// Row m at rows[m].
struct IndirectRowsU8 {
  const std::uint8_t* const* rows;
  const std::uint8_t* row(std::int64_t m) const { return rows[m]; }
};

}  // namespace compressor::kernels
