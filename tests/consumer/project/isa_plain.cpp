#define ISA_GEMM_FUNCTION isa_gemm_plain_tu
#include "isa_tu.inc"
