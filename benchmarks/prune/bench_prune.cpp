// Pruning benchmarks (fp32, forward, eval mode):
//  - Layer: a dense Conv2d against its SparseConv2d (im2col + sparse_gemm_f32)
//    at 50-95% unstructured (per-layer magnitude) sparsity, on ResNet-18's
//    3x3 shapes for one 112x112 frame and the CifarCnn's second conv for a
//    batch of 32: the rule behind FinalizeOptions::min_sparsity.
//  - Model: ResNet-18 (one 112x112 frame) dense, channel-pruned (block
//    internal channels at 0.3/0.5/0.7) and 90% unstructured with every
//    pruned layer sparse (stem and head dense).
// Counters: dense-equivalent GFLOP/s (2 * MACs of the dense layer / time).
//
//   build/release/benchmarks/prune/bench_prune --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <array>
#include <cstdint>
#include <memory>

#include "compressor/core/threading.hpp"
#include "compressor/models.hpp"
#include "compressor/nn.hpp"
#include "compressor/prune/channel.hpp"
#include "compressor/prune/finalize.hpp"
#include "compressor/prune/report.hpp"
#include "compressor/prune/unstructured.hpp"

using namespace compressor;

namespace {

Tensor<float> random_input(const Shape& s, std::uint64_t seed) {
  Rng rng(seed);
  Tensor<float> t(s);
  for (auto& v : t.flat()) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  return t;
}

// Args: N, HW, Cin, Cout, stride, sparsity %, sparse (0: dense), threads.
void layer_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "HW", "Cin", "Cout", "s", "pct", "sparse", "threads"});
  for (int threads : {1, 2})
    for (const auto& shape : {std::array<int, 5>{1, 28, 64, 64, 1},
                              {1, 14, 128, 128, 1},
                              {1, 7, 256, 256, 1},
                              {32, 16, 64, 128, 1}}) {
      b->Args({shape[0], shape[1], shape[2], shape[3], shape[4], 0, 0, threads});
      for (int pct : {50, 70, 80, 90, 95})
        b->Args({shape[0], shape[1], shape[2], shape[3], shape[4], pct, 1, threads});
    }
}

void BM_Layer(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(7)));
  nn::init::manual_seed(1);
  nn::Sequential holder;
  holder.emplace<nn::Conv2d>(state.range(2), state.range(3), 3, state.range(4), 1, false);
  holder.eval();
  const double s = static_cast<double>(state.range(5)) / 100.0;
  prune::prune_unstructured(holder, {.sparsity = s});
  std::unique_ptr<nn::Module> sparse;
  nn::Module* layer = &holder.child("0");
  if (state.range(6)) {
    sparse = prune::make_sparse(*nn::as<nn::WeightedLayer>(*layer));
    layer = sparse.get();
  }
  const auto x =
      random_input(Shape{state.range(0), state.range(1), state.range(1), state.range(2)}, 2);
  for (auto _ : state) benchmark::DoNotOptimize(layer->forward(x).data());
  const auto g = nn::conv_geometry(
      nn::Conv2dOptions{state.range(2), state.range(3), 3, state.range(4), 1, false}, x.shape());
  const double flops = 2.0 * double(g.rows()) * double(g.cols()) * double(state.range(3));
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Layer)->Apply(layer_args)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Args: kind (0 dense, 1 channel-pruned, 2 90% unstructured sparse), ratio %, threads.
void BM_ResNet18(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(2)));
  nn::init::manual_seed(3);
  std::unique_ptr<nn::Module> net = std::make_unique<models::ResNet18>(models::ResNetOptions{});
  const Shape in{1, 112, 112, 3};
  const auto dense = prune::report(*net, in);
  if (state.range(0) == 1)
    prune::prune_channels(*net, {.ratio = static_cast<double>(state.range(1)) / 100.0});
  if (state.range(0) == 2) {
    prune::UnstructuredOptions o{.sparsity = 0.9};
    o.layers.exclude = {"conv1", "fc"};
    const auto masks = prune::prune_unstructured(*net, o);
    prune::finalize_sparse(*net, masks, in, {.policy = prune::SparsePolicy::always});
  }
  net->eval();
  const auto r = prune::report(*net, in);
  const auto x = random_input(in, 4);
  for (auto _ : state) benchmark::DoNotOptimize(net->forward(x).data());
  state.counters["MACs_vs_dense"] = double(r.nonzero_macs) / double(dense.macs);
}
BENCHMARK(BM_ResNet18)
    ->ArgNames({"kind", "pct", "threads"})
    ->Args({0, 0, 1})
    ->Args({1, 30, 1})
    ->Args({1, 50, 1})
    ->Args({1, 70, 1})
    ->Args({2, 90, 1})
    ->Args({0, 0, 2})
    ->Args({1, 50, 2})
    ->Args({2, 90, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
