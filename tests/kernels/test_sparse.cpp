#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/sparse_gemm.hpp"

using namespace compressor;
namespace k = compressor::kernels;

namespace {

/// A fluent sparse GEMM case: Y = X * W^T with W pruned to a sparsity, run
/// on every ISA path the CPU supports against the scalar reference.
class SparseTester {
 public:
  SparseTester& m(std::int64_t v) {
    m_ = v;
    return *this;
  }
  SparseTester& n(std::int64_t v) {
    n_ = v;
    return *this;
  }
  SparseTester& k(std::int64_t v) {
    k_ = v;
    return *this;
  }
  SparseTester& ldx(std::int64_t v) {
    ldx_ = v;
    return *this;
  }
  SparseTester& ldy(std::int64_t v) {
    ldy_ = v;
    return *this;
  }
  SparseTester& sparsity(double v) {
    sparsity_ = v;
    return *this;
  }
  SparseTester& seed(std::uint64_t v) {
    seed_ = v;
    return *this;
  }
  /// Positive weights only (with extreme: every weight the grid's maximum).
  SparseTester& one_sign(bool v = true) {
    one_sign_ = v;
    return *this;
  }
  SparseTester& extreme(bool v = true) {
    extreme_ = v;
    return *this;
  }
  SparseTester& grid(k::WeightGrid g) {
    grid_ = g;
    return *this;
  }

  void test_f32() const {
    Rng rng(seed_);
    std::vector<float> x(rows_x()), w(static_cast<std::size_t>(n_ * k_)),
        bias(static_cast<std::size_t>(n_));
    for (auto& v : x) v = static_cast<float>(rng.uniform(-1, 1));
    for (auto& v : w) v = rng.uniform() < sparsity_ ? 0.f : static_cast<float>(rng.uniform(-1, 1));
    for (auto& v : bias) v = static_cast<float>(rng.uniform(-1, 1));
    const k::SparseWeightsF32 sw(w.data(), n_, k_, k_);
    for (bool relu : {false, true})
      for (const float* b :
           {static_cast<const float*>(bias.data()), static_cast<const float*>(nullptr)}) {
        std::vector<float> want(rows_y(), 7.f);
        k::ref::sparse_gemm_f32(m_, x.data(), ldx(), sw, b, relu, want.data(), ldy());
        for (const k::Path p : k::supported_paths()) {
          const k::ScopedKernelPath on(p);
          std::vector<float> got(rows_y(), 7.f);
          k::SparseScratch s;
          k::sparse_gemm_f32(m_, x.data(), ldx(), sw, b, relu, got.data(), ldy(), s);
          expect_equal(got, want, p);
        }
      }
  }

