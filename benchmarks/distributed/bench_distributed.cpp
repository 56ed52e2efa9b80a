// Data-parallel training step (docs/distributed.md, docs/performance.md):
// one step (forward, loss, backward, gradient averaging, SGD) of a fixed
// GLOBAL batch, split over the ranks, on CifarCnn (128 images of 32x32) and
// the full EF regressor (ResNet-18, 4 clips of 8 frames of 112x112).
//
//   build/release/benchmarks/distributed/bench_distributed              1 rank
//   OMP_NUM_THREADS=1 mpirun -np 2 build/release/benchmarks/distributed/bench_distributed
//
// Threads per rank: the machine's hardware threads divided by the rank
// count (at least 1), so both runs use the whole machine: on a 2-core VM,
// 1 rank x 2 threads against 2 ranks x 1 thread. With one rank no averager
// runs (a plain single-process step); with several, rank 0 reports and the
// others run the same fixed iteration counts (collectives must match).
//
// Variants (several ranks): bucket_kb (the averager's bucket size: 25 MB as
// PyTorch DDP, or small buckets that backward can finish one by one) and
// overlap (1: buckets start during backward through the gradient-ready
// hooks; 0: all after backward, GradientAverager::average()).
// Counters: images/s (global samples per second: images, or clips for the
// EF model), comm% (time in the averager: packing,
// reductions, unpacking, of the step), wait% (waiting for the reductions
// after backward), buckets, overlapped (buckets started during backward per
// step), ranks, threads.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "compressor/core/threading.hpp"
#include "compressor/distributed/gradient_averager.hpp"
#include "compressor/distributed/mpi.hpp"
#include "compressor/distributed/replicate.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/models.hpp"
#include "compressor/nn.hpp"
#include "compressor/train.hpp"

using namespace compressor;

namespace {

distributed::Communicator* g_comm = nullptr;
int g_threads = 1;

Tensor<float> random_input(const Shape& s, std::uint64_t seed) {
  Rng rng(seed);
  Tensor<float> t(s);
  for (auto& v : t.flat()) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  return t;
}

struct Workload {
  std::string name;
  std::function<std::unique_ptr<nn::Module>()> make_model;
  std::function<data::Batch(std::int64_t per_rank, std::uint64_t seed)> make_batch;
  std::int64_t global_batch;
  bool classification;
  float lr;
  int iterations;
};

Workload cifar() {
  return {"CifarCnn_b128",
          [] { return std::make_unique<models::CifarCnn>(); },
          [](std::int64_t n, std::uint64_t seed) {
            data::Batch b;
            b.inputs = random_input(Shape{n, 32, 32, 3}, seed);
            b.labels = Tensor<std::int32_t>(Shape{n});
            for (std::int64_t i = 0; i < n; ++i) b.labels[i] = static_cast<std::int32_t>(i % 10);
            return b;
          },
          128,
          true,
          0.01f,
          20};
}

Workload ef_full() {
  return {"EfRegressor_4x8x112",
          [] { return std::make_unique<models::EfRegressor>(); },
          [](std::int64_t n, std::uint64_t seed) {
            data::Batch b;
            b.inputs = random_input(Shape{n, 8, 112, 112, 3}, seed);
            b.targets = Tensor<float>(Shape{n, 1});
            for (std::int64_t i = 0; i < n; ++i)
              b.targets[i] = -1.2f + 0.7f * static_cast<float>(i);  // standardised EF
            return b;
          },
          4,
          false,
          1e-3f,
          8};
}

void step_bench(benchmark::State& st, const Workload& w, std::int64_t bucket_bytes, bool overlap) {
  distributed::Communicator& comm = *g_comm;
  const int world = comm.size();
  set_num_threads(g_threads);
  nn::init::manual_seed(1);
  auto model = w.make_model();
  const std::int64_t per_rank = w.global_batch / world;
  const data::Batch batch = w.make_batch(per_rank, 7 + static_cast<std::uint64_t>(comm.rank()));
  train::Sgd sgd(*model, train::SgdOptions{.lr = w.lr, .momentum = 0.9f, .weight_decay = 5e-4f});
  std::unique_ptr<nn::Loss> loss;
  if (w.classification)
    loss = std::make_unique<nn::SoftmaxCrossEntropy>();
  else
    loss = std::make_unique<nn::MSELoss>();
  train::Trainer trainer(*model, *loss, sgd,
                         w.classification ? train::Task::classification : train::Task::regression);
  std::unique_ptr<distributed::GradientAverager> avg;
  if (world > 1) {
    distributed::broadcast_module(comm, *model);
    avg = std::make_unique<distributed::GradientAverager>(comm, *model, bucket_bytes);
    if (overlap)
      avg->attach(trainer);
    else
      trainer.add_gradient_hook([&](std::int64_t n) { avg->average(n); });
  }
  trainer.step(batch);  // warm-up: buffers allocated, buckets built
  const double seconds0 = avg ? avg->seconds() : 0, wait0 = avg ? avg->wait_seconds() : 0;
  const std::int64_t overlapped0 = avg ? avg->overlapped_buckets() : 0;
  comm.barrier();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) benchmark::DoNotOptimize(trainer.step(batch));
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double steps = static_cast<double>(st.iterations());
  st.counters["images/s"] = benchmark::Counter(static_cast<double>(w.global_batch),
                                               benchmark::Counter::kIsIterationInvariantRate);
  st.counters["ranks"] = world;
  st.counters["threads"] = g_threads;
  if (avg) {
    st.counters["comm%"] = 100.0 * (avg->seconds() - seconds0) / total;
    st.counters["wait%"] = 100.0 * (avg->wait_seconds() - wait0) / total;
    st.counters["buckets"] = static_cast<double>(avg->buckets().size());
    st.counters["overlapped"] =
        static_cast<double>(avg->overlapped_buckets() - overlapped0) / steps;
  }
}

