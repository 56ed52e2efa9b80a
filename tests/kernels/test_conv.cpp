#include <catch2/catch.hpp>

#include "compressor/core/threading.hpp"
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

TEST_CASE("conv_u8s8 is the same with 1 and 2 threads", "[kernels][conv]") {
  const int saved = compressor::num_threads();
  for (int threads : {1, 2}) {
    compressor::set_num_threads(threads);
    ConvTester().input(2, 14, 14, 32).output_channels(40).kernel(3).pad(1).stride(2).test_exact();
    ConvTester().input(1, 4, 4, 64).output_channels(100).kernel(3).pad(1).test_exact();
  }
  compressor::set_num_threads(saved);
}

TEST_CASE("int8 conv equals float conv of the dequantized tensors within 1 LSB: CifarCnn",
          "[kernels][conv]") {
  ConvTester().input(1, 32, 32, 3).output_channels(64).kernel(3).pad(1).relu().test_vs_float();
  ConvTester().input(1, 16, 16, 64).output_channels(128).kernel(3).pad(1).test_vs_float();
  ConvTester().input(1, 8, 8, 128).output_channels(256).kernel(3).pad(1).relu().test_vs_float();
  ConvTester().input(1, 4, 4, 256).output_channels(512).kernel(3).pad(1).test_vs_float();
}

TEST_CASE("int8 conv equals float conv of the dequantized tensors within 1 LSB: ResNet-18",
          "[kernels][conv]") {
  ConvTester()
      .input(1, 112, 112, 3)
      .output_channels(64)
      .kernel(7)
      .stride(2)
      .pad(3)
      .relu()
      .test_vs_float();
  ConvTester().input(1, 28, 28, 64).output_channels(64).kernel(3).pad(1).test_vs_float();
  ConvTester().input(1, 28, 28, 64).output_channels(128).kernel(3).stride(2).pad(1).test_vs_float();
  ConvTester().input(1, 28, 28, 64).output_channels(128).kernel(1).stride(2).pad(0).test_vs_float();
  ConvTester().input(1, 14, 14, 128).output_channels(128).kernel(3).pad(1).test_vs_float();
  ConvTester()
      .input(1, 7, 7, 256)
      .output_channels(512)
      .kernel(3)
      .stride(2)
      .pad(1)
      .relu()
      .test_vs_float();
  ConvTester().input(1, 4, 4, 512).output_channels(512).kernel(3).pad(1).test_vs_float();
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
