// Int8 GEMM (requantized uint8 output, int32 output as oneDNN writes, and the
// full weight grid) and conv on every conv shape of ResNet-18 at 112x112 and
// CifarCnn at 32x32, 1 and 2 threads, on each ISA path asked for, beside our
// fp32 GEMM (kernels::sgemm, its best path) and, when installed, oneDNN's
// int8 matmul primitive (weights reordered once, oneDNN's default ISA) on the
// same shapes in the same run, plus this machine's measured peaks for every
// instruction stream (in the JSON context and as peak/... entries); and the
// uint8 max pools of both networks (max_pool_u8@<path>/<pool>/b<N>/t<T>,
// GB/s of input read).
//
//   bench_int8 [--paths=avx2,avx512_vnni] [google benchmark flags]
//
// --paths: the int8 kernels' paths to run (default: every supported path but
// scalar); benchmark names carry the path: int8_gemm@avx512_vnni/<shape>/b8/t1.
// Tables: bench_int8 --benchmark_format=json > int8.json && tools/bench_int8_report.py int8.json
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/conv_u8s8.hpp"
#include "compressor/kernels/gemm.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/kernels/pool.hpp"
#include "compressor/kernels/sgemm.hpp"
#include "conv_shapes.hpp"
#include "peak_probe.hpp"

#ifdef COMPRESSOR_BENCH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace {

using namespace compressor;
using bench::ConvShape;
using kernels::Path;

std::string bench_name(const std::string& impl, const ConvShape& s, std::int64_t batch,
                       int threads) {
  return impl + "/" + s.name + "/b" + std::to_string(batch) + "/t" + std::to_string(threads);
}

/// A uint8 NHWC input of random bytes.
Tensor<std::uint8_t> random_input(const Shape& shape, Rng& rng) {
  Tensor<std::uint8_t> x(shape);
  const auto v = bench::random_u8(static_cast<std::size_t>(x.numel()), rng);
  std::copy(v.begin(), v.end(), x.data());
  return x;
}

/// The int8 conv of shape s with random weights (scales 0.01, biases 100).
kernels::ConvU8S8 random_conv(const ConvShape& s, Rng& rng) {
  Tensor<std::int8_t> w(Shape{s.o, s.k, s.k, s.c});
  auto wv = bench::random_s8(static_cast<std::size_t>(w.numel()), rng);
  std::copy(wv.begin(), wv.end(), w.data());
  const std::vector<float> ws(static_cast<std::size_t>(s.o), 0.01f);
  const std::vector<std::int32_t> bias(static_cast<std::size_t>(s.o), 100);
  return kernels::ConvU8S8(w.view(), ws, bias, s.stride, s.pad);
}

