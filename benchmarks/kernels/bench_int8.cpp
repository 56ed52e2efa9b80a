// Int8 GEMM (requantized uint8 output, and int32 output as oneDNN writes) and
// conv on every conv shape of ResNet-18 at 112x112 and CifarCnn at 32x32, 1
// and 2 threads, beside Eigen fp32 GEMM and (when installed) oneDNN's u8s8s32
// GEMM on the same shapes in the same run, plus the measured int8 and fp32
// peaks of this machine (in the JSON context). Tables:
//   bench_int8 --benchmark_format=json > int8.json && tools/bench_int8_report.py int8.json
#include <benchmark/benchmark.h>

#include <Eigen/Core>
#include <cstdio>
#include <string>

#include "bench_common.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/kernels/conv_u8s8.hpp"
#include "compressor/kernels/gemm.hpp"
#include "compressor/kernels/isa.hpp"
#include "conv_shapes.hpp"
#include "peak_probe.hpp"

#ifdef COMPRESSOR_BENCH_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

namespace {

using namespace compressor;
using bench::ConvShape;
using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

std::string bench_name(const char* impl, const ConvShape& s, std::int64_t batch, int threads) {
  return std::string(impl) + "/" + s.name + "/b" + std::to_string(batch) + "/t" +
         std::to_string(threads);
}

void bm_conv_int8(benchmark::State& st, ConvShape s, std::int64_t batch, int threads) {
  set_num_threads(threads);
  Rng rng(1);
  Tensor<std::uint8_t> x(Shape{batch, s.h, s.w, s.c});
  auto xv = bench::random_u8(static_cast<std::size_t>(x.numel()), rng);
  std::copy(xv.begin(), xv.end(), x.data());
  Tensor<std::int8_t> w(Shape{s.o, s.k, s.k, s.c});
  auto wv = bench::random_s8(static_cast<std::size_t>(w.numel()), rng);
  std::copy(wv.begin(), wv.end(), w.data());
  std::vector<float> ws(static_cast<std::size_t>(s.o), 0.01f);
  std::vector<std::int32_t> bias(static_cast<std::size_t>(s.o), 100);
  kernels::ConvU8S8 conv(w.view(), ws, bias, s.stride, s.pad);
  Tensor<std::uint8_t> y(conv.output_shape(x.shape()));
  kernels::ConvScratch scratch;
  for (auto _ : st) {
    conv.forward(x.view(), {0.02f, 3}, y.view(), {0.05f, 7}, true, scratch);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  bench::set_counters(st, s.ops(batch), threads);
}

void bm_gemm_int8(benchmark::State& st, ConvShape s, std::int64_t batch, int threads) {
  set_num_threads(threads);
  Rng rng(2);
  const std::int64_t M = batch * s.oh() * s.ow(), N = s.o, K = s.gemm_k();
  auto a = bench::random_u8(static_cast<std::size_t>(M * K), rng);
  auto w = bench::random_s8(static_cast<std::size_t>(N * K), rng);
  kernels::PackedWeightsU8S8 packed(w.data(), N, K, K);
  std::vector<float> mult(static_cast<std::size_t>(N), 1e-4f);
  std::vector<std::int32_t> bias(static_cast<std::size_t>(N), 100);
  std::vector<std::uint8_t> c(static_cast<std::size_t>(M * N));
  const kernels::RequantOut epi{bias.data(), mult.data(), 7, 7, 255};
  for (auto _ : st) {
    kernels::gemm_u8s8_requant(M, a.data(), K, 3, packed, epi, c.data(), N);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  bench::set_counters(st, s.ops(batch), threads);
}

/// The same GEMM writing int32 (Int32Out, bias and zero-point correction
/// included): the output oneDNN's u8s8s32 GEMM writes.
void bm_gemm_int8_s32(benchmark::State& st, ConvShape s, std::int64_t batch, int threads) {
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
  bench::set_counters(st, s.ops(batch), threads);
}

void bm_gemm_eigen_f32(benchmark::State& st, ConvShape s, std::int64_t batch, int threads) {
  set_num_threads(threads);
  Rng rng(3);
  const std::int64_t M = batch * s.oh() * s.ow(), N = s.o, K = s.gemm_k();
  auto av = bench::random_f32(static_cast<std::size_t>(M * K), rng);
  auto wv = bench::random_f32(static_cast<std::size_t>(N * K), rng);
  Eigen::Map<const RowMajorF> A(av.data(), M, K), W(wv.data(), N, K);
  RowMajorF C(M, N);
  for (auto _ : st) {
    C.noalias() = A * W.transpose();
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  bench::set_counters(st, s.ops(batch), threads, /*fp32=*/true);
}

#ifdef COMPRESSOR_BENCH_ONEDNN
void bm_gemm_onednn(benchmark::State& st, ConvShape s, std::int64_t batch, int threads) {
  set_num_threads(threads);
  Rng rng(4);
  const std::int64_t M = batch * s.oh() * s.ow(), N = s.o, K = s.gemm_k();
  auto a = bench::random_u8(static_cast<std::size_t>(M * K), rng);
  auto w = bench::random_s8(static_cast<std::size_t>(N * K), rng);
  std::vector<std::int32_t> c(static_cast<std::size_t>(M * N));
  const std::int32_t co = 0;
  for (auto _ : st) {
    // Row-major C (M x N) = (A - 3) (M x K) * W^T (W: N x K).
    const auto status = dnnl_gemm_u8s8s32('N', 'T', 'F', M, N, K, 1.f, a.data(), K, 3, w.data(), K,
                                          0, 0.f, c.data(), N, &co);
    if (status != dnnl_success) st.SkipWithError("dnnl_gemm_u8s8s32 failed");
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  bench::set_counters(st, s.ops(batch), threads);
}
#endif

/// The peak probes as benchmarks too, at the start and the end of the run, so
/// the report can take the best peak seen under the run's own conditions.
void register_peaks(const char* when) {
  for (int t : {1, 2}) {
    const std::string suffix = std::string("/") + when + "/t" + std::to_string(t);
    benchmark::RegisterBenchmark(("peak_int8" + suffix).c_str(), [t](benchmark::State& st) {
      double ops = 0;
      for (auto _ : st) ops = bench::int8_peak_ops(t);
      st.counters["GOPS"] = ops * 1e-9;
    })->Iterations(3);
    benchmark::RegisterBenchmark(("peak_f32" + suffix).c_str(), [t](benchmark::State& st) {
      double ops = 0;
      for (auto _ : st) ops = bench::f32_peak_flops(t);
      st.counters["GOPS"] = ops * 1e-9;
    })->Iterations(3);
  }
}

void register_shapes(const std::vector<ConvShape>& shapes, std::vector<std::int64_t> batches) {
  for (const auto& s : shapes)
    for (auto b : batches)
      for (int t : {1, 2}) {
        auto reg = [&](const char* impl, auto fn) {
          benchmark::RegisterBenchmark(bench_name(impl, s, b, t).c_str(), fn, s, b, t)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond);
        };
        reg("int8_conv", bm_conv_int8);
        reg("int8_gemm", bm_gemm_int8);
        reg("int8_gemm_s32", bm_gemm_int8_s32);
        reg("eigen_f32_gemm", bm_gemm_eigen_f32);
#ifdef COMPRESSOR_BENCH_ONEDNN
        reg("onednn_u8s8s32_gemm", bm_gemm_onednn);
#endif
      }
}

}  // namespace

namespace compressor::bench {
void register_sparse();  // bench_sparse.cpp
}

int main(int argc, char** argv) {
#ifdef COMPRESSOR_BENCH_ONEDNN
  // The shipped target is AVX2 without VNNI: keep oneDNN on the same ISA
  // (this also stops it using AVX-512/VNNI on a development machine).
  dnnl_set_max_cpu_isa(dnnl_cpu_isa_avx2);
#endif
  benchmark::Initialize(&argc, argv);
  auto& p = bench::peaks();
  for (int t : {1, 2}) {
    p.int8[t] = bench::int8_peak_ops(t);
    p.f32[t] = bench::f32_peak_flops(t);
    benchmark::AddCustomContext("int8_peak_gops_t" + std::to_string(t),
                                std::to_string(p.int8[t] * 1e-9));
    benchmark::AddCustomContext("f32_peak_gflops_t" + std::to_string(t),
                                std::to_string(p.f32[t] * 1e-9));
  }
  benchmark::AddCustomContext("kernel_path",
                              std::string(kernels::path_name(kernels::kernel_path())));
#ifdef COMPRESSOR_BENCH_ONEDNN
  benchmark::AddCustomContext("onednn_max_isa", "avx2");
#endif
  register_peaks("start");
  register_shapes(bench::resnet18_112(), {1, 8});
  register_shapes(bench::cifarcnn_32(), {1, 128});
  bench::register_sparse();
  register_peaks("end");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