  void test_u8s8() const {
    Rng rng(seed_);
    std::vector<std::uint8_t> x(rows_x());
    std::vector<std::int8_t> w(static_cast<std::size_t>(n_ * k_));
    for (auto& v : x)
      v = static_cast<std::uint8_t>(extreme_ ? (rng.below(2) ? 255 : 0) : rng.below(256));
    const int lo = k::weight_min(grid_), hi = k::weight_max(grid_);
    const auto span = static_cast<std::uint64_t>(hi - lo + 1);
    for (auto& v : w) {
      v = rng.uniform() < sparsity_
              ? 0
              : static_cast<std::int8_t>(extreme_ ? (rng.below(2) ? hi : lo)
                                                  : lo + int(rng.below(span)));
      if (one_sign_) v = static_cast<std::int8_t>(std::abs(v));
    }
    std::vector<std::int32_t> bias(static_cast<std::size_t>(n_));
    std::vector<float> mult(static_cast<std::size_t>(n_));
    for (auto& v : bias) v = static_cast<std::int32_t>(rng.below(20001)) - 10000;
    for (auto& v : mult)
      v = static_cast<float>(rng.uniform(0.5, 2) * 0.05 /
                             (1 + std::sqrt(k_ * (1 - sparsity_)) * 30));
    const k::SparseWeightsS8 sw(w.data(), n_, k_, k_, grid_);
    // The scalar reference once per output kind, then every path against it.
    struct Want {
      std::int32_t za;
      bool relu;
      std::vector<std::int32_t> i32;
      std::vector<std::uint8_t> u8;
      std::vector<float> f32;
    };
    std::vector<Want> wants;
    for (std::int32_t za : {0, 131, 255})
      for (bool relu : {false, true}) {
        Want w8{za,
                relu,
                {},
                std::vector<std::uint8_t>(rows_y(), 7),
                std::vector<float>(rows_y(), 7.f)};
        if (!relu) {
          w8.i32.assign(rows_y(), 7);
          k::ref::sparse_gemm_u8s8(m_, x.data(), ldx(), za, sw, k::Int32Out{bias.data()},
                                   w8.i32.data(), ldy());
        }
        k::ref::sparse_gemm_u8s8(m_, x.data(), ldx(), za, sw, requant(bias, mult, relu),
                                 w8.u8.data(), ldy());
        k::ref::sparse_gemm_u8s8(m_, x.data(), ldx(), za, sw,
                                 k::DequantOut{bias.data(), mult.data(), relu}, w8.f32.data(),
                                 ldy());
        wants.push_back(std::move(w8));
      }
    k::SparseScratch s;
    for (const k::Path p : k::supported_paths()) {
      const k::ScopedKernelPath on(p);
      for (const Want& want : wants) {
        INFO("za " << want.za << (want.relu ? ", relu" : ""));
        if (!want.i32.empty()) {
          std::vector<std::int32_t> got(rows_y(), 7);
          k::sparse_gemm_u8s8(m_, x.data(), ldx(), want.za, sw, k::Int32Out{bias.data()},
                              got.data(), ldy(), s);
          expect_equal(got, want.i32, p);
        }
        std::vector<std::uint8_t> got(rows_y(), 7);
        k::sparse_gemm_u8s8(m_, x.data(), ldx(), want.za, sw, requant(bias, mult, want.relu),
                            got.data(), ldy(), s);
        expect_equal(got, want.u8, p);
        std::vector<float> gotf(rows_y(), 7.f);
        k::sparse_gemm_u8s8(m_, x.data(), ldx(), want.za, sw,
                            k::DequantOut{bias.data(), mult.data(), want.relu}, gotf.data(), ldy(),
                            s);
        expect_equal(gotf, want.f32, p);
      }
    }
  }

 private:
  static k::RequantOut requant(const std::vector<std::int32_t>& bias,
                               const std::vector<float>& mult, bool relu) {
    return {bias.data(), mult.data(), 100, relu ? 100 : 0, 255};
  }

  std::int64_t ldx() const { return ldx_ ? ldx_ : k_; }
  std::int64_t ldy() const { return ldy_ ? ldy_ : n_; }
  std::size_t rows_x() const { return static_cast<std::size_t>((m_ - 1) * ldx() + k_); }
  std::size_t rows_y() const { return static_cast<std::size_t>((m_ - 1) * ldy() + n_); }

  template <class T>
  void expect_equal(const std::vector<T>& got, const std::vector<T>& want, k::Path p) const {
    std::size_t bad = 0, first = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      if (got[i] != want[i] && bad++ == 0) first = i;
    INFO("path " << k::path_name(p) << ": M=" << m_ << " N=" << n_ << " K=" << k_ << " sparsity="
                 << sparsity_ << " grid " << k::weight_grid_name(grid_) << " first mismatch at "
                 << first << ": " << +got[first] << " vs " << +want[first]);
    CHECK(bad == 0);
  }

  std::int64_t m_ = 1, n_ = 1, k_ = 1, ldx_ = 0, ldy_ = 0;
  double sparsity_ = 0.8;
  std::uint64_t seed_ = 1;
  bool extreme_ = false, one_sign_ = false;
  k::WeightGrid grid_ = k::WeightGrid::narrow;
};

std::vector<std::int64_t> sizes() {
  std::vector<std::int64_t> s;
  for (std::int64_t i = 1; i <= 17; ++i) s.push_back(i);
  for (int j = 5; j <= 7; ++j)
    for (std::int64_t d : {-1, 0, 1}) s.push_back((std::int64_t{1} << j) + d);
  return s;
}

}  // namespace

