// Whole-model inference latency: the int8 model beside the fp32 deploy model
// (BatchNorm folded, eval only) of the same weights, per kernel path, in one
// run. These are issue 12's latency rows; tools/compare_quant_pytorch.py puts
// PyTorch's eager int8 engines beside them.
//
//   BM_Model/<model>/<precision>/<path>/threads:<t>
//
// <model>: cifar_cnn_b1 and cifar_cnn_b128 (CifarCnn, 32x32 NHWC images),
// ef_clip (EfRegressor on one clip of 8 frames of 112x112), ef_demo (the
// README demo's EfRegressor: width 0.25, mean+max+min pooling, one clip of
// 16 frames of 64x64), resnet18_b1 (one 112x112 frame). <precision>: int8
// (weights on PTQ's default grid,
// full [-127, 127]; int8_unfused, CifarCnn only: the same with each conv
// and the 2x2 max pool after it run apart instead of in one pass),
// int8_narrow (the narrow grid [-64, 64], which the AVX2
// and AVX-512BW paths run on vpmaddubsw; full-grid weights take their
// widening kernel) or fp32. <path>: every path this CPU runs
// (kernels/isa.hpp), set before the timed loop. Weights are random (seed 1)
// and the int8 models are calibrated with the MinMax observer on 4 random
// batches: latency does not depend on the values of dense weights, only on
// their grid.
// Time: one forward of the whole batch or clip (real time: the forward is
// multi-threaded); samples_per_s: images or clips per second.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
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
      {"ef_demo",
       {[] {
          return std::make_unique<models::EfRegressor>(models::EfRegressorOptions{
              .width = 0.25, .pool = nn::TemporalPoolMode::mean_max_min});
        },
        Shape{1, 16, 64, 64, 3}, Shape{1, 16, 64, 64, 3}, 1}},
      {"resnet18_b1",
       {[] { return std::make_unique<models::ResNet18>(); }, Shape{1, 112, 112, 3},
        Shape{4, 112, 112, 3}, 1}},
  };
  return c;
}

/// The float model and its deploy forms (fp32, int8 per weight grid), built
/// once per case.
struct Models {
  std::unique_ptr<nn::Module> net;
  std::unique_ptr<nn::Module> fp32;
  std::map<quant::WeightGrid, std::unique_ptr<quant::Int8Model>> int8;
};

Models& models_for(const std::string& name) {
  static std::map<std::string, Models> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  const Case& c = cases().at(name);
  nn::init::manual_seed(1);
  Models m;
  m.net = c.make();
  m.fp32 = quant::fp32_deploy_model(*m.net);
  return cache.emplace(name, std::move(m)).first->second;
}

quant::Int8Model& int8_for(const std::string& name, quant::WeightGrid grid) {
  Models& m = models_for(name);
  auto& slot = m.int8[grid];
  if (!slot) {
    quant::Prepared p = quant::prepare_ptq(
        *m.net, {.observer = [] { return quant::make_observer("minmax"); }, .grid = grid});
    RandomSource calibration(cases().at(name).calibration, 4);
    quant::calibrate(p, calibration, 4);
    slot = std::make_unique<quant::Int8Model>(quant::convert(p));
  }
  return *slot;
}

/// Runs each conv of `int8` that holds the 2x2 max pool after it in one pass
/// (true) or as the conv, then the pool (false).
void set_conv_pool_one_pass(quant::Int8Model& int8, bool one_pass) {
  for (const auto& l : int8.summary().layers)
    if (auto* conv = dynamic_cast<quant::Int8Conv*>(int8.layer_op(l.name)))
      conv->set_max_pool2_one_pass(one_pass);
}

/// grid: the int8 model on that grid; none: the fp32 deploy model.
/// conv_pool_one_pass: false runs the int8 CifarCnn's convs and their max
/// pools apart (int8_unfused).
void BM_Model(benchmark::State& state, std::string name, std::optional<quant::WeightGrid> grid,
              kernels::Path path, bool conv_pool_one_pass) {
  const int threads = static_cast<int>(state.range(0));
  set_num_threads(threads);
  kernels::ScopedKernelPath on(path);
  nn::Module& fp32 = *models_for(name).fp32;
  quant::Int8Model* int8 = grid ? &int8_for(name, *grid) : nullptr;
  if (int8) set_conv_pool_one_pass(*int8, conv_pool_one_pass);
  const Case& c = cases().at(name);
  const Tensor<float> x = random_input(c.input, 7);
  const auto run = [&] {
    if (int8)
      benchmark::DoNotOptimize(int8->forward(x.view()).data());
    else
      benchmark::DoNotOptimize(fp32.forward(x.view()).data());
  };
  for (int i = 0; i < 3; ++i) run();  // warm-up: scratch buffers, caches
  for (auto _ : state) run();
  state.counters["samples_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * c.samples), benchmark::Counter::kIsRate);
  state.SetLabel(std::string(kernels::path_name(path)) +
                 (grid ? ", grid " + std::string(quant::to_string(*grid)) : std::string()));
}

int register_all() {
  using G = std::optional<quant::WeightGrid>;
  struct Precision {
    const char* name;
    G grid;
    bool one_pass;
  };
  const Precision precisions[] = {{"int8", quant::PtqConfig{}.grid, true},
                                  {"int8_unfused", quant::PtqConfig{}.grid, false},
                                  {"int8_narrow", quant::WeightGrid::narrow, true},
                                  {"fp32", std::nullopt, true}};
  for (const auto& [name, c] : cases())
    for (const auto& [precision, grid, one_pass] : precisions)
      for (kernels::Path path : kernels::supported_paths()) {
        if (!one_pass && !name.starts_with("cifar_cnn")) continue;  // no conv + 2x2 pool
        const std::string bench_name =
            "BM_Model/" + name + "/" + precision + "/" + std::string(kernels::path_name(path));
        benchmark::RegisterBenchmark(bench_name.c_str(), BM_Model, name, grid, path, one_pass)
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
