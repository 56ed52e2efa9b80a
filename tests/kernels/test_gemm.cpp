#include <catch2/catch.hpp>
#include <limits>
#include <vector>

#include "compressor/core/threading.hpp"
#include "gemm_tester.hpp"
#include "support/test_util.hpp"

using compressor::testing::edge_sizes;
using compressor::testing::GemmTester;
namespace k = compressor::kernels;

TEST_CASE("gemm_u8s8 matches the reference over M", "[kernels][gemm]") {
  for (auto m : edge_sizes(8)) GemmTester().m(m).n(19).k(23).seed(m).test_s32();
  for (auto m : edge_sizes(7)) GemmTester().m(m).n(16).k(64).seed(m).test_requant();
}

TEST_CASE("gemm_u8s8 matches the reference over N", "[kernels][gemm]") {
  for (auto n : edge_sizes(8)) GemmTester().m(5).n(n).k(13).seed(n).test_s32();
  for (auto n : edge_sizes(7)) GemmTester().m(4).n(n).k(36).seed(n).test_requant();
}

TEST_CASE("gemm_u8s8 matches the reference over K", "[kernels][gemm]") {
  for (auto kk : edge_sizes(10)) GemmTester().m(6).n(17).k(kk).seed(kk).test_s32();
  for (auto kk : edge_sizes(9)) GemmTester().m(5).n(18).k(kk).seed(kk).test_requant();
  for (auto kk : edge_sizes(8)) GemmTester().m(3).n(33).k(kk).seed(kk).test_dequant();
}

TEST_CASE("gemm_u8s8 matches the reference over random shapes and seeds", "[kernels][gemm]") {
  compressor::Rng rng(42);
  for (int i = 0; i < 60; ++i) {
    const auto m = 1 + static_cast<std::int64_t>(rng.below(70));
    const auto n = 1 + static_cast<std::int64_t>(rng.below(70));
    const auto kk = 1 + static_cast<std::int64_t>(rng.below(300));
    const auto za = static_cast<std::int32_t>(rng.below(256));
    GemmTester t;
    t.m(m).n(n).k(kk).a_zero_point(za).seed(static_cast<std::uint64_t>(i));
    t.test_s32();
    t.test_requant();
    t.relu().test_requant();
    t.test_dequant();
  }
}

TEST_CASE("gemm_u8s8 with unpadded rows (lda == K, K % 4 != 0) reads nothing past A",
          "[kernels][gemm]") {
  // The kernel reads whole groups of 4 k; the last rows, whose group would
  // run past the end of A, go through a zero-padded copy. ASan checks the
  // reads (GemmTester allocates exactly (M - 1) * lda + K bytes).
  for (std::int64_t kk : {1, 2, 3, 5, 6, 7, 9, 27, 147})
    for (std::int64_t m = 1; m <= 9; ++m) {
      GemmTester t;
      t.m(m).n(20).k(kk).a_zero_point(255).extreme().seed(static_cast<std::uint64_t>(m * kk));
      t.test_s32();
      t.relu().test_requant();
    }
}

TEST_CASE("gemm_u8s8 is the same on 1, 2 and 3 threads (row and panel splits)", "[kernels][gemm]") {
  const int saved = compressor::num_threads();
  const k::ScopedThreadGrain split_all(1);  // small shapes threaded too
  for (int threads : {1, 2, 3}) {
    compressor::set_num_threads(threads);
    GemmTester().m(3).n(200).k(70).seed(5).test_requant();   // splits weight panels
    GemmTester().m(301).n(20).k(50).seed(6).test_requant();  // splits rows, several units
    GemmTester().m(2000).n(33).k(147).seed(7).test_s32();    // units of whole row blocks
  }
  compressor::set_num_threads(saved);
}

