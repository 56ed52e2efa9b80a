// PTQ end to end on random models: prepare -> calibrate -> convert, the int8
// model against the fake-quant model at every quantization point (fidelity),
// on both weight grids, the same bits on every kernel path (with and
// without the conv + max pool fusion that a trace turns off), the float
// boundary, and the errors of the flow.
#include <algorithm>
#include <catch2/catch.hpp>
#include <compressor/kernels/isa.hpp>
#include <compressor/models.hpp>
#include <compressor/quant/convert.hpp>
#include <compressor/quant/observers.hpp>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "quant/fidelity.hpp"
#include "quant/quant_test_util.hpp"
#include "surgery/surgery_test_util.hpp"

using namespace compressor;
using namespace compressor::models;
using compressor::testing::narrow_cifar_plan;
using compressor::testing::RandomBatches;
using compressor::testing::randomize_batchnorms;
using compressor::testing::test_config;

TEST_CASE("PTQ: the int8 model matches the fake-quant model at every point", "[quant][ptq]") {
  const quant::WeightGrid grid = GENERATE(quant::WeightGrid::full, quant::WeightGrid::narrow);
  INFO("weight grid " << quant::to_string(grid));
  // The float side (calibration, the fake-quant model) runs on the best
  // kernel path, the int8 model on the path under test (COMPRESSOR_ISA). The
  // SIMD paths' fp32 kernels agree bit for bit, but the scalar path's
  // convolutions (Eigen) sum in another order: calibrating there builds a
  // slightly different int8 model. One float path makes every path's run
  // check the same int8 model.
  const kernels::Path int8_path = kernels::kernel_path();
  const kernels::ScopedKernelPath float_path(kernels::best_path());
  Rng rng(21);
  nn::init::manual_seed(9);
  struct Case {
    std::unique_ptr<nn::Module> model;
    Shape input;
  };
  std::vector<Case> cases;
  // CifarCnn at half width: every layer, point and fusion of the full one at
  // a quarter of its MACs (the sanitizer build runs this too).
  cases.push_back({std::make_unique<CifarCnn>(narrow_cifar_plan(2)), Shape{8, 32, 32, 3}});
  ResNetOptions ro;
  ro.width = 0.25;
  ro.num_classes = 10;
  cases.push_back({std::make_unique<ResNet18>(ro), Shape{4, 48, 48, 3}});
  // An even number of frames: the temporal mean over 4 frames has exact ties
  // (one sum in four with equal scales), which the int8 op rounds half to
  // even; the fake-quant model's pool must round them the same way
  // (fake_quant_pool.hpp).
  cases.push_back({std::make_unique<EfRegressor>(EfRegressorOptions{
                       .width = 0.25, .pool = nn::TemporalPoolMode::mean_max_min}),
                   Shape{2, 4, 40, 40, 3}});
  for (auto& c : cases) {
    INFO(c.model->type_name());
    randomize_batchnorms(*c.model, rng);
    RandomBatches calib(c.input, 3, 100);
    quant::Prepared p = quant::prepare_ptq(*c.model, test_config(grid));
    CHECK(quant::calibrate(p, calib) == 3);
    quant::Int8Model int8 = quant::convert(p);
    CHECK(int8.summary().grid == grid);
    CHECK(int8.summary().points.size() == p.points.size());
    CHECK(int8.summary().float_layers.empty());
    auto fq = quant::fake_quant_model(p, int8);
    const auto x = calib.batch(7);
    const auto f = compressor::testing::lockstep_fidelity(int8, *fq, p.points, x, int8_path);
    const double excess = compressor::testing::output_steps(int8, *fq, x, int8_path);
    INFO("int8 on " << kernels::path_name(int8_path) << ": equal " << f.equal << " of "
                    << f.elements << " (" << 100 * f.equal_fraction() << "%), max diff "
                    << f.max_diff << " at " << f.worst_point << ", free-running output diff "
                    << excess << " steps");
    CHECK(f.equal_fraction() >= 0.99);
    CHECK(f.max_diff <= 1);
    CHECK(excess <= compressor::testing::kFreeRunningMaxSteps);  // fidelity.hpp
    // The averaging points follow the int8 rule exactly, ties included.
    for (const auto& point : p.points)
      if (point.kind == nn::PointKind::pool || point.kind == nn::PointKind::temporal_pool) {
        INFO("averaging point " << point.name);
        CHECK(f.unequal.at(point.name) == 0);
      }
    // The float model is untouched by all this: no hooks, BNs still there.
    CHECK(c.model->find(p.points[1].name)->output_hook() == nullptr);
  }
}

