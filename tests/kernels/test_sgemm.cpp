// The fp32 GEMM and the implicit-im2col convolution products, bit for bit
// against their scalar references (same fma order) on every ISA path the CPU
// supports, over size sweeps, strided and transposed operands, accumulation
// and thread counts.
#include <array>
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/conv_f32.hpp"
#include "compressor/kernels/isa.hpp"
#include "sgemm_tester.hpp"
#include "support/test_util.hpp"

using compressor::testing::edge_sizes;
using compressor::testing::SgemmTester;
namespace k = compressor::kernels;
using compressor::Rng;

namespace {

std::vector<float> random_vector(std::int64_t n, Rng& rng) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = static_cast<float>(rng.uniform(-1.0, 1.0));
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
}  // namespace

TEST_CASE("sgemm matches the reference over M, N and K", "[kernels][sgemm]") {
  for (auto m : edge_sizes(8)) SgemmTester().m(m).n(19).k(23).seed(m).test();
  for (auto n : edge_sizes(8)) SgemmTester().m(7).n(n).k(13).seed(n).test();
  // K past one k block (768, or 256 with a packed A) and past a row block.
  for (auto kk : edge_sizes(10)) SgemmTester().m(13).n(17).k(kk).seed(kk).test();
  for (auto kk : {255, 256, 257, 383, 384, 385, 767, 768, 769, 1537})
    SgemmTester().m(9).n(33).k(kk).transpose_a().seed(kk).test();
}

TEST_CASE("sgemm matches the reference with transposed, strided and accumulated operands",
          "[kernels][sgemm]") {
  std::uint64_t seed = 1;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool acc : {false, true})
        for (auto [m, n, kk] : {std::array<std::int64_t, 3>{1, 1, 1},
                                {6, 16, 8},
                                {5, 15, 31},
                                {37, 50, 129},
                                {200, 33, 70},
                                {1030, 20, 40}}) {
          SgemmTester()
              .m(m)
              .n(n)
              .k(kk)
              .transpose_a(ta)
              .transpose_b(tb)
              .accumulate(acc)
              .lda_pad(static_cast<std::int64_t>(seed % 3))
              .ldb_pad(static_cast<std::int64_t>(seed % 5))
              .ldc_pad(static_cast<std::int64_t>(seed % 4))
              .seed(seed)
              .test();
          ++seed;
        }
}

TEST_CASE("sgemm is the same on 1, 2 and 3 threads", "[kernels][sgemm]") {
  const int saved = compressor::num_threads();
  for (int t : {1, 2, 3}) {
    compressor::set_num_threads(t);
    SgemmTester().m(600).n(70).k(300).seed(5).test();  // row blocks
    SgemmTester().m(17).n(40).k(50).seed(7).test();    // fewer micro-tiles than 2 blocks per thread
    SgemmTester().m(5).n(20).k(9).seed(8).test();      // one partial micro-tile
    SgemmTester().m(40).n(300).k(900).transpose_a().accumulate().seed(6).test();  // panel groups
    SgemmTester().m(40).n(20).k(600).transpose_a().seed(9).test();  // fewer panels than threads
  }
  compressor::set_num_threads(saved);
}

TEST_CASE("sgemm with K = 0 clears or keeps C; bad sizes name them", "[kernels][sgemm]") {
  std::vector<float> c(6, 2.f);
  const float a = 1.f;
  k::sgemm(2, 3, 0, k::StridedMatrix::row_major(&a, 0), k::StridedMatrix::row_major(&a, 3),
           c.data(), 3, true);
  CHECK(c == std::vector<float>(6, 2.f));
  k::sgemm(2, 3, 0, k::StridedMatrix::row_major(&a, 0), k::StridedMatrix::row_major(&a, 3),
           c.data(), 3, false);
  CHECK(c == std::vector<float>(6, 0.f));
  CHECK_THROWS_WITH(k::sgemm(2, 3, 1, k::StridedMatrix::row_major(&a, 1),
                             k::StridedMatrix::row_major(&a, 3), c.data(), 2),
                    Catch::Contains("ldc=2"));
}

