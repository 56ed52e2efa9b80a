#include <catch2/catch.hpp>
#include <cmath>
#include <vector>

#include "compressor/core/rng.hpp"

using compressor::Rng;

TEST_CASE("Rng is deterministic for a seed and differs across seeds", "[core][rng]") {
  Rng a(42), b(42), c(43);
  for (int i = 0; i < 100; ++i) {
    const auto x = a();
    CHECK(x == b());
    (void)c;
  }
  Rng d(42);
  CHECK(d() != Rng(43)());
}

TEST_CASE("Rng draws have the right moments", "[core][rng]") {
  Rng r(7);
  const int n = 200000;
  double su = 0, sn = 0, sn2 = 0;
  for (int i = 0; i < n; ++i) {
    su += r.uniform();
    const double z = r.normal();
    sn += z;
    sn2 += z * z;
  }
  CHECK(su / n == Approx(0.5).margin(0.01));
  CHECK(sn / n == Approx(0.0).margin(0.01));
  CHECK(sn2 / n == Approx(1.0).margin(0.02));
  std::vector<int> hist(10, 0);
  for (int i = 0; i < n; ++i) ++hist[r.below(10)];
  for (int h : hist) CHECK(std::abs(h - n / 10) < n / 100);
}

TEST_CASE("shuffle is a permutation", "[core][rng]") {
  Rng r(1);
  std::vector<int> v(50);
  for (int i = 0; i < 50; ++i) v[i] = i;
  r.shuffle(std::span<int>(v));
  std::vector<int> seen(50, 0);
  for (int x : v) ++seen[x];
  for (int s : seen) CHECK(s == 1);
  bool moved = false;
  for (int i = 0; i < 50; ++i) moved |= v[i] != i;
  CHECK(moved);
}
