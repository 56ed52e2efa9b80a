#include <catch2/catch.hpp>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/im2col.hpp"
#include "conv_tester.hpp"

using compressor::testing::ConvTester;
namespace k = compressor::kernels;

TEST_CASE("conv_u8s8 equals the reference over small geometries", "[kernels][conv]") {
  std::uint64_t seed = 0;
  for (std::int64_t ks : {1, 2, 3, 5, 7})
    for (std::int64_t stride : {1, 2, 3})
      for (std::int64_t pad = 0; pad < ks && pad <= 3; ++pad)
        for (std::int64_t c : {1, 3, 4, 17}) {
          ++seed;
          ConvTester t;
          t.input(2, 9, 8, c).output_channels(c == 17 ? 5 : 19).kernel(ks).stride(stride).pad(pad);
          t.seed(seed).input_zero_point(static_cast<std::int32_t>(seed % 256)).test_exact();
        }
}

TEST_CASE("conv_u8s8 1x1 stride 1 (no im2col) equals the reference", "[kernels][conv]") {
  for (std::int64_t c : {1, 3, 4, 5, 16, 63, 64})
    for (std::int64_t o : {1, 15, 16, 17, 33}) {
      ConvTester t;
      t.input(3, 5, 7, c)
          .output_channels(o)
          .kernel(1)
          .pad(0)
          .seed(static_cast<std::uint64_t>(c * o));
      t.test_exact();
      t.relu().test_exact();
    }
}

TEST_CASE("conv_u8s8 1x1 strided (pixels read in place) equals the reference", "[kernels][conv]") {
  // C % 4 == 0 reads the input pixels through a pointer table; other C
  // unfold; strides 2 and 3, odd sizes, edge tiles, 1 and 2 threads, and
  // more rows than one L2 row block.
  const int saved = compressor::num_threads();
  const k::ScopedThreadGrain split_all(1);  // small shapes threaded too
  std::uint64_t seed = 100;
  for (int threads : {1, 2}) {
    compressor::set_num_threads(threads);
    for (std::int64_t c : {4, 8, 12, 64, 5})
      for (std::int64_t stride : {2, 3})
        for (std::int64_t o : {1, 16, 19}) {
          ConvTester t;
          t.input(3, 9, 11, c).output_channels(o).kernel(1).pad(0).stride(stride).seed(++seed);
          t.input_zero_point(static_cast<std::int32_t>(seed * 37 % 256)).test_exact();
          t.relu().test_exact();
        }
    ConvTester().input(4, 57, 55, 64).output_channels(24).kernel(1).stride(2).pad(0).test_exact();
  }
  compressor::set_num_threads(saved);
}

TEST_CASE("conv_u8s8 at extreme values and zero points", "[kernels][conv]") {
  for (std::int32_t zx : {0, 255})
    for (std::int32_t zo : {0, 255}) {
      ConvTester t;
      t.input(1, 6, 6, 64).output_channels(20).kernel(3).pad(1).extreme();
      t.input_zero_point(zx).output_zero_point(zo).test_exact();
      t.relu().test_exact();
      t.stride(2).kernel(1).pad(0).test_exact();
    }
}

TEST_CASE("conv_u8s8 on the full weight grid equals the reference on every path",
          "[kernels][conv]") {
  std::uint64_t seed = 500;
  for (std::int64_t ks : {1, 3, 7})
    for (std::int64_t stride : {1, 2})
      for (std::int64_t c : {3, 4, 17, 64}) {
        ConvTester t;
        t.input(2, 9, 8, c).output_channels(c == 17 ? 5 : 37).kernel(ks).stride(stride);
        t.pad(ks / 2).grid(k::WeightGrid::full).seed(++seed);
        t.input_zero_point(static_cast<std::int32_t>(seed * 37 % 256)).test_exact();
      }
  for (std::int32_t zx : {0, 255}) {
    ConvTester t;
    t.input(1, 6, 6, 64).output_channels(20).kernel(3).pad(1).extreme().grid(k::WeightGrid::full);
    t.input_zero_point(zx).relu().test_exact();
  }
}

