// SgemmTester: a fluent description of one fp32 GEMM case, run on every ISA
// path the CPU supports (kernels/isa.hpp) and compared bit for bit against
// the scalar reference, e.g.
//   SgemmTester().m(7).n(33).k(300).transpose_a().lda_pad(3).accumulate().test();
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/ref/sgemm.hpp"
#include "compressor/kernels/sgemm.hpp"

namespace compressor::testing {

class SgemmTester {
 public:
  SgemmTester& m(std::int64_t v) { return set(m_, v); }
  SgemmTester& n(std::int64_t v) { return set(n_, v); }
  SgemmTester& k(std::int64_t v) { return set(k_, v); }
  /// Extra elements past each stored row of A, B and C.
  SgemmTester& lda_pad(std::int64_t v) { return set(lda_pad_, v); }
  SgemmTester& ldb_pad(std::int64_t v) { return set(ldb_pad_, v); }
  SgemmTester& ldc_pad(std::int64_t v) { return set(ldc_pad_, v); }
  /// A stored as its transpose (K x M), B as its transpose (N x K).
  SgemmTester& transpose_a(bool v = true) { return set(ta_, v); }
  SgemmTester& transpose_b(bool v = true) { return set(tb_, v); }
  SgemmTester& accumulate(bool v = true) { return set(acc_, v); }
  SgemmTester& seed(std::uint64_t v) { return set(seed_, v); }

  void test() const {
    Rng rng(seed_);
    const std::int64_t ar = ta_ ? k_ : m_, ac = ta_ ? m_ : k_, lda = ac + lda_pad_;
    const std::int64_t br = tb_ ? n_ : k_, bc = tb_ ? k_ : n_, ldb = bc + ldb_pad_;
    const std::int64_t ldc = n_ + ldc_pad_;
    std::vector<float> a(static_cast<std::size_t>(ar * lda)), b(static_cast<std::size_t>(br * ldb));
    std::vector<float> c(static_cast<std::size_t>(m_ * ldc));
    for (auto& v : a) v = static_cast<float>(rng.uniform(-1.0, 1.0));
    for (auto& v : b) v = static_cast<float>(rng.uniform(-1.0, 1.0));
    for (auto& v : c) v = static_cast<float>(rng.uniform(-1.0, 1.0));
    const auto c0 = c;
    auto expected = c;
    const auto A = ta_ ? kernels::StridedMatrix::transposed(a.data(), lda)
                       : kernels::StridedMatrix::row_major(a.data(), lda);
    const auto B = tb_ ? kernels::StridedMatrix::transposed(b.data(), ldb)
                       : kernels::StridedMatrix::row_major(b.data(), ldb);
    kernels::ref::sgemm(m_, n_, k_, A, B, expected.data(), ldc, acc_);
    for (const kernels::Path p : kernels::supported_paths()) {
      const kernels::ScopedKernelPath on(p);
      c = c0;
      kernels::sgemm(m_, n_, k_, A, B, c.data(), ldc, acc_);
      INFO("path " << kernels::path_name(p) << ": M=" << m_ << " N=" << n_ << " K=" << k_
                   << " ta=" << ta_ << " tb=" << tb_ << " acc=" << acc_ << " pads " << lda_pad_
                   << "/" << ldb_pad_ << "/" << ldc_pad_);
      // Bit for bit, the padding columns of C included (they must be untouched).
      REQUIRE(std::memcmp(c.data(), expected.data(), c.size() * sizeof(float)) == 0);
    }
  }

 private:
  template <class T, class V>
  SgemmTester& set(T& field, V v) {
    field = static_cast<T>(v);
    return *this;
  }
  std::int64_t m_ = 1, n_ = 1, k_ = 1, lda_pad_ = 0, ldb_pad_ = 0, ldc_pad_ = 0;
  bool ta_ = false, tb_ = false, acc_ = false;
  std::uint64_t seed_ = 1;
};

}  // namespace compressor::testing
