// Pruning benchmarks (fp32, forward, eval mode):
//  - Layer: a dense Conv2d against its SparseConv2d (im2col + sparse_gemm_f32)
//    at 50-95% unstructured (per-layer magnitude) sparsity, on ResNet-18's
//    3x3 shapes for one 112x112 frame and the CifarCnn's second conv for a
//    batch of 32: the rule behind FinalizeOptions::min_sparsity.
//  - Model: ResNet-18 (one 112x112 frame) dense, channel-pruned (block
//    internal channels at 0.3/0.5/0.7) and 90% unstructured with every
//    pruned layer sparse (stem and head dense).
// Counters: dense-equivalent GFLOP/s (2 * MACs of the dense layer / time).
// int8 (pruned -> PTQ -> int8, prune::finalize_sparse on the Int8Model):
//  - Int8Layer: the dense int8 conv op (Int8Conv on ConvU8S8) against the
//    same op on the sparse int8 kernel (SparseConvU8S8) at 90% sparsity, the
//    layer shapes above, both weight grids; GOP/s dense-equivalent.
//  - Int8ResNet18: the int8 ResNet-18 (one 112x112 frame, full grid) dense,
//    and 90% unstructured with every pruned layer on the sparse int8 kernel
//    (policy always) or where the measured policy found it faster.
// The latency table (tools/bench_prune_table.py turns the JSON into
// Markdown):
//  - PrunedModel: ResNet-18 (1000 classes; one 112x112 frame, and one
//    8-frame clip as a batch of 8 frames) and the CifarCnn (batch 1 and 128),
//    dense, channel-pruned (block-internal in ResNets; 0.3/0.5/0.7) and
//    unstructured (per-layer magnitude 0.5/0.8/0.9, stem and head dense,
//    finalize_sparse's default measured policy), fp32 and int8 (PTQ with
//    min/max on the benchmark input, full grid), 1 and 2 threads.
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
#include "compressor/prune/finalize_int8.hpp"
#include "compressor/prune/report.hpp"
#include "compressor/prune/unstructured.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/observers.hpp"

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

/// One batch for calibration.
class OneBatch : public data::BatchSource {
 public:
  explicit OneBatch(const Tensor<float>& x) : x_(x) {}
  void start_epoch(std::uint64_t) override { done_ = false; }
  bool next(data::Batch& out) override {
    if (done_) return false;
    out.inputs = x_;
    done_ = true;
    return true;
  }
  std::int64_t num_batches() const override { return 1; }
  std::int64_t num_samples() const override { return x_.dim(0); }

 private:
  Tensor<float> x_;
  bool done_ = false;
};

// Args: N, HW, Cin, Cout, grid (0 narrow, 1 full), sparsity %, sparse (0: dense), threads.
void int8_layer_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"N", "HW", "Cin", "Cout", "full", "pct", "sparse", "threads"});
  for (int threads : {1, 2})
    for (const auto& shape : {std::array<int, 4>{1, 28, 64, 64},
                              {1, 14, 128, 128},
                              {1, 7, 256, 256},
                              {1, 4, 512, 512},
                              {1, 4, 128, 512},
                              {32, 16, 64, 128}})
      for (int full : {1, 0})
        for (int sparse : {0, 1})
          b->Args({shape[0], shape[1], shape[2], shape[3], full, 90, sparse, threads});
}