TEST_CASE("sparse_gemm_f32 equals its reference bit for bit", "[kernels][sparse]") {
  for (auto v : sizes()) {
    SparseTester().m(v).n(19).k(40).seed(static_cast<std::uint64_t>(v)).test_f32();
    SparseTester().m(37).n(v).k(24).seed(static_cast<std::uint64_t>(v)).test_f32();
    SparseTester().m(33).n(9).k(v).seed(static_cast<std::uint64_t>(v)).test_f32();
  }
  for (double sp : {0.0, 0.5, 0.9, 0.99, 1.0})
    SparseTester().m(70).n(24).k(100).sparsity(sp).test_f32();
  SparseTester().m(65).n(17).k(19).ldx(23).ldy(30).test_f32();
}

TEST_CASE("sparse_gemm_u8s8 equals its reference bit for bit", "[kernels][sparse]") {
  for (auto v : sizes()) {
    SparseTester().m(v).n(19).k(40).seed(static_cast<std::uint64_t>(v)).test_u8s8();
    SparseTester().m(37).n(v).k(24).seed(static_cast<std::uint64_t>(v)).test_u8s8();
    SparseTester().m(33).n(9).k(v).seed(static_cast<std::uint64_t>(v)).test_u8s8();
  }
  for (double sp : {0.0, 0.5, 0.9, 0.99, 1.0})
    SparseTester().m(70).n(24).k(100).sparsity(sp).test_u8s8();
  SparseTester().m(65).n(17).k(19).ldx(23).ldy(30).test_u8s8();
  SparseTester().m(64).n(16).k(4608).sparsity(0.0).extreme().test_u8s8();
  SparseTester().m(45).n(33).k(4608).sparsity(0.0).extreme().test_u8s8();
  for (double sp : {0.5, 0.8, 0.9, 0.95})
    SparseTester().m(97).n(70).k(576).sparsity(sp).seed(3).test_u8s8();
  // Blocks of at most 16 rows (on avx512_vnni by k-groups at low sparsity,
  // by quads at high: SparseWeightsS8::small_block_quads, checked below): a
  // whole small layer, a last block of 16 and of 1 row, K past a multiple
  // of 64 and of 4, the accumulator at its extremes.
  SparseTester().m(16).n(33).k(4608).sparsity(0.0).extreme().test_u8s8();
  SparseTester().m(16).n(40).k(4610).sparsity(0.9).seed(5).test_u8s8();
  SparseTester().m(80).n(70).k(577).sparsity(0.9).seed(6).test_u8s8();
  SparseTester().m(129).n(24).k(131).sparsity(0.5).seed(7).test_u8s8();
  SparseTester().m(129).n(24).k(131).sparsity(0.95).seed(8).test_u8s8();
  SparseTester().m(9).n(33).k(1152).sparsity(0.9).extreme().seed(9).test_u8s8();
  SparseTester().m(7).n(24).k(67).ldx(70).ldy(30).test_u8s8();
  // K past kSmallChunkMinK at high sparsity: quads by k-chunks (4610 above:
  // 5 chunks, the last of 514 k; here 3 of 1024, 1024 and 952 at the
  // extremes), and, on one thread (one range of all channels), too many
  // channels for the partial sums' room: the kernel takes the whole K at
  // once.
  SparseTester().m(12).n(70).k(3000).sparsity(0.95).extreme().seed(10).test_u8s8();
  const int saved = num_threads();
  set_num_threads(1);
  SparseTester().m(16).n(1800).k(2305).sparsity(0.97).seed(11).test_u8s8();
  set_num_threads(saved);
}

