#define ISA_GEMM_FUNCTION isa_gemm_avx2_tu
#include "isa_tu.inc"