namespace {
struct ConvCase {
  std::int64_t n, h, w, c, o, k, s, p;
};

/// The padded input of a case and its implicit-im2col geometry.
k::Im2colGeometry geometry(const ConvCase& cs) {
  const std::int64_t hp = cs.h + 2 * cs.p, wp = cs.w + 2 * cs.p;
  return {cs.n, hp, wp, cs.c, cs.k, cs.k, cs.s, (hp - cs.k) / cs.s + 1, (wp - cs.k) / cs.s + 1};
}

void check_conv_case(const ConvCase& cs, std::uint64_t seed) {
  Rng rng(seed);
  const auto g = geometry(cs);
  const auto x = random_vector(g.n * g.hp * g.wp * g.c, rng);
  const auto w = random_vector(cs.o * g.cols(), rng);
  const auto dy = random_vector(g.rows() * cs.o, rng);
  std::vector<float> cols(static_cast<std::size_t>(g.rows() * g.cols()));
  k::ref::im2col_padded(x.data(), g, cols.data());

  std::vector<float> y_ref(static_cast<std::size_t>(g.rows() * cs.o));
  k::ref::sgemm(g.rows(), cs.o, g.cols(), k::StridedMatrix::row_major(cols.data(), g.cols()),
                k::StridedMatrix::transposed(w.data(), g.cols()), y_ref.data(), cs.o, false);
  const auto dw0 = random_vector(cs.o * g.cols(), rng);  // accumulated into
  auto dw_ref = dw0;
  k::ref::sgemm(cs.o, g.cols(), g.rows(), k::StridedMatrix::transposed(dy.data(), cs.o),
                k::StridedMatrix::row_major(cols.data(), g.cols()), dw_ref.data(), g.cols(), true);

  // Stride 1: the input gradient, a full convolution of dy (padded by
  // k - 1 - p) with the flipped kernel, against an explicit flip + im2col.
  const std::int64_t q = cs.k - 1 - cs.p;
  const k::Im2colGeometry gt{g.n, g.oh + 2 * q, g.ow + 2 * q, cs.o, cs.k, cs.k, 1, cs.h, cs.w};
  std::vector<float> dy_pad, dx_ref;
  if (cs.s == 1) {
    dy_pad = random_vector(gt.n * gt.hp * gt.wp * gt.c, rng);
    std::vector<float> wt(w.size()), dcols(static_cast<std::size_t>(gt.rows() * gt.cols()));
    k::ref::flip_weights(w.data(), cs.o, cs.k, cs.k, cs.c, wt.data());
    k::ref::im2col_padded(dy_pad.data(), gt, dcols.data());
    dx_ref.resize(static_cast<std::size_t>(gt.rows() * cs.c));
    k::ref::sgemm(gt.rows(), cs.c, gt.cols(), k::StridedMatrix::row_major(dcols.data(), gt.cols()),
                  k::StridedMatrix::transposed(wt.data(), gt.cols()), dx_ref.data(), cs.c, false);
  }

  for (const k::Path path : k::supported_paths()) {
    const k::ScopedKernelPath on(path);
    INFO("path " << k::path_name(path) << ": n=" << cs.n << " h=" << cs.h << " w=" << cs.w << " c="
                 << cs.c << " o=" << cs.o << " k=" << cs.k << " s=" << cs.s << " p=" << cs.p);
    std::vector<float> y(y_ref.size(), 3.f);
    k::conv2d_f32_forward(x.data(), g, w.data(), cs.o, y.data());
    CHECK(same_bits(y, y_ref));

    auto dw = dw0;
    k::conv2d_f32_weight_grad(x.data(), g, dy.data(), cs.o, dw.data());
    CHECK(same_bits(dw, dw_ref));

    if (cs.s != 1) continue;
    std::vector<float> dx(dx_ref.size(), 3.f);
    k::conv2d_f32_input_grad(dy_pad.data(), gt, w.data(), cs.c, dx.data());
    CHECK(same_bits(dx, dx_ref));
  }
}
}  // namespace

TEST_CASE("conv2d_f32 forward, weight and input gradients match the reference",
          "[kernels][sgemm]") {
  std::uint64_t seed = 10;
  for (const ConvCase& cs :
       {ConvCase{1, 5, 5, 16, 1, 3, 1, 1}, ConvCase{2, 7, 6, 16, 17, 3, 1, 1},
        ConvCase{1, 9, 9, 32, 16, 3, 2, 1}, ConvCase{2, 8, 7, 48, 33, 1, 1, 0},
        ConvCase{1, 9, 8, 16, 5, 1, 2, 0}, ConvCase{1, 10, 9, 16, 7, 5, 1, 2},
        ConvCase{3, 6, 6, 64, 20, 3, 1, 0}, ConvCase{1, 4, 4, 512, 9, 3, 1, 1},
        ConvCase{8, 14, 14, 16, 12, 3, 2, 1}, ConvCase{4, 12, 12, 32, 64, 3, 1, 1},
        ConvCase{2, 6, 5, 16, 3, 3, 1, 1}, ConvCase{1, 7, 7, 64, 48, 5, 1, 1},
        // Channels not a multiple of 16 (weight gradient taken transposed,
        // cols^T read in place): a ResNet stem, a CifarCnn first layer, 1
        // channel (3-float kernel rows) and 17 channels at stride 2.
        ConvCase{2, 20, 18, 3, 10, 7, 2, 3}, ConvCase{2, 9, 9, 3, 64, 3, 1, 1},
        ConvCase{1, 6, 7, 1, 5, 3, 1, 1}, ConvCase{1, 5, 5, 17, 7, 3, 2, 1},
        // 16 channels x 3 taps: kernel rows of 48 floats, whole 16-column
        // panels (B read in place on AVX2) but not whole 32-column ones
        // (taken transposed on AVX-512); 32 channels: in place on both; more
        // than 32 output channels with a partial last zmm panel.
        ConvCase{2, 9, 8, 16, 40, 3, 1, 1}, ConvCase{2, 7, 9, 32, 70, 3, 1, 1}})
    check_conv_case(cs, seed++);
}

TEST_CASE("conv2d_f32 is the same on 1 and 2 threads", "[kernels][sgemm]") {
  const int saved = compressor::num_threads();
  const ConvCase cs{6, 15, 13, 32, 40, 3, 1, 1};
  for (int t : {1, 2}) {
    compressor::set_num_threads(t);
    check_conv_case(cs, 99);
  }
  compressor::set_num_threads(saved);
}

TEST_CASE("conv2d_f32 rejects bad geometries naming them", "[kernels][sgemm]") {
  std::vector<float> buf(4096);
  // Output larger than the padded input allows.
  const k::Im2colGeometry bad{1, 4, 4, 16, 3, 3, 1, 3, 3};
  CHECK_THROWS_WITH(k::conv2d_f32_forward(buf.data(), bad, buf.data(), 1, buf.data()),
                    Catch::Contains("(1, 4, 4, 16)") && Catch::Contains("3x3"));
  // The input gradient is for stride-1 convolutions only.
  const k::Im2colGeometry s2{1, 5, 5, 16, 3, 3, 2, 2, 2};
  CHECK_THROWS_WITH(k::conv2d_f32_input_grad(buf.data(), s2, buf.data(), 16, buf.data()),
                    Catch::Contains("stride 1"));
}