TEST_CASE("sparse_gemm_u8s8 on the full weight grid equals its reference bit for bit",
          "[kernels][sparse]") {
  const auto full = k::WeightGrid::full;
  for (auto v : sizes()) {
    SparseTester().m(v).n(19).k(40).grid(full).seed(static_cast<std::uint64_t>(v)).test_u8s8();
    SparseTester().m(37).n(v).k(24).grid(full).seed(static_cast<std::uint64_t>(v)).test_u8s8();
    SparseTester().m(33).n(9).k(v).grid(full).seed(static_cast<std::uint64_t>(v)).test_u8s8();
  }
  for (double sp : {0.0, 0.9, 1.0})
    SparseTester().m(70).n(24).k(100).sparsity(sp).grid(full).test_u8s8();
  SparseTester().m(65).n(17).k(19).ldx(23).ldy(30).grid(full).test_u8s8();
  // Both ends of the grid and of the activations: every int16 pair sum of
  // the narrow halves at its largest, the int32 sums at the accumulator's.
  SparseTester().m(64).n(16).k(4608).sparsity(0.0).extreme().grid(full).test_u8s8();
  SparseTester().m(16).n(16).k(4608).sparsity(0.0).extreme().grid(full).test_u8s8();
  SparseTester().m(80).n(33).k(577).sparsity(0.9).grid(full).seed(8).test_u8s8();
  SparseTester().m(45).n(33).k(4608).sparsity(0.0).extreme().grid(full).seed(5).test_u8s8();
  // One sign: no two large weights of a row may share a pair.
  SparseTester().m(40).n(20).k(300).sparsity(0.3).extreme().one_sign().grid(full).test_u8s8();
  SparseTester().m(40).n(20).k(300).sparsity(0.3).one_sign().grid(full).seed(9).test_u8s8();
  SparseTester().m(97).n(70).k(576).sparsity(0.9).grid(full).seed(3).test_u8s8();
  // Quads by k-chunks (no pairing there: vpdpbusd is exact on either grid).
  SparseTester().m(16).n(40).k(4610).sparsity(0.9).grid(full).seed(5).test_u8s8();
  SparseTester().m(5).n(33).k(3000).sparsity(0.95).extreme().grid(full).seed(6).test_u8s8();
}

namespace {

/// The quads of row r of s as (k, weight) slots.
std::vector<std::pair<std::int64_t, int>> quad_slots(const k::SparseWeightsS8& s, std::int64_t r) {
  std::vector<std::pair<std::int64_t, int>> v;
  for (std::int64_t q = s.quad_begin(r); q < s.quad_begin(r + 1); ++q) {
    std::int8_t w[4];
    std::memcpy(w, s.quad_weights() + q, 4);
    for (int i = 0; i < 4; ++i)
      v.emplace_back(std::int64_t{s.quad_offsets()[4 * q + i]} / k::SparseWeightsS8::kQuadStride,
                     w[i]);
  }
  return v;
}

/// Every quad pair of s fits an int16; the nonzero slots of each row are its
/// nonzeros, each once; zero slots point at a k of the row. Returns the quads.
std::int64_t check_quads(const std::vector<std::int8_t>& w, std::int64_t n, std::int64_t kk,
                         k::WeightGrid grid) {
  const k::SparseWeightsS8 s(w.data(), n, kk, kk, grid);
  for (std::int64_t r = 0; r < n; ++r) {
    INFO("row " << r);
    const auto slots = quad_slots(s, r);
    std::vector<std::pair<std::int64_t, int>> nz, want;
    std::vector<bool> row_k(static_cast<std::size_t>(kk), false);
    for (std::int64_t c = 0; c < kk; ++c)
      if (const int v = w[static_cast<std::size_t>(r * kk + c)]; v != 0) {
        want.emplace_back(c, v);
        row_k[static_cast<std::size_t>(c)] = true;
      }
    for (std::size_t i = 0; i < slots.size(); i += 2) {
      const int u = slots[i].second, v = slots[i + 1].second;
      INFO("pair " << u << ", " << v);
      CHECK(255 * (std::max(u, 0) + std::max(v, 0)) <= 32767);
      CHECK(255 * (std::min(u, 0) + std::min(v, 0)) >= -32768);
      CHECK(k::SparseWeightsS8::pair_fits_int16(u, v));
    }
    for (const auto& [c, v] : slots) {
      CHECK(row_k[static_cast<std::size_t>(c)]);
      if (v != 0) nz.emplace_back(c, v);
    }
    std::sort(nz.begin(), nz.end());
    CHECK(nz == want);
    if (grid == k::WeightGrid::narrow) {  // k order, padding only at the end
      CHECK(s.quad_begin(r + 1) - s.quad_begin(r) == (std::int64_t(want.size()) + 3) / 4);
      for (std::size_t i = 0; i < want.size(); ++i) CHECK(slots[i] == want[i]);
    }
  }
  return s.quads();
}

}  // namespace

