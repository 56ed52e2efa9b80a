// Sparse-weight kernels at 50/70/80/90/95% unstructured sparsity beside the
// dense kernel of the same type in the same run: fp32 sparse vs Eigen fp32
// GEMM, int8 sparse vs our dense int8 GEMM. GOPS are dense-equivalent
// (2*M*N*K / time), so a GOPS ratio is a speedup. int8 on both weight grids:
// narrow (uniform weights pruned at random) and full (`_full`: Gaussian
// weights quantized per output channel to [-127, 127] and magnitude-pruned
// per channel, so the weights left are the large ones, the hard case for the
// full grid's pairing; counter slots_per_nnz = 4 * quads / nonzeros).
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <string>

#include "bench_common.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/gemm.hpp"
#include "compressor/kernels/sparse_gemm.hpp"

namespace compressor::bench {

namespace {

struct GemmShape {
  std::string name;
  std::int64_t m, n, k;
  double ops() const { return 2.0 * double(m) * double(n) * double(k); }
};

const std::vector<GemmShape>& sparse_shapes() {
  static const std::vector<GemmShape> s = {
      {"resnet18.layer1.x.convy.b1", 784, 64, 576},
      {"resnet18.layer3.x.convy.b8", 392, 256, 2304},
      {"cifarcnn.conv2.b32", 8192, 128, 576},
  };
  return s;
}

template <class T>
std::vector<T> pruned(std::vector<T> w, double sparsity, Rng& rng) {
  for (auto& v : w)
    if (rng.uniform() < sparsity) v = T{0};
  return w;
}

/// n x k weights as magnitude pruning leaves them: Gaussian, quantized per
/// row to the grid (scale max|w| / qmax), the smallest |w| of each row zeroed.
std::vector<std::int8_t> magnitude_pruned_s8(std::int64_t n, std::int64_t k, double sparsity,
                                             kernels::WeightGrid grid, Rng& rng) {
  const int qmax = kernels::weight_qmax(grid);
  std::vector<std::int8_t> w(static_cast<std::size_t>(n * k));
  std::vector<double> row(static_cast<std::size_t>(k)), mags(static_cast<std::size_t>(k));
  const auto drop = static_cast<std::size_t>(sparsity * double(k));
  for (std::int64_t r = 0; r < n; ++r) {
    double mx = 0;
    for (auto& v : row) mx = std::max(mx, std::abs(v = rng.normal()));
    for (std::size_t c = 0; c < row.size(); ++c) mags[c] = std::abs(row[c]);
    std::nth_element(mags.begin(), mags.begin() + static_cast<std::ptrdiff_t>(drop), mags.end());
    const double cut = drop < mags.size() ? mags[drop] : mx + 1;
    for (std::size_t c = 0; c < row.size(); ++c)
      w[static_cast<std::size_t>(r * k) + c] =
          std::abs(row[c]) < cut ? 0 : static_cast<std::int8_t>(std::lround(row[c] / mx * qmax));
  }
  return w;
}

void bm_sparse_f32(benchmark::State& st, GemmShape s, int pct, int threads) {
  set_num_threads(threads);
  Rng rng(5);
  auto x = random_f32(static_cast<std::size_t>(s.m * s.k), rng);
  auto w = pruned(random_f32(static_cast<std::size_t>(s.n * s.k), rng), pct / 100.0, rng);
  const kernels::SparseWeightsF32 sw(w.data(), s.n, s.k, s.k);
  std::vector<float> bias(static_cast<std::size_t>(s.n), 0.1f),
      y(static_cast<std::size_t>(s.m * s.n));
  kernels::SparseScratch scratch;
  for (auto _ : st) {
    kernels::sparse_gemm_f32(s.m, x.data(), s.k, sw, bias.data(), true, y.data(), s.n, scratch);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, s.ops(), threads, /*fp32=*/true);
  st.counters["density"] = sw.density();
}

void bm_dense_eigen(benchmark::State& st, GemmShape s, int threads) {
  using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  set_num_threads(threads);
  Rng rng(6);
  auto x = random_f32(static_cast<std::size_t>(s.m * s.k), rng);
  auto w = random_f32(static_cast<std::size_t>(s.n * s.k), rng);
  Eigen::Map<const RowMajorF> X(x.data(), s.m, s.k), W(w.data(), s.n, s.k);
  RowMajorF Y(s.m, s.n);
  for (auto _ : st) {
    Y.noalias() = X * W.transpose();
    benchmark::DoNotOptimize(Y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, s.ops(), threads, /*fp32=*/true);
}

void bm_sparse_int8(benchmark::State& st, GemmShape s, int pct, int threads,
                    kernels::WeightGrid grid) {
  set_num_threads(threads);
  Rng rng(7);
  auto x = random_u8(static_cast<std::size_t>(s.m * s.k), rng);
  const auto w =
      grid == kernels::WeightGrid::full
          ? magnitude_pruned_s8(s.n, s.k, pct / 100.0, grid, rng)
          : pruned(random_s8(static_cast<std::size_t>(s.n * s.k), rng), pct / 100.0, rng);
  const kernels::SparseWeightsS8 sw(w.data(), s.n, s.k, s.k, grid);
  std::vector<std::int32_t> bias(static_cast<std::size_t>(s.n), 10);
  std::vector<float> mult(static_cast<std::size_t>(s.n), 1e-4f);
  std::vector<std::uint8_t> y(static_cast<std::size_t>(s.m * s.n));
  kernels::SparseScratch scratch;
  const kernels::RequantOut epi{bias.data(), mult.data(), 5, 5, 255};
  for (auto _ : st) {
    kernels::sparse_gemm_u8s8(s.m, x.data(), s.k, 3, sw, epi, y.data(), s.n, scratch);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, s.ops(), threads);
  st.counters["density"] = sw.density();
  st.counters["slots_per_nnz"] =
      4.0 * double(sw.quads()) / double(std::max<std::int64_t>(sw.nnz(), 1));
}

void bm_dense_int8(benchmark::State& st, GemmShape s, int threads, kernels::WeightGrid grid) {
  set_num_threads(threads);
  Rng rng(8);
  auto x = random_u8(static_cast<std::size_t>(s.m * s.k), rng);
  auto w = random_s8(static_cast<std::size_t>(s.n * s.k), rng, grid);
  const kernels::PackedWeightsU8S8 packed(w.data(), s.n, s.k, s.k, grid);
  std::vector<std::int32_t> bias(static_cast<std::size_t>(s.n), 10);
  std::vector<float> mult(static_cast<std::size_t>(s.n), 1e-4f);
  std::vector<std::uint8_t> y(static_cast<std::size_t>(s.m * s.n));
  const kernels::RequantOut epi{bias.data(), mult.data(), 5, 5, 255};
  for (auto _ : st) {
    kernels::gemm_u8s8_requant(s.m, x.data(), s.k, 3, packed, epi, y.data(), s.n);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  set_counters(st, s.ops(), threads);
}

}  // namespace

void register_sparse() {
  using kernels::WeightGrid;
  for (const auto& s : sparse_shapes())
    for (int t : {1, 2}) {
      const std::string suffix = "/" + s.name + "/t" + std::to_string(t);
      benchmark::RegisterBenchmark(("dense_eigen_f32" + suffix).c_str(), bm_dense_eigen, s, t)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
      for (auto grid : {WeightGrid::narrow, WeightGrid::full}) {
        const std::string g = grid == WeightGrid::full ? "_full" : "";
        benchmark::RegisterBenchmark(("dense_int8" + g + suffix).c_str(), bm_dense_int8, s, t, grid)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
      }
      for (int pct : {50, 70, 80, 90, 95}) {
        const std::string sp = "/s" + std::to_string(pct);
        benchmark::RegisterBenchmark(("sparse_f32" + suffix + sp).c_str(), bm_sparse_f32, s, pct, t)
            ->UseRealTime()
            ->Unit(benchmark::kMicrosecond);
        for (auto grid : {WeightGrid::narrow, WeightGrid::full}) {
          const std::string g = grid == WeightGrid::full ? "_full" : "";
          benchmark::RegisterBenchmark(("sparse_int8" + g + suffix + sp).c_str(), bm_sparse_int8, s,
                                       pct, t, grid)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        }
      }
    }
}

}  // namespace compressor::bench