TEST_CASE("gemm_u8s8 copies the row blocks of a large A first", "[kernels][gemm]") {
  // Above gemm_copy_min_bytes() of A (8 MiB by default) and with more than
  // one panel group, each row block of A is copied into a buffer of its
  // thread, zero-padded to whole k groups, before the panels sweep it; C's
  // rows follow the block. Run here on a small A with the size lowered.
  const std::int64_t K = 1025;  // K % 4 == 1: the last rows are not padded in A
  const std::vector<std::int8_t> w(static_cast<std::size_t>(48 * K), 1);
  const k::PackedWeightsU8S8 n48(w.data(), 48, K, K), n32(w.data(), 32, K, K);
  using k::detail::gemm_copies_a;
  const std::int64_t big = k::detail::kGemmCopyMinBytes / K + 1;
  CHECK(gemm_copies_a<k::RequantOut>(big, n48));
  CHECK_FALSE(gemm_copies_a<k::RequantOut>(big - 2, n48));  // below the size
  CHECK_FALSE(gemm_copies_a<k::RequantOut>(big, n32));      // one panel group
  CHECK_FALSE(gemm_copies_a<k::RowMax4<k::RequantOut>>(big, n48));
  const k::ScopedGemmCopyMinBytes small(64 * K);
  // Rows of several row blocks (row_block(1028, 12) = 120 rows), the last
  // one partial.
  const std::int64_t M = 3 * k::GemmU8S8Tiles::row_block(1028, 12) + 37;
  CHECK(gemm_copies_a<k::RequantOut>(M, n48));
  const int saved = compressor::num_threads();
  const k::ScopedThreadGrain split_all(1);  // and 2 threads' units of rows or panels
  for (int threads : {1, 2}) {
    compressor::set_num_threads(threads);
    GemmTester().m(M).n(48).k(K).a_zero_point(3).seed(11).test_requant();
    GemmTester().m(M).n(70).k(K).seed(12).test_s32();
    // Few rows, many panels: the split by weight panels, each unit copying.
    const k::ScopedGemmCopyMinBytes any(1);
    GemmTester().m(40).n(200).k(K).seed(13).test_requant();
  }
  compressor::set_num_threads(saved);
}

TEST_CASE("small int8 kernel calls run on fewer threads", "[kernels][gemm]") {
  const int saved = compressor::num_threads();
  compressor::set_num_threads(3);
  const std::int64_t g = k::detail::kMinMacsPerThread;
  CHECK(k::detail::threads_for_macs(0) == 1);
  CHECK(k::detail::threads_for_macs(2 * g - 1) == 1);
  CHECK(k::detail::threads_for_macs(2 * g) == 2);
  CHECK(k::detail::threads_for_macs(100 * g) == 3);
  {
    const k::ScopedThreadGrain split_all(1);
    CHECK(k::detail::threads_for_macs(2) == 2);
    CHECK(k::detail::threads_for_macs(0) == 1);
  }
  CHECK(k::detail::threads_for_macs(2) == 1);  // the grain is back
  compressor::set_num_threads(saved);
}

TEST_CASE("the int8 GEMM and conv choose their thread split", "[kernels][gemm]") {
  const std::vector<std::int8_t> w(static_cast<std::size_t>(256 * 64), 1);
  const k::PackedWeightsU8S8 n256(w.data(), 256, 64, 64);  // 16 panels
  const k::PackedWeightsU8S8 n16(w.data(), 16, 64, 64);    // 1 panel
  constexpr auto zmm = k::GemmKernel::zmm_vnni;            // 12-row tiles
  using k::detail::conv_splits_rows;
  using k::detail::gemm_splits_rows;
  // One thread: the smaller operand's way.
  CHECK(gemm_splits_rows(300, n256, zmm, 1));
  CHECK_FALSE(gemm_splits_rows(64, n256, zmm, 1));
  CHECK_FALSE(conv_splits_rows(64, n256, zmm, 1));
  // Two threads: the GEMM splits the larger operand...
  CHECK(gemm_splits_rows(256, n256, zmm, 2));
  CHECK_FALSE(gemm_splits_rows(64, n256, zmm, 2));
  // ...the conv rows from two 12-row tiles per thread: 37-48 rows are 4.
  CHECK(conv_splits_rows(256, n256, zmm, 2));
  CHECK(conv_splits_rows(64, n256, zmm, 2));
  CHECK(conv_splits_rows(37, n256, zmm, 2));
  CHECK_FALSE(conv_splits_rows(36, n256, zmm, 2));
  CHECK(conv_splits_rows(16, n256, k::GemmKernel::ymm_maddubs, 2));  // 4-row tiles
  // Fewer panels than threads: rows, however few.
  CHECK(gemm_splits_rows(3, n16, zmm, 2));
  CHECK(conv_splits_rows(3, n16, zmm, 2));
}

