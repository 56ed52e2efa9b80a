// Not a benchmark: what the full weight grid buys end to end. PTQ of CifarCnn,
// ResNet18 (width 0.25) and EfRegressor (width 0.25) on the narrow [-64, 64]
// and the full [-127, 127] weight grid, from the same float model and the
// same calibration, and the SQNR of each int8 model against the float model
// (quant::measure_sqnr) at its output and, worst, at any quantization point
// (docs/quantization.md, "Weight grid").
//
//   int8_grid_sqnr [--seeds N]
//
// Models: random weights (the models' initialisation, seeds 1..N) with every
// BatchNorm's affine parameters and running statistics randomized (as the
// quantization tests do), so that activations have the spread of a trained
// model's rather than the identity BN of a fresh one. Calibration: 4 batches
// of uniform [-1.5, 1.5] inputs, MinMax observer; evaluation: 4 other
// batches. Activation parameters do not depend on the grid (observers see
// float activations), so the difference is the weights' rounding alone.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/data/batch.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/models.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/init.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/observers.hpp"
#include "compressor/quant/sensitivity.hpp"
#include "quant/quant_test_util.hpp"      // RandomBatches
#include "surgery/surgery_test_util.hpp"  // randomize_batchnorms

namespace {

using namespace compressor;

using compressor::testing::RandomBatches;
using compressor::testing::randomize_batchnorms;

struct Sqnr {
  double output = 0, worst = std::numeric_limits<double>::infinity();
};

Sqnr measure(nn::Module& net, const Shape& input, quant::WeightGrid grid, std::uint64_t seed) {
  quant::Prepared p = quant::prepare_ptq(
      net, {.observer = [] { return quant::make_observer("minmax"); }, .grid = grid});
  RandomBatches calibration(input, 4, 1000 * seed, -1.5f, 1.5f);
  quant::calibrate(p, calibration);
  quant::Int8Model int8 = quant::convert(p);
  RandomBatches eval(input, 4, 1000 * seed + 500, -1.5f, 1.5f);
  quant::measure_sqnr(int8, net, eval);
  Sqnr s;
  s.output = int8.summary().points.back().sqnr_db;
  for (const auto& pt : int8.summary().points)
    if (pt.name != int8.input_point()) s.worst = std::min(s.worst, pt.sqnr_db);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int seeds = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--seeds" && i + 1 < argc) {
      seeds = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: int8_grid_sqnr [--seeds N]\n");
      return 2;
    }
  }
  if (seeds < 1) {
    std::fprintf(stderr, "int8_grid_sqnr: --seeds must be at least 1\n");
    return 2;
  }
  struct Case {
    std::string name;
    std::function<std::unique_ptr<nn::Module>()> make;
    Shape input;
  };
  const std::vector<Case> cases{
      {"CifarCnn", [] { return std::make_unique<models::CifarCnn>(); }, Shape{16, 32, 32, 3}},
      {"ResNet18 (width 0.25, 10 classes, 64x64)",
       [] {
         models::ResNetOptions o;
         o.width = 0.25;
         o.num_classes = 10;
         return std::make_unique<models::ResNet18>(o);
       },
       Shape{8, 64, 64, 3}},
      {"EfRegressor (width 0.25, mean_max_min, 4 frames of 64x64)",
       [] {
         return std::make_unique<models::EfRegressor>(
             models::EfRegressorOptions{.width = 0.25, .pool = nn::TemporalPoolMode::mean_max_min});
       },
       Shape{2, 4, 64, 64, 3}},
  };
  std::printf("kernel path %s; SQNR in dB against the float model, mean over %d seed(s)\n",
              std::string(kernels::path_name(kernels::kernel_path())).c_str(), seeds);
  std::printf(
      "| model | output, narrow | output, full | gain | worst point, narrow | worst "
      "point, full | gain |\n|---|---|---|---|---|---|---|\n");
  for (const auto& c : cases) {
    Sqnr narrow, full;
    narrow.worst = full.worst = 0;
    for (int s = 1; s <= seeds; ++s) {
      nn::init::manual_seed(static_cast<std::uint64_t>(s));
      auto net = c.make();
      Rng rng(static_cast<std::uint64_t>(100 + s));
      randomize_batchnorms(*net, rng);
      net->eval();
      const Sqnr n = measure(*net, c.input, quant::WeightGrid::narrow, s);
      const Sqnr f = measure(*net, c.input, quant::WeightGrid::full, s);
      narrow.output += n.output / seeds;
      narrow.worst += n.worst / seeds;
      full.output += f.output / seeds;
      full.worst += f.worst / seeds;
    }
    std::printf("| %s | %.2f | %.2f | %+.2f | %.2f | %.2f | %+.2f |\n", c.name.c_str(),
                narrow.output, full.output, full.output - narrow.output, narrow.worst, full.worst,
                full.worst - narrow.worst);
    std::fflush(stdout);
  }
  return 0;
}
