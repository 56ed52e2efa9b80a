#include <catch2/catch.hpp>
#include <cstdint>

#include "compressor/core/tensor.hpp"

using namespace compressor;

TEST_CASE("Tensor is zero-filled, contiguous and 64-byte aligned", "[core][tensor]") {
  Tensor<float> t(Shape{2, 3, 4});
  CHECK(t.rank() == 3);
  CHECK(t.numel() == 24);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  for (float v : t.flat()) CHECK(v == 0.f);
  Tensor<std::int8_t> a(Shape{5});
  Tensor<std::uint8_t> b(Shape{7});
  Tensor<std::int32_t> c(Shape{1, 1, 1, 1, 3});
  CHECK(reinterpret_cast<std::uintptr_t>(a.data()) % 64 == 0);
  CHECK(reinterpret_cast<std::uintptr_t>(b.data()) % 64 == 0);
  CHECK(c.rank() == 5);
}

TEST_CASE("Shape rejects more than five dimensions and negative extents", "[core][shape]") {
  CHECK_THROWS_AS((Shape{1, 2, 3, 4, 5, 6}), ShapeError);
  CHECK_THROWS_AS((Shape{2, -1}), ShapeError);
  CHECK(Shape{2, 3}.str() == "(2, 3)");
}

TEST_CASE("Multi-index access is row-major", "[core][tensor]") {
  auto t = Tensor<float>::from(Shape{2, 3}, {0, 1, 2, 3, 4, 5});
  CHECK(t(1, 2) == 5.f);
  CHECK(t(0, 1) == 1.f);
  t(1, 0) = 9.f;
  CHECK(t[3] == 9.f);
}

TEST_CASE("Copy is deep, move is cheap", "[core][tensor]") {
  auto a = Tensor<float>::from(Shape{3}, {1, 2, 3});
  Tensor<float> b = a;
  b[0] = 7;
  CHECK(a[0] == 1.f);
  const float* p = a.data();
  Tensor<float> c = std::move(a);
  CHECK(c.data() == p);
  CHECK(a.numel() == 0);
}

TEST_CASE("Views reshape, slice and narrow without copying", "[core][tensor]") {
  Tensor<float> t(Shape{4, 2, 3});
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(i);
  auto v = t.reshape(Shape{8, 3});
  CHECK(v.data() == t.data());
  CHECK(v(2, 1) == 7.f);
  auto s = t.slice(2);
  CHECK(s.shape() == Shape{2, 3});
  CHECK(s(0, 0) == 12.f);
  auto n = t.narrow(1, 2);
  CHECK(n.shape() == Shape{2, 2, 3});
  CHECK(n(0, 0, 0) == 6.f);
  n(0, 0, 0) = -1.f;
  CHECK(t[6] == -1.f);
  TensorView<const float> cv = t;
  CHECK(cv.data() == t.data());
}

TEST_CASE("Shape mismatches throw errors naming both shapes", "[core][tensor]") {
  Tensor<float> t(Shape{2, 3});
  try {
    (void)t.reshape(Shape{4, 2});
    FAIL("reshape did not throw");
  } catch (const ShapeError& e) {
    const std::string msg = e.what();
    CHECK(msg.find("(2, 3)") != std::string::npos);
    CHECK(msg.find("(4, 2)") != std::string::npos);
  }
  Tensor<float> u(Shape{3, 2});
  CHECK_THROWS_AS(t.copy_from(u), ShapeError);
  CHECK_THROWS_AS(t.slice(2), ShapeError);
  CHECK_THROWS_AS(t.narrow(1, 2), ShapeError);
  CHECK_THROWS_AS(t.matrix(4, 2), ShapeError);
}

TEST_CASE("Eigen maps alias the tensor memory", "[core][tensor]") {
  Tensor<float> t(Shape{2, 3});
  auto m = t.matrix();
  m(1, 2) = 5.f;
  CHECK(t(1, 2) == 5.f);
  CHECK(m.rows() == 2);
  CHECK(m.cols() == 3);
  t.vector().setConstant(1.f);
  CHECK(t.matrix().sum() == 6.f);
}

TEST_CASE("resize reuses capacity", "[core][tensor]") {
  Tensor<float> t(Shape{100});
  const float* p = t.data();
  t.resize(Shape{10, 5});
  CHECK(t.data() == p);
  CHECK(t.numel() == 50);
  t.resize(Shape{1000});
  CHECK(t.numel() == 1000);
  CHECK(t.capacity() >= 1000);
}