TEST_CASE("the int8 GEMM's row units keep both threads busy to the end", "[kernels][gemm]") {
  const std::vector<std::int8_t> w(static_cast<std::size_t>(256 * 2304), 1);
  const k::PackedWeightsU8S8 b(w.data(), 256, 2304, 2304);
  constexpr auto zmm = k::GemmKernel::zmm_vnni;  // 12-row tiles
  using k::detail::gemm_unit_rows;
  const std::int64_t block = k::GemmU8S8Tiles::row_block(2304, 12);  // 48 rows
  CHECK(gemm_unit_rows(392, b, zmm, 1) == block);                    // one thread: L2 blocks
  // 33 tiles on 2 threads: units of 3 tiles would end 6 against 5.
  CHECK(gemm_unit_rows(392, b, zmm, 2) == 12);
  // 36 tiles: 3 tiles a unit, 6 units per thread, no idle round.
  CHECK(gemm_unit_rows(432, b, zmm, 2) == 36);
  // Many tiles: at most one L2 block.
  CHECK(gemm_unit_rows(100000, b, zmm, 2) == block);
}

TEST_CASE("gemm_u8s8 handles strided A and C", "[kernels][gemm]") {
  for (std::int64_t kk : {1, 3, 4, 5, 31, 64}) {
    GemmTester t;
    t.m(9).n(21).k(kk).lda(kk + 7).ldc(29).seed(static_cast<std::uint64_t>(kk));
    t.test_s32();
    t.test_requant();
    t.test_dequant();
  }
}

TEST_CASE("gemm_u8s8 is exact at extreme values: no int16 saturation", "[kernels][gemm]") {
  // Every activation 0 or 255, every weight at an end of the grid (-64 / 64
  // or -127 / 127), both activation zero points' ends, large K.
  for (auto grid : {k::WeightGrid::narrow, k::WeightGrid::full})
    for (std::int32_t za : {0, 255, 128}) {
      for (auto kk : {2, 4, 7, 64, 1023, 4608}) {
        GemmTester t;
        t.m(7).n(19).k(kk).a_zero_point(za).extreme().grid(grid);
        t.seed(static_cast<std::uint64_t>(kk + za));
        t.test_s32();
        t.multiplier_scale(8.f).test_requant();
        t.out_zero_point(0).relu().test_requant();
        t.out_zero_point(255).test_requant();
      }
    }
}

TEST_CASE("gemm_u8s8 on the full weight grid matches the reference on every path",
          "[kernels][gemm]") {
  // The vpmaddubsw paths run these weights through the widening kernel.
  const auto full = k::WeightGrid::full;
  for (auto m : edge_sizes(6)) GemmTester().m(m).n(21).k(37).grid(full).seed(m).test_s32();
  for (auto n : edge_sizes(6)) GemmTester().m(7).n(n).k(29).grid(full).seed(n).test_requant();
  for (auto kk : edge_sizes(9)) GemmTester().m(13).n(35).k(kk).grid(full).seed(kk).test_s32();
  compressor::Rng rng(43);
  for (int i = 0; i < 30; ++i) {
    const auto m = 1 + static_cast<std::int64_t>(rng.below(70));
    const auto n = 1 + static_cast<std::int64_t>(rng.below(70));
    const auto kk = 1 + static_cast<std::int64_t>(rng.below(300));
    const auto za = static_cast<std::int32_t>(rng.below(256));
    GemmTester t;
    t.m(m).n(n).k(kk).a_zero_point(za).grid(full).seed(static_cast<std::uint64_t>(i));
    t.test_s32();
    t.relu().test_requant();
    t.test_dequant();
  }
}

TEST_CASE("gemm_u8s8 picks a vpmaddubsw kernel only for weights on the narrow grid",
          "[kernels][gemm]") {
  std::vector<std::int8_t> w(64, 64);
  const k::PackedWeightsU8S8 narrow(w.data(), 4, 16, 16);
  const k::PackedWeightsU8S8 small_full(w.data(), 4, 16, 16, k::WeightGrid::full);
  w[3] = -65;
  const k::PackedWeightsU8S8 full(w.data(), 4, 16, 16, k::WeightGrid::full);
  CHECK(narrow.fits_narrow());
  CHECK(small_full.fits_narrow());
  CHECK(small_full.grid() == k::WeightGrid::full);
  CHECK_FALSE(full.fits_narrow());
  CHECK(k::gemm_kernel(k::Path::avx2, narrow) == k::GemmKernel::ymm_maddubs);
  CHECK(k::gemm_kernel(k::Path::avx2, small_full) == k::GemmKernel::ymm_maddubs);
  CHECK(k::gemm_kernel(k::Path::avx2, full) == k::GemmKernel::ymm_widen);
  CHECK(k::gemm_kernel(k::Path::avx512, narrow) == k::GemmKernel::zmm_maddubs);
  CHECK(k::gemm_kernel(k::Path::avx512, full) == k::GemmKernel::zmm_widen);
  CHECK(k::gemm_kernel(k::Path::avx_vnni, full) == k::GemmKernel::ymm_vnni);
  CHECK(k::gemm_kernel(k::Path::avx512_vnni, full) == k::GemmKernel::zmm_vnni);
  CHECK(k::gemm_kernel(k::Path::scalar, full) == k::GemmKernel::portable);
}