TEST_CASE("conv_u8s8 is the same with 1, 2 and 3 threads", "[kernels][conv]") {
  // Each thread unfolds its units of rows into a block of its own (3
  // threads on 2 cores: more blocks than cores).
  const int saved = compressor::num_threads();
  const k::ScopedThreadGrain split_all(1);  // small shapes threaded too
  for (int threads : {1, 2, 3}) {
    compressor::set_num_threads(threads);
    ConvTester().input(2, 14, 14, 32).output_channels(40).kernel(3).pad(1).stride(2).test_exact();
    ConvTester().input(1, 4, 4, 64).output_channels(100).kernel(3).pad(1).test_exact();
    // 49 rows, 300 channels: split by rows where each thread has two row tiles.
    ConvTester().input(1, 7, 7, 24).output_channels(300).kernel(3).pad(1).test_exact();
    // More rows than one L2 row block (GemmU8S8Tiles::row_block): several
    // unfold + multiply blocks per thread.
    ConvTester().input(2, 61, 67, 3).output_channels(9).kernel(3).pad(1).test_exact();
  }
  compressor::set_num_threads(saved);
}

TEST_CASE("the sparse conv on pruned weights equals the reference on every path",
          "[kernels][conv][sparse]") {
  // test_exact checks the sparse conv beside the dense one (on dense
  // weights, above); here 90%-pruned weights, both grids, on 1, 2 and 3
  // threads with every shape threaded: ResNet-18's 3x3 layers at one frame
  // (the last on the small-block kernel, by quads), batch > 1, pads 0-2
  // and even kernels, stride 2, blocks split by channels, K with a partial
  // quad. With 64k input channels the avx512_vnni path packs from the input
  // in place (SparseRowsU8's tap form): padding taps on every side, 5x5
  // taps, stride 2 and several images go through it too.
  const int saved = compressor::num_threads();
  const k::ScopedThreadGrain split_all(1);
  std::uint64_t seed = 900;
  for (int threads : {1, 2, 3}) {
    compressor::set_num_threads(threads);
    for (k::WeightGrid grid : {k::WeightGrid::narrow, k::WeightGrid::full}) {
      auto check = [&](ConvTester t) {
        t.grid(grid).sparsity(0.9).seed(++seed);
        t.input_zero_point(static_cast<std::int32_t>(seed * 53 % 256)).test_exact();
      };
      check(ConvTester().input(1, 28, 28, 64).output_channels(64).kernel(3).pad(1).relu());
      check(ConvTester().input(2, 14, 14, 128).output_channels(24).kernel(3).pad(1));
      check(ConvTester().input(1, 7, 7, 256).output_channels(40).kernel(3).pad(1).relu());
      check(ConvTester().input(1, 4, 4, 512).output_channels(48).kernel(3).pad(1));
      check(ConvTester().input(3, 9, 11, 17).output_channels(40).kernel(5).pad(2));
      check(ConvTester().input(2, 17, 33, 48).output_channels(16).kernel(3).pad(0));
      check(ConvTester().input(1, 6, 5, 7).output_channels(9).kernel(2).pad(1));
      check(ConvTester().input(2, 15, 15, 64).output_channels(32).kernel(3).pad(1).stride(2));
      check(ConvTester().input(3, 9, 10, 64).output_channels(20).kernel(5).pad(2).stride(2));
      check(ConvTester().input(2, 6, 9, 128).output_channels(72).kernel(3).pad(0).relu());
    }
  }
  compressor::set_num_threads(saved);
}