TEST_CASE("SparseWeightsS8 picks quads for small blocks at high sparsity, k-groups at low",
          "[kernels][sparse]") {
  Rng rng(12);
  const auto pick = [&](double sparsity) {
    const std::int64_t n = 64, kk = 1152;
    std::vector<std::int8_t> w(static_cast<std::size_t>(n * kk));
    for (auto& v : w)
      v = rng.uniform() < sparsity ? 0 : static_cast<std::int8_t>(1 + int(rng.below(60)));
    const k::SparseWeightsS8 s(w.data(), n, kk, kk);
    CHECK(s.small_block_quads() ==
          (double(s.quads()) < k::SparseWeightsS8::kSmallQuadsPerGroup * double(s.groups())));
    return s.small_block_quads();
  };
  CHECK_FALSE(pick(0.0));
  CHECK_FALSE(pick(0.5));
  CHECK(pick(0.9));
  CHECK(pick(0.95));
}

TEST_CASE("SparseWeightsS8 cuts the small-block quads into k-chunks past kSmallChunkMinK",
          "[kernels][sparse]") {
  using SW = k::SparseWeightsS8;
  Rng rng(13);
  for (const auto grid : {k::WeightGrid::narrow, k::WeightGrid::full})
    for (const std::int64_t kk :
         {SW::kSmallChunkMinK, SW::kSmallChunkMinK + 1, std::int64_t{4610}}) {
      const std::int64_t n = 9;
      const auto qmax = static_cast<std::uint64_t>(k::weight_qmax(grid));
      std::vector<std::int8_t> w(static_cast<std::size_t>(n * kk));
      for (auto& v : w)
        v = rng.uniform() < 0.9
                ? 0
                : static_cast<std::int8_t>(int(rng.below(2 * qmax + 1)) - int(qmax));
      const SW s(w.data(), n, kk, kk, grid);
      INFO("K = " << kk);
      REQUIRE(s.small_block_quads());
      if (kk <= SW::kSmallChunkMinK) {
        CHECK(s.small_chunks() == 1);
        continue;
      }
      const std::int64_t chunks = (kk + SW::kSmallChunkK - 1) / SW::kSmallChunkK;
      REQUIRE(s.small_chunks() == chunks);
      CHECK(s.chunk_quad_begin(0, 0) == 0);
      for (std::int64_t c = 0; c < chunks; ++c)
        for (std::int64_t r = 0; r < n; ++r) {
          INFO("chunk " << c << ", row " << r);
          // The chunk's nonzeros of the row in k order, then zero slots
          // (fewer than 4) that repeat the quad's first k.
          std::vector<std::pair<std::int64_t, int>> want, got;
          const std::int64_t k0 = c * SW::kSmallChunkK, k1 = std::min(kk, k0 + SW::kSmallChunkK);
          for (std::int64_t x = k0; x < k1; ++x)
            if (const int v = w[static_cast<std::size_t>(r * kk + x)]; v != 0)
              want.emplace_back(x, v);
          const std::int64_t b = s.chunk_quad_begin(c, r), e = s.chunk_quad_begin(c, r + 1);
          CHECK(e - b == (std::int64_t(want.size()) + 3) / 4);
          for (std::int64_t q = b; q < e; ++q) {
            std::int8_t wq[4];
            std::memcpy(wq, s.chunk_quad_weights() + q, 4);
            const std::int64_t first = s.chunk_quad_offsets()[4 * q] / SW::kQuadStride;
            for (int i = 0; i < 4; ++i) {
              const std::int64_t x = s.chunk_quad_offsets()[4 * q + i] / SW::kQuadStride;
              if (wq[i] != 0)
                got.emplace_back(x, wq[i]);
              else
                CHECK(x == first);
            }
          }
          CHECK(got == want);
          // Chunk-major: the next pointer starts where this one ends.
          if (r + 1 == n && c + 1 < chunks) CHECK(s.chunk_quad_begin(c + 1, 0) == e);
        }
    }
}

