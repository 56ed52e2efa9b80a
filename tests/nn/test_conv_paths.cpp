// Conv2d on every ISA path the CPU supports (kernels/isa.hpp): a gradient
// check per path, and the SIMD paths (AVX2 and AVX-512 micro-kernels, each
// bit-exact against the scalar GEMM reference) give the same bits as each
// other for the forward output and every gradient.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "compressor/kernels/isa.hpp"
#include "compressor/nn.hpp"
#include "support/test_util.hpp"

using namespace compressor;
using namespace compressor::nn;
using compressor::testing::random_tensor;
namespace k = compressor::kernels;

namespace {
struct Case {
  std::int64_t in, out, kernel, stride, pad;
  bool bias;
  Shape x;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> c = {
      {3, 4, 3, 1, 1, true, Shape{2, 5, 6, 3}},       // explicit im2col forward
      {3, 2, 7, 2, 3, false, Shape{1, 9, 8, 3}},      // the stem: implicit, transposed dW
      {16, 3, 3, 1, 1, true, Shape{2, 4, 5, 16}},     // 48-float kernel rows
      {16, 2, 3, 2, 1, false, Shape{1, 5, 6, 16}},    // stride 2: GEMM + col2im input grad
      {32, 40, 3, 1, 1, false, Shape{1, 5, 4, 32}},   // a partial last zmm panel
      {32, 3, 1, 1, 0, true, Shape{1, 3, 4, 32}},     // pointwise
      {64, 33, 3, 1, 1, false, Shape{2, 3, 3, 64}}};  // K = 576, 2 k blocks on no path
  return c;
}

std::vector<float> flat(TensorView<const float> t) {
  return std::vector<float>(t.data(), t.data() + t.numel());
}
}  // namespace

TEST_CASE("Conv2d passes the gradient check on every ISA path", "[nn][gradcheck][isa]") {
  for (const k::Path p : k::supported_paths()) {
    const k::ScopedKernelPath on(p);
    std::uint64_t seed = 1;
    for (const Case& c : cases()) {
      Rng rng(seed);
      init::manual_seed(seed++);
      Conv2d conv(c.in, c.out, c.kernel, c.stride, c.pad, c.bias);
      const auto rep = gradcheck(conv, random_tensor(c.x, rng));
      INFO("path " << k::path_name(p) << ": Conv2d(" << c.in << ", " << c.out << ", " << c.kernel
                   << ", stride " << c.stride << ", pad " << c.pad << ") on " << c.x.str() << ": "
                   << rep.summary());
      CHECK(rep.ok);
      CHECK(rep.checked > 0);
    }
  }
}

TEST_CASE("Conv2d gives the same bits on every SIMD path", "[nn][isa]") {
  std::uint64_t seed = 11;
  for (const Case& c : cases()) {
    Rng rng(seed);
    const auto x = random_tensor(c.x, rng);
    std::vector<float> y0, dx0, dw0;
    k::Path first = k::Path::scalar;
    for (const k::Path p : k::supported_paths()) {
      if (!k::path_has_avx2(p)) continue;  // scalar: Eigen, another summation order
      const k::ScopedKernelPath on(p);
      init::manual_seed(seed);
      Conv2d conv(c.in, c.out, c.kernel, c.stride, c.pad, c.bias);
      const auto y = flat(conv.forward(x));
      Rng grng(seed + 100);
      const auto dy = random_tensor(conv.forward(x).shape(), grng);
      conv.zero_grad();
      const auto dx = flat(conv.backward(dy));
      std::vector<float> dw;
      for (auto& prm : conv.named_parameters()) {
        const auto g = flat(*prm.grad);
        dw.insert(dw.end(), g.begin(), g.end());
      }
      INFO("path " << k::path_name(p) << " against " << k::path_name(first) << ": Conv2d(" << c.in
                   << ", " << c.out << ", " << c.kernel << ", stride " << c.stride << ") on "
                   << c.x.str());
      if (y0.empty()) {
        y0 = y, dx0 = dx, dw0 = dw, first = p;
        continue;
      }
      CHECK(y == y0);
      CHECK(dx == dx0);
      CHECK(dw == dw0);
    }
    ++seed;
  }
}
