// Whole-model inference latency: the int8 model beside the fp32 deploy model
// (BatchNorm folded, eval only) of the same weights, per kernel path, in one
// run. These are issue 12's latency rows; tools/compare_quant_pytorch.py puts
// PyTorch's eager int8 engines beside them.
//
//   BM_Model/<model>/<precision>/<path>/threads:<t>
//
// <model>: cifar_cnn_b1 and cifar_cnn_b128 (CifarCnn, 32x32 NHWC images),
// ef_clip (EfRegressor on one clip of 8 frames of 112x112), resnet18_b1
// (one 112x112 frame). <precision>: int8 or fp32. <path>: every path this CPU
// runs (kernels/isa.hpp), set before the timed loop. Weights are random (seed
// 1) and the int8 model is calibrated with the MinMax observer on 4 random
// batches: latency does not depend on the values of dense weights.
// Time: one forward of the whole batch or clip (real time: the forward is
// multi-threaded); samples_per_s: images or clips per second.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "compressor/core/rng.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/data/batch.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/models/cifar_cnn.hpp"
#include "compressor/models/ef_regressor.hpp"
#include "compressor/models/resnet.hpp"
#include "compressor/nn/init.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/observers.hpp"

namespace {

using namespace compressor;

Tensor<float> random_input(const Shape& s, std::uint64_t seed) {
  Tensor<float> t(s);
  Rng rng(seed);
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(rng.normal());
  return t;
}

/// `batches` random batches of one shape, for calibration.
class RandomSource : public data::BatchSource {
 public:
  RandomSource(Shape shape, int batches) : shape_(shape), n_(batches) {}
  void start_epoch(std::uint64_t) override { i_ = 0; }
  bool next(data::Batch& out) override {
    if (i_ >= n_) return false;
    out.inputs = random_input(shape_, 100 + static_cast<std::uint64_t>(i_++));
    return true;
  }
  std::int64_t num_batches() const override { return n_; }
  std::int64_t num_samples() const override { return n_ * shape_[0]; }

 private:
  Shape shape_;
  int n_, i_ = 0;
};

struct Case {
  std::function<std::unique_ptr<nn::Module>()> make;
  Shape input;           ///< one timed forward
  Shape calibration;     ///< one calibration batch
  std::int64_t samples;  ///< images or clips per forward
};

const std::map<std::string, Case>& cases() {
  static const std::map<std::string, Case> c = {
      {"cifar_cnn_b1",
       {[] { return std::make_unique<models::CifarCnn>(); }, Shape{1, 32, 32, 3},
        Shape{32, 32, 32, 3}, 1}},
      {"cifar_cnn_b128",
       {[] { return std::make_unique<models::CifarCnn>(); }, Shape{128, 32, 32, 3},
        Shape{32, 32, 32, 3}, 128}},
      {"ef_clip",
       {[] { return std::make_unique<models::EfRegressor>(); }, Shape{1, 8, 112, 112, 3},
        Shape{1, 8, 112, 112, 3}, 1}},
      {"resnet18_b1",
       {[] { return std::make_unique<models::ResNet18>(); }, Shape{1, 112, 112, 3},
        Shape{4, 112, 112, 3}, 1}},
  };
  return c;
}

/// The float model and its two deploy forms, built once per case.
struct Models {
  std::unique_ptr<nn::Module> fp32;
  std::unique_ptr<quant::Int8Model> int8;
};

Models& models_for(const std::string& name) {
  static std::map<std::string, Models> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  const Case& c = cases().at(name);
  nn::init::manual_seed(1);
  std::unique_ptr<nn::Module> net = c.make();
  Models m;
  m.fp32 = quant::fp32_deploy_model(*net);
  quant::Prepared p =
      quant::prepare_ptq(*net, {.observer = [] { return quant::make_observer("minmax"); }});
  RandomSource calibration(c.calibration, 4);
  quant::calibrate(p, calibration, 4);
  m.int8 = std::make_unique<quant::Int8Model>(quant::convert(p));
  return cache.emplace(name, std::move(m)).first->second;
}

void BM_Model(benchmark::State& state, std::string name, bool int8, kernels::Path path) {
  const int threads = static_cast<int>(state.range(0));
  set_num_threads(threads);
  kernels::ScopedKernelPath on(path);
  Models& m = models_for(name);
  const Case& c = cases().at(name);
  const Tensor<float> x = random_input(c.input, 7);
  const auto run = [&] {
    if (int8)
      benchmark::DoNotOptimize(m.int8->forward(x.view()).data());
    else
      benchmark::DoNotOptimize(m.fp32->forward(x.view()).data());
  };
  for (int i = 0; i < 3; ++i) run();  // warm-up: scratch buffers, caches
  for (auto _ : state) run();
  state.counters["samples_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * c.samples), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(kernels::path_name(path)));
}

int register_all() {
  for (const auto& [name, c] : cases())
    for (bool int8 : {true, false})
      for (kernels::Path path : kernels::supported_paths()) {
        const std::string bench_name = "BM_Model/" + name + (int8 ? "/int8/" : "/fp32/") +
                                       std::string(kernels::path_name(path));
        benchmark::RegisterBenchmark(bench_name.c_str(), BM_Model, name, int8, path)
            ->ArgName("threads")
            ->Arg(1)
            ->Arg(2)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
      }
  return 0;
}

[[maybe_unused]] const int registered = register_all();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("kernel_path_best",
                              std::string(kernels::path_name(kernels::best_path())));
  benchmark::AddCustomContext("cpu_features", kernels::cpu_features().str());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
