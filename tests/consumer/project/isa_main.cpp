// Links two translation units that include the int8 GEMM with different -m
// flags and checks that they agree: same path, same outputs on every path
// (and every path equal to the first, the scalar one).
#include <cstdio>

#include "isa_gemm.hpp"

int main() {
  const IsaGemmResult a = isa_gemm_avx2_tu(), b = isa_gemm_plain_tu();
  if (a.path != b.path) {
    std::printf("consumer_isa: the TUs see different paths: %s vs %s\n", a.path.c_str(),
                b.path.c_str());
    return 1;
  }
  if (a.output != b.output || a.output.empty()) {
    std::printf("consumer_isa: the TUs compute different GEMMs\n");
    return 1;
  }
  const std::size_t n = 23 * 37, paths = a.output.size() / n;
  for (std::size_t p = 1; p < paths; ++p)
    for (std::size_t i = 0; i < n; ++i)
      if (a.output[p * n + i] != a.output[i]) {
        std::printf("consumer_isa: path %zu differs from the scalar path at %zu\n", p, i);
        return 1;
      }
  std::printf("consumer_isa: path %s, %zu paths agree in both translation units\n", a.path.c_str(),
              paths);
  return 0;
}