void register_all(int world) {
  for (const Workload& w : {cifar(), ef_full()}) {
    struct Variant {
      std::int64_t bucket_kb;
      bool overlap;
    };
    // One process: the plain step. Several: DDP's 25 MB buckets, and small
    // buckets without and with overlap (what starting during backward saves).
    const std::int64_t small_kb = w.classification ? 1024 : 4096;
    std::vector<Variant> variants{{25 * 1024, true}};
    if (world > 1) {
      variants.push_back({small_kb, false});
      variants.push_back({small_kb, true});
    }
    for (const Variant& v : variants) {
      std::string name = "BM_DataParallelStep_" + w.name + "/ranks:" + std::to_string(world) +
                         "/threads:" + std::to_string(g_threads);
      if (world > 1)
        name += "/bucket_kb:" + std::to_string(v.bucket_kb) +
                "/overlap:" + std::to_string(v.overlap ? 1 : 0);
      benchmark::RegisterBenchmark(
          name.c_str(),
          [w, v](benchmark::State& st) { step_bench(st, w, v.bucket_kb * 1024, v.overlap); })
          ->Iterations(w.iterations)  // the same on every rank
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

/// Rank 0 reports; the other ranks run the same benchmarks silently.
class NullReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context&) override { return true; }
  void ReportRuns(const std::vector<Run>&) override {}
};

}  // namespace

int main(int argc, char** argv) {
  return distributed::run(argc, argv, [&](distributed::Communicator& comm) {
    g_comm = &comm;
    const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    g_threads = std::max(1, hw / comm.size());
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
      throw ValueError("bench_distributed: unrecognised arguments");
    benchmark::AddCustomContext("kernel_path",
                                std::string(kernels::path_name(kernels::kernel_path())));
    benchmark::AddCustomContext("ranks", std::to_string(comm.size()));
    register_all(comm.size());
    if (comm.rank() == 0) {
      benchmark::RunSpecifiedBenchmarks();
    } else {
      NullReporter null;
      benchmark::RunSpecifiedBenchmarks(&null);
    }
    benchmark::Shutdown();
  });
}