TEST_CASE("PTQ: a model quantized once computes the same bits on every kernel path",
          "[quant][ptq][isa]") {
  // On the full grid the AVX2 and AVX-512BW paths take the widening kernels
  // and the VNNI paths vpdpbusd; on the narrow grid every path but scalar may
  // use vpmaddubsw. Every uint8 tensor at every point, and the float output,
  // must equal the scalar path's bit for bit.
  namespace k = compressor::kernels;
  const quant::WeightGrid grid = GENERATE(quant::WeightGrid::full, quant::WeightGrid::narrow);
  INFO("weight grid " << quant::to_string(grid));
  Rng rng(23);
  nn::init::manual_seed(11);
  struct Case {
    std::unique_ptr<nn::Module> model;
    Shape input;
  };
  std::vector<Case> cases;
  cases.push_back({std::make_unique<CifarCnn>(narrow_cifar_plan(2)), Shape{3, 32, 32, 3}});
  ResNetOptions ro;
  ro.width = 0.25;
  ro.num_classes = 10;
  cases.push_back({std::make_unique<ResNet18>(ro), Shape{2, 40, 40, 3}});
  cases.push_back({std::make_unique<EfRegressor>(EfRegressorOptions{
                       .width = 0.125, .pool = nn::TemporalPoolMode::mean_max_min}),
                   Shape{1, 3, 40, 40, 3}});
  for (auto& c : cases) {
    INFO(c.model->type_name());
    randomize_batchnorms(*c.model, rng);
    quant::Int8Model int8 = compressor::testing::ptq_int8(*c.model, c.input, 2, 300, grid);
    REQUIRE(int8.summary().grid == grid);
    const Tensor<float> x = RandomBatches(c.input, 1, 301).batch(0);
    // Every point's uint8 tensor and the output, on path p.
    auto run = [&](k::Path p) {
      k::ScopedKernelPath scope(p);
      std::map<std::string, std::vector<std::uint8_t>> points;
      int8.set_trace(
          [&](const std::string& point, TensorView<std::uint8_t> data, quant::QuantParams) {
            points[point].assign(data.data(), data.data() + data.numel());
          });
      const Tensor<float> y(int8.forward(x));
      int8.set_trace({});
      return std::make_pair(points, y);
    };
    const auto [want_points, want] = run(k::Path::scalar);
    CHECK(want_points.size() == int8.summary().points.size());
    // The CifarCnn's four convs run their 2x2 max pools too: fused without
    // a trace (above, unfused: the trace reads each conv's output point).
    int fused = 0;
    for (const auto& l : int8.summary().layers) {
      auto* conv = dynamic_cast<quant::Int8Conv*>(int8.layer_op(l.name));
      CHECK(l.max_pool2 == (conv != nullptr && conv->fused_max_pool2()));
      fused += l.max_pool2 ? 1 : 0;
    }
    CHECK(fused == (c.model->type_name() == "CifarCnn" ? 4 : 0));
    int paths = 0;
    for (const k::Path p : k::supported_paths()) {
      INFO("path " << k::path_name(p));
      {
        k::ScopedKernelPath scope(p);
        const Tensor<float> untraced(int8.forward(x));
        REQUIRE(untraced.shape() == want.shape());
        CHECK(std::memcmp(untraced.data(), want.data(),
                          sizeof(float) * std::size_t(want.numel())) == 0);
      }
      const auto [got_points, got] = run(p);
      REQUIRE(got_points.size() == want_points.size());
      for (const auto& [name, values] : want_points) {
        const auto it = got_points.find(name);
        REQUIRE(it != got_points.end());
        INFO("point " << name);
        CHECK((it->second == values));
      }
      REQUIRE(got.shape() == want.shape());
      CHECK(std::memcmp(got.data(), want.data(), sizeof(float) * std::size_t(got.numel())) == 0);
      ++paths;
    }
    CHECK(paths >= 1);
  }
}

