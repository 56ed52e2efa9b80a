// What observing costs: observe() throughput (bytes of float input per
// second) of every observer on a 1M-element tensor (4 MiB), beside a plain
// vectorised sum of the same tensor (the read rate of one core), and the
// one-off cost of range() for each histogram rule. Single-threaded:
// observe() runs on the calling thread.
//
//   BM_ReadBaseline/<data>         omp simd sum of the tensor
//   BM_Observe/<observer>/<data>   observer.observe(x), after a first call
//   BM_Range/<rule>/<data>         range() of a 2048-bin histogram of 1M values
//
// <data>: "signed" (N(0, 1)) or "relu" (max(0, N(0, 1)): half the values in
// the histogram's first bin, the worst case for the counting loop).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "compressor/core/rng.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/quant/observers.hpp"

namespace {

using namespace compressor;
using namespace compressor::quant;

constexpr std::int64_t kN = std::int64_t{1} << 20;

Tensor<float> make_data(bool relu) {
  Tensor<float> t(Shape{kN});
  Rng rng(1);
  for (std::int64_t i = 0; i < kN; ++i) {
    const float v = static_cast<float>(rng.normal());
    t[i] = relu ? std::max(0.f, v) : v;
  }
  return t;
}

const Tensor<float>& data(bool relu) {
  static const Tensor<float> s = make_data(false), r = make_data(true);
  return relu ? r : s;
}

void set_bytes(benchmark::State& st) {
  st.SetBytesProcessed(static_cast<std::int64_t>(st.iterations()) * kN *
                       static_cast<std::int64_t>(sizeof(float)));
}

void BM_ReadBaseline(benchmark::State& st, bool relu) {
  const Tensor<float>& x = data(relu);
  const float* p = x.data();
  for (auto _ : st) {
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (std::int64_t i = 0; i < kN; ++i) s += p[i];
    benchmark::DoNotOptimize(s);
  }
  set_bytes(st);
}

void BM_Observe(benchmark::State& st, std::string_view name, bool relu) {
  const Tensor<float>& x = data(relu);
  auto o = make_observer(name);
  o->observe(x);  // the first call sets the range
  for (auto _ : st) o->observe(x);
  benchmark::DoNotOptimize(o->observed());
  set_bytes(st);
}

void BM_Range(benchmark::State& st, HistogramMethod m, bool relu) {
  HistogramObserver o(2048, m);
  o.observe(data(relu));
  for (auto _ : st) benchmark::DoNotOptimize(o.range());
}

const bool registered = [] {
  for (const bool relu : {false, true}) {
    const std::string d = relu ? "relu" : "signed";
    benchmark::RegisterBenchmark(("BM_ReadBaseline/" + d).c_str(), BM_ReadBaseline, relu);
    for (const std::string_view name : kObserverNames)
      benchmark::RegisterBenchmark(("BM_Observe/" + std::string(name) + "/" + d).c_str(),
                                   BM_Observe, name, relu);
    for (const auto m : {HistogramMethod::percentile, HistogramMethod::mse, HistogramMethod::kl})
      benchmark::RegisterBenchmark(("BM_Range/" + std::string(to_string(m)) + "/" + d).c_str(),
                                   BM_Range, m, relu)
          ->Unit(benchmark::kMillisecond);
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