TEST_CASE("SparseWeightsS8 pairs full-grid weights so no vpmaddubsw pair can saturate",
          "[kernels][sparse]") {
  const auto full = k::WeightGrid::full;
  CHECK(k::SparseWeightsS8::pair_fits_int16(64, 64));
  CHECK(k::SparseWeightsS8::pair_fits_int16(127, 1));
  CHECK(k::SparseWeightsS8::pair_fits_int16(127, -127));
  CHECK(k::SparseWeightsS8::pair_fits_int16(-127, -1));
  CHECK_FALSE(k::SparseWeightsS8::pair_fits_int16(65, 64));
  CHECK_FALSE(k::SparseWeightsS8::pair_fits_int16(127, 2));
  CHECK_FALSE(k::SparseWeightsS8::pair_fits_int16(-127, -2));
  // Opposite signs pair, same signs pair only up to 128 together.
  CHECK(check_quads({127, -127, 1, -1, 0, 64, -64, 3}, 1, 8, full) == 2);
  CHECK(check_quads({127, 127, 127, 127}, 1, 4, full) == 2);  // 4 alone
  CHECK(check_quads({127, 127, 127, 1}, 1, 4, full) == 2);    // 127+1, 127, 127
  CHECK(check_quads({65, 64, 64, 63}, 1, 4, full) == 1);      // 65+63, 64+64
  CHECK(check_quads({-65, -64, -64, -63}, 1, 4, full) == 1);
  CHECK(check_quads({100, -100, 90, -90, 80, 70}, 1, 6, full) == 2);  // 80 and 70 alone
  CHECK(check_quads({0, 0, 0}, 1, 3, full) == 0);
  // Random rows: uniform over the grid, one sign only, and what magnitude
  // pruning leaves (|w| large, signs mixed).
  Rng rng(11);
  for (int trial = 0; trial < 40; ++trial) {
    const std::int64_t n = 1 + std::int64_t(rng.below(5)), kk = 1 + std::int64_t(rng.below(300));
    std::vector<std::int8_t> w(static_cast<std::size_t>(n * kk));
    const int mode = trial % 3;
    for (auto& v : w) {
      if (rng.uniform() < 0.5) {
        v = 0;
        continue;
      }
      const int mag = mode == 2 ? 60 + int(rng.below(68)) : 1 + int(rng.below(127));
      v = static_cast<std::int8_t>(mode == 1 || rng.below(2) ? mag : -mag);
    }
    INFO("trial " << trial << " mode " << mode);
    check_quads(w, n, kk, full);
    for (auto& v : w) v = static_cast<std::int8_t>(v / 2);  // now on the narrow grid
    check_quads(w, n, kk, k::WeightGrid::narrow);
  }
}

TEST_CASE("SparseWeightsS8 rejects weights outside the exact range", "[kernels][sparse]") {
  std::vector<std::int8_t> w(32, 0);
  w[3] = 65;
  CHECK_THROWS_AS(k::SparseWeightsS8(w.data(), 2, 16, 16), ValueError);
  w[3] = -65;
  CHECK_THROWS_AS(k::SparseWeightsS8(w.data(), 2, 16, 16), ValueError);
  w[3] = -64;
  w[20] = 64;
  CHECK_NOTHROW(k::SparseWeightsS8(w.data(), 2, 16, 16));
  w[3] = 127;
  CHECK_THROWS_WITH(k::SparseWeightsS8(w.data(), 2, 16, 16), Catch::Contains("narrow weight grid"));
  CHECK_NOTHROW(k::SparseWeightsS8(w.data(), 2, 16, 16, k::WeightGrid::full));
  w[3] = -128;
  CHECK_THROWS_WITH(k::SparseWeightsS8(w.data(), 2, 16, 16, k::WeightGrid::full),
                    Catch::Contains("full weight grid [-127, 127]"));
}