void BM_Int8Layer(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(7)));
  const std::int64_t cin = state.range(2), cout = state.range(3);
  const auto grid = state.range(4) ? kernels::WeightGrid::full : kernels::WeightGrid::narrow;
  const int qmax = kernels::weight_qmax(grid);
  Rng rng(6);
  quant::QuantizedWeights q;
  q.weight = Tensor<std::int8_t>(Shape{cout, 3, 3, cin});
  for (auto& v : q.weight.flat())
    v = rng.uniform() < double(state.range(5)) / 100.0
            ? 0
            : static_cast<std::int8_t>(int(rng.below(static_cast<std::uint64_t>(2 * qmax + 1))) -
                                       qmax);
  q.scales.assign(static_cast<std::size_t>(cout), 0.01f);
  q.padding = 1;
  q.grid = grid;
  quant::Int8Conv op("conv", q, {0.05f, 0}, true, state.range(6) != 0);
  Tensor<std::uint8_t> x(Shape{state.range(0), state.range(1), state.range(1), cin});
  for (auto& v : x.flat()) v = static_cast<std::uint8_t>(rng.below(256));
  const quant::QView xv{std::as_const(x).view(), {0.02f, 128}};
  for (auto _ : state) benchmark::DoNotOptimize(op.forward(xv, nullptr).data.data());
  const double flops = 2.0 * double(x.numel() / cin) * double(9 * cin) * double(cout);
  state.counters["GOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Int8Layer)->Apply(int8_layer_args)->Unit(benchmark::kMicrosecond)->UseRealTime();

// Args: kind (0 dense, 1 90% all pruned layers sparse, 2 90% measured policy), threads.
void BM_Int8ResNet18(benchmark::State& state) {
  set_num_threads(static_cast<int>(state.range(1)));
  nn::init::manual_seed(3);
  models::ResNet18 net(models::ResNetOptions{});
  const Shape in{1, 112, 112, 3};
  prune::MaskSet masks;
  if (state.range(0) != 0) {
    prune::UnstructuredOptions o{.sparsity = 0.9};
    o.layers.exclude = {"conv1", "fc"};
    masks = prune::prune_unstructured(net, o);
  }
  quant::Prepared p =
      quant::prepare_ptq(net, {.observer = [] { return quant::make_observer("minmax"); }});
  const auto x = random_input(in, 4);
  OneBatch calib(x);
  quant::calibrate(p, calib);
  quant::Int8Model int8 = quant::convert(p);
  if (state.range(0) != 0) {
    const auto ds =
        prune::finalize_sparse(int8, masks, in,
                               {.policy = state.range(0) == 1 ? prune::SparsePolicy::always
                                                              : prune::SparsePolicy::measured});
    int sparse = 0;
    for (const auto& d : ds) sparse += d.sparse ? 1 : 0;
    state.counters["sparse_layers"] = sparse;
  }
  for (auto _ : state) benchmark::DoNotOptimize(int8.forward(x).data());
}
BENCHMARK(BM_Int8ResNet18)
    ->ArgNames({"kind", "threads"})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Args({2, 1})
    ->Args({0, 2})
    ->Args({1, 2})
    ->Args({2, 2})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

enum class Net { resnet_frame, resnet_clip, cifar_b1, cifar_b128 };

Shape net_input(Net n) {
  switch (n) {
    case Net::resnet_frame:
      return Shape{1, 112, 112, 3};
    case Net::resnet_clip:
      return Shape{8, 112, 112, 3};
    case Net::cifar_b1:
      return Shape{1, 32, 32, 3};
    case Net::cifar_b128:
      return Shape{128, 32, 32, 3};
  }
  return {};
}

/// A pruned (or dense) model ready to time, fp32 or int8. Built once per
/// configuration: Google Benchmark calls the function several times while it
/// sizes the iteration count, and the int8 build (calibration, the sparse
/// policy's timing probe) takes seconds.
struct PrunedSetup {
  std::array<std::int64_t, 4> key{};  // net, kind, pct, int8
  std::unique_ptr<nn::Module> fp32;
  std::unique_ptr<quant::Int8Model> int8;
  Tensor<float> x;
  double macs_vs_dense = 1;
  int sparse_layers = 0;
};

PrunedSetup& pruned_setup(const std::array<std::int64_t, 4>& key) {
  static std::unique_ptr<PrunedSetup> cached;
  if (cached && cached->key == key) return *cached;
  cached.reset();  // free the previous model first
  auto s = std::make_unique<PrunedSetup>();
  s->key = key;
  const auto net = static_cast<Net>(key[0]);
  const std::int64_t kind = key[1];
  const double ratio = static_cast<double>(key[2]) / 100.0;
  const bool resnet = net == Net::resnet_frame || net == Net::resnet_clip;
  const Shape in = net_input(net);
  nn::init::manual_seed(3);
  std::unique_ptr<nn::Module> m;
  if (resnet)
    m = std::make_unique<models::ResNet18>(models::ResNetOptions{});
  else
    m = std::make_unique<models::CifarCnn>(10);
  m->eval();
  const Shape one{1, in[1], in[2], in[3]};  // MACs per sample
  const auto dense = prune::report(*m, one);
  prune::MaskSet masks;
  if (kind == 1) prune::prune_channels(*m, {.ratio = ratio});
  if (kind == 2) {
    prune::UnstructuredOptions o{.sparsity = ratio, .scope = prune::Scope::per_layer};
    o.layers.exclude = {resnet ? "conv1" : "features.0", "fc"};
    masks = prune::prune_unstructured(*m, o);
  }
  s->macs_vs_dense = double(prune::report(*m, one).nonzero_macs) / double(dense.macs);
  s->x = random_input(in, 4);
  const auto count_sparse = [&](const std::vector<prune::SparseDecision>& ds) {
    for (const auto& d : ds) s->sparse_layers += d.sparse ? 1 : 0;
  };
  if (key[3]) {
    quant::Prepared p =
        quant::prepare_ptq(*m, {.observer = [] { return quant::make_observer("minmax"); }});
    OneBatch calib(s->x);
    quant::calibrate(p, calib);
    s->int8 = std::make_unique<quant::Int8Model>(quant::convert(p));
    if (kind == 2) count_sparse(prune::finalize_sparse(*s->int8, masks, in));
  } else {
    if (kind == 2) count_sparse(prune::finalize_sparse(*m, masks, in));
    s->fp32 = std::move(m);
  }
  // One forward pass outside the timing: the first allocates the buffers.
  if (s->int8)
    (void)s->int8->forward(s->x);
  else
    (void)s->fp32->forward(s->x);
  cached = std::move(s);
  return *cached;
}

// Args: net (Net), kind (0 dense, 1 channels, 2 unstructured), ratio %, int8, threads.
void pruned_model_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"net", "kind", "pct", "int8", "threads"});
  for (int net = 0; net < 4; ++net)
    for (int int8 : {0, 1})
      for (int threads : {1, 2}) {
        b->Args({net, 0, 0, int8, threads});
        for (int pct : {30, 50, 70}) b->Args({net, 1, pct, int8, threads});
        for (int pct : {50, 80, 90}) b->Args({net, 2, pct, int8, threads});
      }
}

void BM_PrunedModel(benchmark::State& state) {
  // The sparse policy's probe times at the benchmark's thread count.
  set_num_threads(static_cast<int>(state.range(4)));
  PrunedSetup& s = pruned_setup({state.range(0), state.range(1), state.range(2), state.range(3)});
  if (s.int8)
    for (auto _ : state) benchmark::DoNotOptimize(s.int8->forward(s.x).data());
  else
    for (auto _ : state) benchmark::DoNotOptimize(s.fp32->forward(s.x).data());
  state.counters["MACs_vs_dense"] = s.macs_vs_dense;
  state.counters["sparse_layers"] = s.sparse_layers;
  state.SetLabel(std::string(kernels::path_name(kernels::kernel_path())));
}
BENCHMARK(BM_PrunedModel)->Apply(pruned_model_args)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