TEST_CASE("conv_u8s8 fused with a 2x2 max pool equals conv then pool on every path",
          "[kernels][conv]") {
  // Both grids, ReLU or not, odd and even output sizes (an odd last row or
  // column is dropped), partial channel panels, strides 1 and 2, batch > 1;
  // on 1, 2 and 3 threads with every shape threaded: pooled rows split into
  // units (each unfolded by its thread) or, for few rows, weight panels.
  // The sparse conv on the same weights (dense ones without ReLU, 85% zeros
  // with it): windows across pooled rows and images inside a block, partial
  // last blocks, a last block of one window (the small-block kernel on
  // avx512_vnni: by k-groups on the dense weights, by quads at 85%),
  // channel ranges split over threads. With 64k input channels the
  // avx512_vnni sparse conv packs from the input in place: windows across
  // rows and images in 64-row blocks, an odd size, stride 2.
  const int saved = compressor::num_threads();
  const k::ScopedThreadGrain split_all(1);
  std::uint64_t seed = 100;
  for (int threads : {1, 2, 3}) {
    compressor::set_num_threads(threads);
    for (k::WeightGrid grid : {k::WeightGrid::narrow, k::WeightGrid::full})
      for (bool relu : {false, true}) {
        auto check = [&](ConvTester t) {
          t.grid(grid).relu(relu).sparsity(relu ? 0.85 : 0.0).seed(++seed).test_max_pool2();
        };
        // CifarCnn's first block at batch 2 (K = 27: a partial k group).
        check(ConvTester().input(2, 32, 32, 3).output_channels(64).kernel(3).pad(1));
        check(ConvTester().input(3, 9, 11, 17).output_channels(40).kernel(3).pad(1));
        check(ConvTester().input(1, 4, 4, 64).output_channels(100).kernel(3).pad(1));
        // K = 2592: the small-block quads by k-chunks, 4 windows.
        check(ConvTester().input(1, 4, 4, 288).output_channels(40).kernel(3).pad(1));
        check(ConvTester().input(2, 11, 14, 64).output_channels(40).kernel(3).pad(1));
        check(ConvTester().input(2, 17, 15, 128).output_channels(24).kernel(3).pad(1).stride(2));
        check(ConvTester().input(2, 13, 12, 8).output_channels(24).kernel(3).stride(2));
        check(ConvTester().input(1, 2, 34, 16).output_channels(24).kernel(3).pad(1));  // 17 windows
        // More rows than one L2 row block: several units per thread.
        check(ConvTester().input(2, 61, 67, 3).output_channels(9).kernel(3).pad(1));
      }
  }
  compressor::set_num_threads(saved);
  // A conv output smaller than the window: the message names the shapes.
  compressor::Tensor<std::int8_t> w(compressor::Shape{4, 3, 3, 3});
  const std::vector<float> ws(4, 0.01f);
  const k::ConvU8S8 conv(w.view(), ws, {}, 1, 0);
  CHECK_THROWS_WITH(conv.pooled_output_shape(compressor::Shape{1, 3, 5, 3}),
                    Catch::Contains("2x2 max pool") && Catch::Contains("(1, 1, 3, 4)"));
}

TEST_CASE("int8 conv equals float conv of the dequantized tensors within 1 LSB: CifarCnn",
          "[kernels][conv]") {
  ConvTester().input(1, 32, 32, 3).output_channels(64).kernel(3).pad(1).relu().test_vs_float();
  ConvTester().input(1, 16, 16, 64).output_channels(128).kernel(3).pad(1).test_vs_float();
  ConvTester().input(1, 8, 8, 128).output_channels(256).kernel(3).pad(1).relu().test_vs_float();
  ConvTester().input(1, 4, 4, 256).output_channels(512).kernel(3).pad(1).test_vs_float();
}

TEST_CASE("int8 conv on the full grid equals float conv within 1 LSB", "[kernels][conv]") {
  const auto full = k::WeightGrid::full;
  ConvTester()
      .input(1, 16, 16, 64)
      .output_channels(128)
      .kernel(3)
      .pad(1)
      .grid(full)
      .test_vs_float();
  ConvTester().input(1, 32, 32, 3).output_channels(64).kernel(3).pad(1).grid(full).test_vs_float();
}

TEST_CASE("int8 conv equals float conv of the dequantized tensors within 1 LSB: ResNet-18",
          "[kernels][conv]") {
  // ResNet-18's kernels, strides and channel counts (the lengths of the sums
  // that matter here), on smaller images than its 112x112 frames: the error
  // bound is per pixel, and the sanitizer build runs this too.
  ConvTester()
      .input(1, 40, 40, 3)
      .output_channels(64)
      .kernel(7)
      .stride(2)
      .pad(3)
      .relu()
      .test_vs_float();
  ConvTester().input(1, 12, 12, 64).output_channels(64).kernel(3).pad(1).test_vs_float();
  ConvTester().input(1, 12, 12, 64).output_channels(128).kernel(3).stride(2).pad(1).test_vs_float();
  ConvTester().input(1, 12, 12, 64).output_channels(128).kernel(1).stride(2).pad(0).test_vs_float();
  ConvTester().input(1, 7, 7, 128).output_channels(128).kernel(3).pad(1).test_vs_float();
  ConvTester()
      .input(1, 7, 7, 256)
      .output_channels(512)
      .kernel(3)
      .stride(2)
      .pad(1)
      .relu()
      .test_vs_float();
  ConvTester().input(1, 3, 3, 512).output_channels(512).kernel(3).pad(1).test_vs_float();
}

