// The int8 GEMM, called from two translation units built with different -m
// flags (isa_avx2.cpp with -mavx2 -mfma, isa_plain.cpp with none). No header
// body of compressor depends on those flags (kernels/isa.hpp), so whichever
// copy of an inline function the linker keeps, both see the same kernels,
// the same path and the same results.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct IsaGemmResult {
  std::string path;                  // kernel_path() seen by the TU
  std::vector<std::int32_t> output;  // one GEMM per supported path, concatenated
};

IsaGemmResult isa_gemm_avx2_tu();
IsaGemmResult isa_gemm_plain_tu();