TEST_CASE("sparse kernels give the same result with 1, 2 and 3 threads", "[kernels][sparse]") {
  const int saved = num_threads();
  const k::ScopedThreadGrain split_all(1);  // small shapes threaded too
  for (int t : {1, 2, 3}) {
    set_num_threads(t);
    INFO(t << " threads");
    SparseTester().m(200).n(40).k(72).sparsity(0.7).test_f32();
    SparseTester().m(200).n(40).k(72).sparsity(0.7).test_u8s8();
    SparseTester().m(200).n(40).k(72).sparsity(0.7).grid(k::WeightGrid::full).test_u8s8();
    // Few row blocks: cut into ranges of output channels (sparse_units), odd
    // range ends included (one block of 19 channels: 16 + 3 on 2 threads,
    // 8 + 8 + 3 on 3; two and four blocks are cut on 3 threads only).
    for (const auto& [m, n] : {std::pair<std::int64_t, std::int64_t>{16, 64},
                               {16, 19},
                               {49, 19},
                               {100, 19},
                               {33, 130}}) {
      SparseTester().m(m).n(n).k(72).sparsity(0.7).seed(7).test_f32();
      SparseTester().m(m).n(n).k(72).sparsity(0.7).seed(7).test_u8s8();
      SparseTester().m(m).n(n).k(72).sparsity(0.7).seed(7).grid(k::WeightGrid::full).test_u8s8();
    }
  }
  set_num_threads(saved);
}

TEST_CASE("sparse_gemm_u8s8_blocks equals sparse_gemm_u8s8 and asks for whole blocks",
          "[kernels][sparse]") {
  // The rows come from a callback, one block at a time, copied into the
  // kernel's buffer (as the sparse conv unfolds them there).
  Rng rng(21);
  const int saved = num_threads();
  const k::ScopedThreadGrain split_all(1);  // small shapes threaded too
  struct Shape3 {
    std::int64_t m, k, n;
  };
  for (const Shape3& c : {Shape3{200, 72, 40}, {16, 300, 19}, {65, 64, 33}, {129, 9, 70}}) {
    // (Named copies: clang 14's lambdas cannot capture structured bindings.)
    const std::int64_t M = c.m, K = c.k, N = c.n;
    std::vector<std::uint8_t> x(static_cast<std::size_t>(M * K));
    std::vector<std::int8_t> w(static_cast<std::size_t>(N * K));
    for (auto& v : x) v = static_cast<std::uint8_t>(rng.below(256));
    for (auto& v : w)
      v = rng.uniform() < 0.8 ? 0 : static_cast<std::int8_t>(int(rng.below(255)) - 127);
    const k::SparseWeightsS8 sw(w.data(), N, K, K, k::WeightGrid::full);
    const k::Int32Out epi{};
    for (int t : {1, 2, 3}) {
      set_num_threads(t);
      for (const k::Path p : k::supported_paths()) {
        const k::ScopedKernelPath on(p);
        INFO("path " << k::path_name(p) << ", " << t << " threads, M=" << M << " K=" << K
                     << " N=" << N);
        std::vector<std::int32_t> want(static_cast<std::size_t>(M * N), 7),
            got(static_cast<std::size_t>(M * N), 7);
        k::SparseScratch s;
        k::sparse_gemm_u8s8(M, x.data(), K, 131, sw, epi, want.data(), N, s);
        std::atomic<bool> aligned{true};
        std::atomic<std::int64_t> rows_asked{0};
        k::sparse_gemm_u8s8_blocks(
            M,
            [&](std::int64_t m, std::int64_t rows, std::uint8_t* buf) {
              if (m % 32 != 0 || rows < 1 || rows > 64 || m + rows > M) aligned = false;
              rows_asked += rows;
              std::memcpy(buf, x.data() + m * K, static_cast<std::size_t>(rows * K));
              return static_cast<const std::uint8_t*>(buf);
            },
            131, sw, epi, got.data(), N, s);
        CHECK(got == want);
        CHECK(aligned);
        CHECK(rows_asked >= M);  // every row at least once (a block cut over threads: more)
      }
    }
  }
  set_num_threads(saved);
}