TEST_CASE("ConvU8S8 rejects bad shapes naming them", "[kernels][conv]") {
  compressor::Tensor<std::int8_t> w(compressor::Shape{8, 3, 3, 4});
  std::vector<float> ws(8, 0.01f);
  k::ConvU8S8 conv(w.view(), ws, {}, 1, 1);
  compressor::Tensor<std::uint8_t> x(compressor::Shape{1, 5, 5, 3});
  compressor::Tensor<std::uint8_t> y(compressor::Shape{1, 5, 5, 8});
  k::ConvScratch s;
  CHECK_THROWS_WITH(conv.forward(x.view(), {0.1f, 0}, y.view(), {0.1f, 0}, false, s),
                    Catch::Contains("(1, 5, 5, 3)"));
  compressor::Tensor<std::uint8_t> x2(compressor::Shape{1, 5, 5, 4});
  compressor::Tensor<std::uint8_t> y2(compressor::Shape{1, 4, 5, 8});
  CHECK_THROWS_AS(conv.forward(x2.view(), {0.1f, 0}, y2.view(), {0.1f, 0}, false, s),
                  compressor::ShapeError);
  std::vector<float> bad(7, 0.01f);
  CHECK_THROWS_AS(k::ConvU8S8(w.view(), bad, {}, 1, 1), compressor::ShapeError);
}

TEST_CASE("im2col_u8 writes the taps of any pixel range and nothing past it", "[kernels][conv]") {
  compressor::Rng rng(7);
  for (std::int64_t ks : {1, 3, 7})
    for (std::int64_t stride : {1, 2})
      for (std::int64_t c : {1, 3, 5, 16, 64}) {
        const std::int64_t pad = ks / 2, N = 2, H = 9, W = 11;
        const auto g = k::ConvGeometry::square(c, 8, ks, stride, pad);
        const std::int64_t OH = g.out_h(H), OW = g.out_w(W), M = N * OH * OW, K = g.k();
        const std::int64_t ld = (K + 3) / 4 * 4;
        // Exactly the input: ASan catches a read past it.
        std::vector<std::uint8_t> x(static_cast<std::size_t>(N * H * W * c));
        for (auto& v : x) v = static_cast<std::uint8_t>(rng.below(256));
        for (int trial = 0; trial < 4; ++trial) {
          const std::int64_t p0 =
              static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(M)));
          const std::int64_t p1 =
              p0 + 1 + static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(M - p0)));
          const std::int64_t canary = 64;
          std::vector<std::uint8_t> out(static_cast<std::size_t>((p1 - p0) * ld + canary), 0xA5);
          k::im2col_u8(g, H, W, x.data(), 9, p0, p1, out.data(), ld);
          std::int64_t bad = 0;
          for (std::int64_t p = p0; p < p1; ++p) {
            const std::int64_t n = p / (OH * OW), oh = (p / OW) % OH, ow = p % OW;
            for (std::int64_t kh = 0; kh < ks; ++kh)
              for (std::int64_t kw = 0; kw < ks; ++kw)
                for (std::int64_t ci = 0; ci < c; ++ci) {
                  const std::int64_t ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                  const bool in = ih >= 0 && ih < H && iw >= 0 && iw < W;
                  const std::uint8_t want =
                      in ? x[static_cast<std::size_t>(((n * H + ih) * W + iw) * c + ci)] : 9;
                  bad += out[static_cast<std::size_t>((p - p0) * ld + (kh * ks + kw) * c + ci)] !=
                         want;
                }
          }
          for (std::int64_t i = (p1 - p0) * ld; i < (p1 - p0) * ld + canary; ++i)
            bad += out[static_cast<std::size_t>(i)] != 0xA5;
          INFO("k" << ks << " s" << stride << " c" << c << " pixels [" << p0 << ", " << p1 << ")");
          CHECK(bad == 0);
        }
      }
}