void bm_conv_int8(benchmark::State& st, Path path, ConvShape s, std::int64_t batch, int threads) {
  kernels::ScopedKernelPath scope(path);
  set_num_threads(threads);
  Rng rng(1);
  const Tensor<std::uint8_t> x = random_input(Shape{batch, s.h, s.w, s.c}, rng);
  const kernels::ConvU8S8 conv = random_conv(s, rng);
  Tensor<std::uint8_t> y(conv.output_shape(x.shape()));
  kernels::ConvScratch scratch;
  for (auto _ : st) {
    conv.forward(x.view(), {0.02f, 3}, y.view(), {0.05f, 7}, true, scratch);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  bench::set_counters(st, s.ops(batch), threads, bench::int8_probe(path));
}

/// The conv (uint8 out, ReLU) and the 2x2 max pool after it, as the int8
/// CifarCnn runs them: fused (ConvU8S8::forward_max_pool2) or one after the
/// other (forward, then max_pool_u8). GOPS: the conv's multiply-adds.
void bm_conv_pool_int8(benchmark::State& st, Path path, bool fused, ConvShape s, std::int64_t batch,
                       int threads) {
  kernels::ScopedKernelPath scope(path);
  set_num_threads(threads);
  Rng rng(1);
  const Tensor<std::uint8_t> x = random_input(Shape{batch, s.h, s.w, s.c}, rng);
  const kernels::ConvU8S8 conv = random_conv(s, rng);
  Tensor<std::uint8_t> y(conv.output_shape(x.shape())), pooled(conv.pooled_output_shape(x.shape()));
  kernels::ConvScratch scratch;
  for (auto _ : st) {
    if (fused) {
      conv.forward_max_pool2(x.view(), {0.02f, 3}, pooled.view(), {0.05f, 7}, true, scratch);
    } else {
      conv.forward(x.view(), {0.02f, 3}, y.view(), {0.05f, 7}, true, scratch);
      kernels::max_pool_u8(y.view(), pooled.view(), 2, 2, 0);
    }
    benchmark::DoNotOptimize(pooled.data());
    benchmark::ClobberMemory();
  }
  bench::set_counters(st, s.ops(batch), threads, bench::int8_probe(path));
}

void bm_gemm_int8(benchmark::State& st, Path path, kernels::WeightGrid grid, ConvShape s,
                  std::int64_t batch, int threads) {
  kernels::ScopedKernelPath scope(path);
  set_num_threads(threads);
  Rng rng(2);
  const std::int64_t M = batch * s.oh() * s.ow(), N = s.o, K = s.gemm_k();
  auto a = bench::random_u8(static_cast<std::size_t>(M * K), rng);
  auto w = bench::random_s8(static_cast<std::size_t>(N * K), rng, grid);
  kernels::PackedWeightsU8S8 packed(w.data(), N, K, K, grid);
  std::vector<float> mult(static_cast<std::size_t>(N), 1e-4f);
  std::vector<std::int32_t> bias(static_cast<std::size_t>(N), 100);
  std::vector<std::uint8_t> c(static_cast<std::size_t>(M * N));
  const kernels::RequantOut epi{bias.data(), mult.data(), 7, 7, 255};
  for (auto _ : st) {
    kernels::gemm_u8s8_requant(M, a.data(), K, 3, packed, epi, c.data(), N);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  bench::set_counters(st, s.ops(batch), threads, bench::int8_probe(path));
}

/// The same GEMM writing int32 (Int32Out, bias and zero-point correction
/// included): the output oneDNN's matmul writes.
void bm_gemm_int8_s32(benchmark::State& st, Path path, ConvShape s, std::int64_t batch,
                      int threads) {
  kernels::ScopedKernelPath scope(path);
  set_num_threads(threads);
  Rng rng(2);
  const std::int64_t M = batch * s.oh() * s.ow(), N = s.o, K = s.gemm_k();
  auto a = bench::random_u8(static_cast<std::size_t>(M * K), rng);
  auto w = bench::random_s8(static_cast<std::size_t>(N * K), rng);
  kernels::PackedWeightsU8S8 packed(w.data(), N, K, K);
  std::vector<std::int32_t> bias(static_cast<std::size_t>(N), 100);
  std::vector<std::int32_t> c(static_cast<std::size_t>(M * N));
  for (auto _ : st) {
    kernels::gemm_u8s8_s32(M, a.data(), K, 3, packed, bias.data(), c.data(), N);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  bench::set_counters(st, s.ops(batch), threads, bench::int8_probe(path));
}

/// Our fp32 GEMM on the same product (A M x K times W^T), at the fp32
/// kernels' best path.
void bm_gemm_f32(benchmark::State& st, ConvShape s, std::int64_t batch, int threads) {
  set_num_threads(threads);
  Rng rng(3);
  const std::int64_t M = batch * s.oh() * s.ow(), N = s.o, K = s.gemm_k();
  auto a = bench::random_f32(static_cast<std::size_t>(M * K), rng);
  auto w = bench::random_f32(static_cast<std::size_t>(N * K), rng);
  std::vector<float> c(static_cast<std::size_t>(M * N));
  for (auto _ : st) {
    kernels::sgemm(M, N, K, kernels::StridedMatrix::row_major(a.data(), K),
                   kernels::StridedMatrix::transposed(w.data(), K), c.data(), N);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  const bool zmm = kernels::path_supported(Path::avx512);
  bench::set_counters(st, s.ops(batch), threads,
                      zmm ? bench::Probe::f32_zmm_fma : bench::Probe::f32_ymm_fma);
}

#ifdef COMPRESSOR_BENCH_ONEDNN
/// oneDNN's matmul primitive, u8 x s8 -> s32 with a source zero point and an
/// s32 bias, weights reordered once into the layout it picks (format any),
/// at oneDNN's default ISA: the same output as int8_gemm_s32.
void bm_matmul_onednn(benchmark::State& st, ConvShape s, std::int64_t batch, int threads) {
  set_num_threads(threads);
  Rng rng(4);
  const std::int64_t M = batch * s.oh() * s.ow(), N = s.o, K = s.gemm_k();
  auto a = bench::random_u8(static_cast<std::size_t>(M * K), rng);
  auto w = bench::random_s8(static_cast<std::size_t>(N * K), rng);
  std::vector<std::int32_t> bias(static_cast<std::size_t>(N), 100);
  std::vector<std::int32_t> c(static_cast<std::size_t>(M * N));
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  const dnnl::memory::desc a_md({M, K}, dt::u8, tag::ab);
  const dnnl::memory::desc w_user_md({K, N}, dt::s8, tag::ba);  // W (N x K) row-major = W^T "ba"
  const dnnl::memory::desc w_any_md({K, N}, dt::s8, tag::any);
  const dnnl::memory::desc b_md({1, N}, dt::s32, tag::ab);
  const dnnl::memory::desc c_md({M, N}, dt::s32, tag::ab);
  dnnl::primitive_attr attr;
  attr.set_zero_points(DNNL_ARG_SRC, 0, {3});
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, w_any_md, b_md, c_md), attr, eng);
  dnnl::memory a_mem(a_md, eng, a.data()), w_user(w_user_md, eng, w.data());
  dnnl::memory b_mem(b_md, eng, bias.data()), c_mem(c_md, eng, c.data());
  dnnl::memory w_mem(pd.weights_desc(), eng);
  dnnl::reorder(w_user, w_mem).execute(strm, w_user, w_mem);  // once
  strm.wait();
  const dnnl::matmul mm(pd);
  st.SetLabel(pd.impl_info_str());
  for (auto _ : st) {
    mm.execute(strm, {{DNNL_ARG_SRC, a_mem},
                      {DNNL_ARG_WEIGHTS, w_mem},
                      {DNNL_ARG_BIAS, b_mem},
                      {DNNL_ARG_DST, c_mem}});
    strm.wait();
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  bench::set_counters(st, s.ops(batch), threads, bench::int8_probe(kernels::best_path()));
}
#endif

constexpr bench::Probe kProbes[] = {bench::Probe::u8s8_ymm_maddubs, bench::Probe::u8s8_zmm_maddubs,
                                    bench::Probe::u8s8_ymm_vnni,    bench::Probe::u8s8_zmm_vnni,
                                    bench::Probe::f32_ymm_fma,      bench::Probe::f32_zmm_fma};

/// The peak probes as benchmarks too, at the start and the end of the run, so
/// the report can take the best peak seen under the run's own conditions.
void register_peaks(const char* when) {
  for (bench::Probe p : kProbes) {
    if (!kernels::path_supported(bench::probe_path(p))) continue;
    for (int t : {1, 2}) {
      const std::string name =
          "peak/" + std::string(bench::probe_name(p)) + "/" + when + "/t" + std::to_string(t);
      benchmark::RegisterBenchmark(name.c_str(), [p, t](benchmark::State& st) {
        double ops = 0;
        for (auto _ : st) ops = bench::peak_ops(p, t);
        st.counters["GOPS"] = ops * 1e-9;
      })->Iterations(3);
    }
  }
}

void register_shapes(const std::vector<Path>& paths, const std::vector<ConvShape>& shapes,
                     std::vector<std::int64_t> batches) {
  for (const auto& s : shapes)
    for (auto b : batches)
      for (int t : {1, 2}) {
        auto reg = [&](const std::string& impl, auto fn, auto... args) {
          benchmark::RegisterBenchmark(bench_name(impl, s, b, t).c_str(), fn, args..., s, b, t)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        };
        for (Path p : paths) {
          std::string at = "@";  // (GCC 12: "@" + std::string trips -Wrestrict)
          at += kernels::path_name(p);
          reg("int8_conv" + at, bm_conv_int8, p);
          if (s.name.starts_with("cifarcnn.conv")) {  // a 2x2 max pool follows
            reg("int8_conv_pool" + at, bm_conv_pool_int8, p, true);
            reg("int8_conv_then_pool" + at, bm_conv_pool_int8, p, false);
          }
          reg("int8_gemm" + at, bm_gemm_int8, p, kernels::WeightGrid::narrow);
          reg("int8_gemm_full" + at, bm_gemm_int8, p, kernels::WeightGrid::full);
          reg("int8_gemm_s32" + at, bm_gemm_int8_s32, p);
        }
        reg("f32_gemm", bm_gemm_f32);
#ifdef COMPRESSOR_BENCH_ONEDNN
        reg("onednn_matmul_s32", bm_matmul_onednn);
#endif
      }
}

/// An NHWC uint8 max pool of the networks: input H x W x C, k x k window.
struct PoolShape {
  const char* name;
  std::int64_t h, w, c, k, stride, pad;
};

void bm_max_pool(benchmark::State& st, Path path, PoolShape s, std::int64_t batch, int threads) {
  kernels::ScopedKernelPath scope(path);
  set_num_threads(threads);
  Rng rng(4);
  const Tensor<std::uint8_t> x = random_input(Shape{batch, s.h, s.w, s.c}, rng);
  Tensor<std::uint8_t> y(kernels::max_pool_output_shape(x.shape(), s.k, s.stride, s.pad));
  for (auto _ : st) {
    kernels::max_pool_u8(x.view(), y.view(), s.k, s.stride, s.pad);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["GBps"] = benchmark::Counter(static_cast<double>(x.numel()) * 1e-9,
                                           benchmark::Counter::kIsIterationInvariantRate);
}

void register_pools(const std::vector<Path>& paths) {
  const PoolShape pools[] = {{"resnet18.maxpool", 56, 56, 64, 3, 2, 1},
                             {"cifarcnn.pool1", 32, 32, 64, 2, 2, 0},
                             // after conv1 pruned to 45 channels (ratio 0.3)
                             {"cifarcnn_ch0.3.pool1", 32, 32, 45, 2, 2, 0},
                             {"cifarcnn.pool3", 8, 8, 256, 2, 2, 0}};
  std::vector<Path> all = paths;
  all.insert(all.begin(), Path::scalar);
  for (const PoolShape& s : pools)
    for (std::int64_t b : {1, 8})
      for (int t : {1, 2})
        for (Path p : all) {
          std::string name = "max_pool_u8@";  // (GCC 12: "@" + std::string trips -Wrestrict)
          name += kernels::path_name(p);
          name += '/';
          name += s.name;
          name += "/b";
          name += std::to_string(b);
          name += "/t";
          name += std::to_string(t);
          benchmark::RegisterBenchmark(name.c_str(), bm_max_pool, p, s, b, t)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        }
}

/// --paths=a,b,c (removed from argv), or every supported path but scalar.
std::vector<Path> take_paths(int& argc, char** argv) {
  std::vector<Path> paths;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--paths=", 8) != 0) continue;
    std::string list = argv[i] + 8;
    for (std::size_t b = 0; b <= list.size();) {
      const std::size_t e = std::min(list.find(',', b), list.size());
      const Path p = kernels::parse_path(list.substr(b, e - b), "bench_int8 --paths");
      kernels::require_supported(p, "bench_int8 --paths");
      paths.push_back(p);
      b = e + 1;
    }
    for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
    --argc;
    return paths;
  }
  for (Path p : kernels::supported_paths())
    if (p != Path::scalar) paths.push_back(p);
  return paths;
}

}  // namespace

namespace compressor::bench {
void register_sparse();  // bench_sparse.cpp
}

int main(int argc, char** argv) {
  std::vector<Path> paths;
  try {
    paths = take_paths(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  benchmark::Initialize(&argc, argv);
  auto& p = bench::peaks();
  for (int t : {1, 2}) {
    for (bench::Probe probe : kProbes) {
      const double ops = bench::peak_ops(probe, t);
      p.probe[static_cast<int>(probe)][t] = ops;
      if (ops > 0)
        benchmark::AddCustomContext(
            "peak_" + std::string(bench::probe_name(probe)) + "_gops_t" + std::to_string(t),
            std::to_string(ops * 1e-9));
    }
    p.int8[t] = p.probe[static_cast<int>(bench::int8_probe(kernels::kernel_path()))][t];
    p.f32[t] = std::max(p.probe[static_cast<int>(bench::Probe::f32_ymm_fma)][t],
                        p.probe[static_cast<int>(bench::Probe::f32_zmm_fma)][t]);
    benchmark::AddCustomContext("int8_peak_gops_t" + std::to_string(t),
                                std::to_string(p.int8[t] * 1e-9));
    benchmark::AddCustomContext("f32_peak_gflops_t" + std::to_string(t),
                                std::to_string(p.f32[t] * 1e-9));
  }
  std::string names;
  for (Path q : paths) {
    if (!names.empty()) names += ',';
    names += kernels::path_name(q);
  }
  benchmark::AddCustomContext("kernel_paths", names);
  benchmark::AddCustomContext("kernel_path",
                              std::string(kernels::path_name(kernels::kernel_path())));
  benchmark::AddCustomContext("cpu_features", kernels::cpu_features().str());
#ifdef COMPRESSOR_BENCH_ONEDNN
  benchmark::AddCustomContext("onednn_max_isa", "default");
#endif
  register_peaks("start");
  register_shapes(paths, bench::resnet18_112(), {1, 8});
  register_shapes(paths, bench::cifarcnn_32(), {1, 128});
  bench::register_sparse();
  register_pools(paths);
  register_peaks("end");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