TEST_CASE("PTQ: the int8 model's output tracks the float model", "[quant][ptq]") {
  Rng rng(22);
  nn::init::manual_seed(10);
  CifarCnn net(narrow_cifar_plan(2));  // half width, as above
  randomize_batchnorms(net, rng);
  net.eval();
  RandomBatches calib(Shape{8, 32, 32, 3}, 4, 200);
  quant::Prepared p = quant::prepare_ptq(net, test_config());
  quant::calibrate(p, calib);
  quant::Int8Model int8 = quant::convert(p);
  const Tensor<float> x = calib.batch(1);
  const Tensor<float> ref(net.forward(x));
  const Tensor<float> got(int8.forward(x));
  double num = 0, den = 0;
  for (std::int64_t i = 0; i < ref.numel(); ++i) {
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  const double sqnr = 10 * std::log10(den / num);
  INFO("output SQNR " << sqnr << " dB");
  CHECK(sqnr > 15);
  // int8 weights + int32 biases + float scales: about a quarter of the fp32 bytes.
  CHECK(double(int8.weight_bytes()) < 0.26 * 4.0 * double(net.num_parameters()));
}

TEST_CASE("PTQ: the output point keeps its whole range unless asked otherwise", "[quant][ptq]") {
  nn::init::manual_seed(7);
  EfRegressor net({.width = 0.125});
  net.set_output_bias(50.f);  // EF-like outputs, far from 0
  net.eval();
  auto kl = [] { return quant::make_observer("histogram_kl"); };
  quant::Prepared p = quant::prepare_ptq(net, {.observer = kl});
  for (const auto& pt : p.points) {
    INFO(pt.name);
    CHECK(p.model->find(pt.name)->output_hook()->type_name() ==
          (pt.kind == nn::PointKind::output ? "MinMaxObserver" : "HistogramObserver"));
  }
  RandomBatches calib(Shape{3, 2, 32, 32, 3}, 3, 11);
  quant::calibrate(p, calib);
  float lo = 1e30f, hi = -1e30f;
  for (int b = 0; b < 3; ++b) {
    const Tensor<float> y(net.forward(calib.batch(b)));
    for (const float v : y.flat()) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  const quant::QuantParams q =
      nn::as<quant::Observer>(*p.model->find("head")->output_hook())->qparams();
  INFO("outputs [" << lo << ", " << hi << "], scale " << q.scale << ", zero point "
                   << q.zero_point);
  // The float model's outputs are representable: nothing above them clipped.
  CHECK(q.scale * static_cast<float>(255 - q.zero_point) >= hi * (1 - 1e-6f));
  CHECK(q.scale * static_cast<float>(255 - q.zero_point) <= hi * 1.01f);
  // Asked for, the output gets the activations' observer.
  quant::Prepared same = quant::prepare_ptq(net, {.observer = kl, .output_observer = kl});
  CHECK(same.model->find("head")->output_hook()->type_name() == "HistogramObserver");
}

TEST_CASE("PTQ: errors of the flow", "[quant][ptq]") {
  CifarCnn net;
  SECTION("calibration on zero batches") {
    quant::Prepared p = quant::prepare_ptq(net, test_config());
    RandomBatches none(Shape{2, 32, 32, 3}, 0, 1);
    CHECK_THROWS_WITH(quant::calibrate(p, none), Catch::Contains("gave no batches"));
    CHECK_THROWS_WITH(quant::convert(p), Catch::Contains("'quant': its observer saw no data"));
  }
  SECTION("NaN in the calibration data names the point") {
    quant::Prepared p = quant::prepare_ptq(net, test_config());
    RandomBatches calib(Shape{2, 32, 32, 3}, 1, 1);
    struct NanSource : data::BatchSource {
      void start_epoch(std::uint64_t) override { done = false; }
      bool next(data::Batch& b) override {
        if (done) return false;
        b.inputs = Tensor<float>(Shape{2, 32, 32, 3}, 0.5f);
        b.inputs.data()[17] = std::nanf("");
        done = true;
        return true;
      }
      std::int64_t num_batches() const override { return 1; }
      std::int64_t num_samples() const override { return 2; }
      bool done = false;
    } nan_source;
    CHECK_THROWS_WITH(
        quant::calibrate(p, nan_source),
        Catch::Contains("quantization point 'quant'") && Catch::Contains("non-finite"));
  }
  SECTION("a model edited after calibration") {
    quant::Prepared p = quant::prepare_ptq(net, test_config());
    RandomBatches calib(Shape{2, 32, 32, 3}, 1, 1);
    quant::calibrate(p, calib);
    const std::vector<std::int64_t> keep{0, 1, 2};
    nn::select_output_channels(*p.model, "fc", keep);
    CHECK_THROWS_WITH(quant::convert(p), Catch::Contains("edited after prepare_ptq"));
  }
  SECTION("layers with no int8 form are all listed") {
    auto n = compressor::testing::net_with_unsupported_layers();
    quant::Prepared p = quant::prepare_ptq(*n, test_config());
    RandomBatches calib(Shape{2, 8, 8, 3}, 1, 1);
    quant::calibrate(p, calib);
    CHECK_THROWS_WITH(quant::convert(p),
                      Catch::Contains("2 layer(s) of Sequential have no int8 "
                                      "form") &&
                          Catch::Contains("3 (BatchNorm2d: not folded into a conv)") &&
                          Catch::Contains("4 (Twice)") && Catch::Contains("allow_float_islands"));
  }
}