TEST_CASE("gemm_u8s8 requantizes by the rule at huge, infinite and NaN multipliers",
          "[kernels][gemm]") {
  // The SIMD epilogue clamps in the integer domain after rounding; these
  // multipliers push products past int16 and int32 and into inf / NaN, where
  // the rule still says: clamp to [qmin, qmax], NaN -> qmin.
  const float inf = std::numeric_limits<float>::infinity();
  for (float m : {1e-3f, 1.f, 300.f, 1e6f, 3e9f, 1e30f, inf, -1e6f, -inf,
                  std::numeric_limits<float>::quiet_NaN()})
    for (std::int32_t zo : {0, 77, 255}) {
      GemmTester t;
      t.m(9).n(21).k(37).a_zero_point(200).out_zero_point(zo).multiplier(m);
      t.test_requant();
      t.relu().test_requant();
      t.test_dequant();
    }
}

TEST_CASE("gemm_u8s8 worst-case pairs equal the exact integer sums", "[kernels][gemm]") {
  // All four sign/magnitude combinations of a k-pair at the extremes of both
  // grids, on every path, checked against sums computed here, not only
  // against the reference.
  for (auto grid : {k::WeightGrid::narrow, k::WeightGrid::full})
    for (int a : {0, 255})
      for (int w : {k::weight_min(grid), k::weight_max(grid)})
        for (k::Path path : k::supported_paths()) {
          k::ScopedKernelPath scope(path);
          const std::int64_t K = 64;
          std::vector<std::uint8_t> A(static_cast<std::size_t>(K), static_cast<std::uint8_t>(a));
          std::vector<std::int8_t> W(static_cast<std::size_t>(16 * K), static_cast<std::int8_t>(w));
          k::PackedWeightsU8S8 p(W.data(), 16, K, K, grid);
          std::vector<std::int32_t> C(16);
          k::gemm_u8s8_s32(1, A.data(), K, 0, p, nullptr, C.data(), 16);
          INFO("path " << k::path_name(path) << " a " << a << " w " << w);
          for (auto v : C) CHECK(v == a * w * K);
        }
}

TEST_CASE("PackedWeightsU8S8 rejects weights outside its grid", "[kernels][gemm]") {
  std::vector<std::int8_t> w(32, 1);
  w[5] = -65;
  CHECK_THROWS_WITH(k::PackedWeightsU8S8(w.data(), 2, 16, 16),
                    Catch::Contains("weight [0, 5] = -65") && Catch::Contains("narrow"));
  CHECK_NOTHROW(k::PackedWeightsU8S8(w.data(), 2, 16, 16, k::WeightGrid::full));
  w[5] = 65;
  CHECK_THROWS_AS(k::PackedWeightsU8S8(w.data(), 2, 16, 16), compressor::ValueError);
  w[5] = -64;
  w[6] = 64;
  CHECK_NOTHROW(k::PackedWeightsU8S8(w.data(), 2, 16, 16));
  w[6] = 127;
  w[7] = -127;
  CHECK_NOTHROW(k::PackedWeightsU8S8(w.data(), 2, 16, 16, k::WeightGrid::full));
  w[7] = -128;
  CHECK_THROWS_WITH(k::PackedWeightsU8S8(w.data(), 2, 16, 16, k::WeightGrid::full),
                    Catch::Contains("-128") && Catch::Contains("full weight grid [-127, 127]"));
  CHECK_THROWS_AS(k::PackedWeightsU8S8(w.data(), 2, 16, 8), compressor::ShapeError);
}

TEST_CASE("gemm_u8s8 rejects bad strides and zero points naming them", "[kernels][gemm]") {
  std::vector<std::int8_t> w(64, 1);
  k::PackedWeightsU8S8 p(w.data(), 4, 16, 16);
  std::vector<std::uint8_t> a(64);
  std::vector<std::int32_t> c(64);
  CHECK_THROWS_WITH(k::gemm_u8s8_s32(2, a.data(), 8, 0, p, nullptr, c.data(), 4),
                    Catch::Contains("row stride 8"));
  CHECK_THROWS_AS(k::gemm_u8s8_s32(2, a.data(), 16, 256, p, nullptr, c.data(), 4),
                  compressor::ValueError);
}