TEST_CASE("sparse_units cuts few row blocks into ranges of output channels", "[kernels][sparse]") {
  using k::detail::sparse_units;
  auto check = [](std::int64_t M, std::int64_t N, int threads, std::int64_t blocks,
                  std::int64_t chunks, std::int64_t chunk) {
    const auto u = sparse_units(M, N, threads);
    INFO("M=" << M << " N=" << N << " threads=" << threads);
    CHECK(u.blocks == blocks);
    CHECK(u.chunks == chunks);
    CHECK(u.chunk == chunk);
    if (u.chunks > 1) CHECK(u.chunk % 8 == 0);  // ranges start at multiples of 8
    CHECK((u.chunks - 1) * u.chunk < N);        // no empty range
  };
  check(16, 512, 1, 1, 1, 512);   // one thread: never cut
  check(16, 512, 2, 1, 2, 256);   // one block, two threads
  check(49, 256, 2, 2, 1, 256);   // two blocks (32 + 17 rows) on two threads: even
  check(196, 128, 2, 7, 1, 128);  // 7 blocks: 4 + 3, a small last round
  check(100, 19, 3, 4, 3, 8);     // 4 blocks on 3 threads: 8 + 8 + 3 channels
  check(49, 19, 2, 2, 1, 19);
  check(16, 19, 2, 1, 2, 16);
  check(16, 12, 2, 1, 1, 12);     // too few channels to cut
  check(3136, 64, 2, 98, 1, 64);  // many blocks
}

TEST_CASE("SparseWeightsS8 groups each row's nonzeros by 4 consecutive k", "[kernels][sparse]") {
  // Row 0: groups 0 (k 1, 3) and 2 (k 9); row 1: none; row 2: group 0 and
  // the last group, past K = 10 (k 8 only).
  const std::vector<std::int8_t> w = {
      0, 3, 0, -4, 0, 0, 0, 0, 0, 7,  // row 0
      0, 0, 0, 0,  0, 0, 0, 0, 0, 0,  // row 1
      5, 0, 0, -1, 0, 0, 0, 0, 9, 0,  // row 2
  };
  const k::SparseWeightsS8 s(w.data(), 3, 10, 10);
  REQUIRE(s.groups() == 4);
  CHECK(s.group_begin(0) == 0);
  CHECK(s.group_begin(1) == 2);
  CHECK(s.group_begin(2) == 2);
  CHECK(s.group_begin(3) == 4);
  auto bytes = [&](std::int64_t j) {
    std::int8_t b[4];
    std::memcpy(b, s.group_weights() + j, 4);
    return std::vector<int>{b[0], b[1], b[2], b[3]};
  };
  const std::int64_t g = k::SparseWeightsS8::kGroupStride;
  CHECK(s.group_offsets()[0] == 0);
  CHECK(bytes(0) == std::vector<int>{0, 3, 0, -4});
  CHECK(s.group_offsets()[1] == 2 * g);
  CHECK(bytes(1) == std::vector<int>{0, 7, 0, 0});
  CHECK(s.group_offsets()[2] == 0);
  CHECK(bytes(2) == std::vector<int>{5, 0, 0, -1});
  CHECK(s.group_offsets()[3] == 2 * g);
  CHECK(bytes(3) == std::vector<int>{9, 0, 0, 0});
}

TEST_CASE("SparseWeights keeps exactly the nonzeros", "[kernels][sparse]") {
  const std::vector<std::int8_t> w = {0, 3, 0, -4, 0, 0, 0, 0, 5, 0, 0, 1};
  const k::SparseWeightsS8 s(w.data(), 3, 4, 4);
  CHECK(s.nnz() == 4);
  CHECK(s.row_begin(1) == 2);
  CHECK(s.row_begin(2) == 2);
  CHECK(s.row_sums()[0] == -1);
  CHECK(s.row_sums()[2] == 6);
  std::vector<std::int32_t> y(3);
  k::SparseScratch sc;
  CHECK_THROWS_AS(k::sparse_gemm_u8s8(1, std::vector<std::uint8_t>(4).data(), 3, 0, s,
                                      k::Int32Out{}, y.data(), 3, sc),
                  ShapeError);
}
