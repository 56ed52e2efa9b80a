// The PTQ helpers: cross-layer equalization, bias correction and float
// islands, each a PtqConfig switch.
#include <catch2/catch.hpp>
#include <cmath>
#include <compressor/models.hpp>
#include <compressor/quant/choose_rule.hpp>
#include <compressor/quant/convert.hpp>
#include <compressor/quant/equalize.hpp>
#include <compressor/quant/int8_io.hpp>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "quant/fidelity.hpp"
#include "quant/quant_test_util.hpp"
#include "surgery/surgery_test_util.hpp"

using namespace compressor;
using namespace compressor::models;
using compressor::testing::RandomBatches;
using compressor::testing::randomize_batchnorms;
using compressor::testing::rel_to_max;
using compressor::testing::test_config;

namespace {

/// Sum over the pairs of the variance of log(range) over layer 1's output
/// channels and layer 2's input channels: how unequal the channels are.
double range_spread(nn::Module& m, const std::vector<std::pair<std::string, std::string>>& pairs) {
  auto log_var = [](const std::vector<double>& r) {
    double mean = 0, var = 0;
    for (double v : r) mean += std::log(v) / double(r.size());
    for (double v : r) var += (std::log(v) - mean) * (std::log(v) - mean) / double(r.size());
    return var;
  };
  double s = 0;
  for (const auto& [a, b] : pairs) {
    s += log_var(quant::internal::output_channel_ranges(*nn::as<nn::WeightedLayer>(*m.find(a))));
    s += log_var(quant::internal::input_channel_ranges(*nn::as<nn::WeightedLayer>(*m.find(b))));
  }
  return s;
}

/// Every point of the summary (the model's and the islands' outputs).
std::vector<nn::QuantPoint> summary_points(const quant::Int8Model& m) {
  std::vector<nn::QuantPoint> out;
  for (const auto& p : m.summary().points) out.push_back({p.name, p.kind});
  return out;
}

/// Mean over output channels of |mean over samples of (int8 - float)|.
double mean_channel_bias(quant::Int8Model& int8, nn::Module& ref, const RandomBatches& data,
                         int batches) {
  std::vector<double> err;
  std::int64_t rows = 0;
  for (int b = 0; b < batches; ++b) {
    const Tensor<float> x = data.batch(b);
    const Tensor<float> want(ref.forward(x));
    const Tensor<float> got(int8.forward(x));
    const std::int64_t c = want.dim(want.rank() - 1), n = want.numel() / c;
    err.resize(static_cast<std::size_t>(c), 0.0);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t o = 0; o < c; ++o)
        err[static_cast<std::size_t>(o)] += double(got[i * c + o]) - double(want[i * c + o]);
    rows += n;
  }
  double s = 0;
  for (double e : err) s += std::abs(e / double(rows)) / double(err.size());
  return s;
}

}  // namespace

TEST_CASE(
    "CLE: pairs are declared after BN folding, the function is unchanged, the ranges even out",
    "[quant][cle]") {
  Rng rng(31);
  nn::init::manual_seed(12);
  struct Case {
    std::unique_ptr<nn::Module> model;
    Shape input;
    std::size_t pairs;
  };
  std::vector<Case> cases;
  const nn::ChannelPlan small = compressor::testing::narrow_cifar_plan(4);
  cases.push_back({std::make_unique<CifarCnn>(small), Shape{4, 32, 32, 3}, 3});
  const ResNetOptions ro{.num_classes = 10, .width = 0.25};
  cases.push_back({std::make_unique<ResNet18>(ro), Shape{2, 40, 40, 3}, 8});
  cases.push_back({std::make_unique<EfRegressor>(EfRegressorOptions{.width = 0.125}),
                   Shape{1, 2, 40, 40, 3}, 8});
  for (auto& c : cases) {
    INFO(c.model->type_name());
    randomize_batchnorms(*c.model, rng);
    CHECK(quant::equalization_pairs(*c.model).empty());  // BNs in between: nothing to equalize
    auto folded = quant::fp32_deploy_model(*c.model);
    auto eq = folded->clone();
    const auto report = quant::equalize_cross_layer(*eq);
    CHECK(report.pairs.size() == c.pairs);
    CHECK(report.last_max_log_scale <= 1e-4);
    const double before = range_spread(*folded, report.pairs);
    const double after = range_spread(*eq, report.pairs);
    INFO("log-range variance summed over pairs: " << before << " -> " << after << " in "
                                                  << report.sweeps << " sweeps");
    CHECK(after < 0.75 * before);
    Rng xr(5);
    const Tensor<float> x = compressor::testing::random_tensor(c.input, xr, -1.f, 1.f);
    const Tensor<float> want(folded->forward(x));
    const Tensor<float> got(eq->forward(x));
    CHECK(rel_to_max(got, want) <= 1e-5);
  }
}

TEST_CASE("CLE as a PtqConfig switch: applied before the observers, the int8 model stays faithful",
          "[quant][cle]") {
  Rng rng(32);
  nn::init::manual_seed(13);
  const ResNetOptions ro{.num_classes = 10, .width = 0.25};
  ResNet18 net(ro);
  randomize_batchnorms(net, rng);
  net.eval();
  auto cfg = test_config();
  cfg.cross_layer_equalization = true;
  quant::Prepared p = quant::prepare_ptq(net, cfg);
  RandomBatches calib(Shape{2, 40, 40, 3}, 2, 300);
  quant::calibrate(p, calib);
  const Tensor<float> x = calib.batch(0);
  const Tensor<float> want(net.forward(x));
  const Tensor<float> got(p.model->forward(x));  // observers pass values through
  CHECK(rel_to_max(got, want) <= 1e-5);
  quant::Int8Model int8 = quant::convert(p);
  REQUIRE(int8.summary().passes.size() == 1);
  CHECK_THAT(int8.summary().str(), Catch::Contains("cross-layer equalization: 8 pairs"));
  auto fq = quant::fake_quant_model(p, int8);
  const auto f = compressor::testing::lockstep_fidelity(int8, *fq, p.points, x);
  CHECK(f.equal_fraction() >= 0.99);
  CHECK(f.max_diff <= 1);
}

TEST_CASE("Bias correction lowers the mean per-channel output error of the int8 model",
          "[quant][bias_correction]") {
  Rng rng(33);
  nn::init::manual_seed(14);
  const nn::ChannelPlan plan = compressor::testing::narrow_cifar_plan(4);
  CifarCnn net(plan);
  randomize_batchnorms(net, rng);
  net.eval();
  RandomBatches calib(Shape{16, 32, 32, 3}, 4, 400, -0.5f, 1.5f);
  RandomBatches held_out(Shape{16, 32, 32, 3}, 8, 500, -0.5f, 1.5f);
  auto run = [&](bool correct) {
    auto cfg = test_config();
    cfg.bias_correction = correct;
    quant::Prepared p = quant::prepare_ptq(net, cfg);
    quant::calibrate(p, calib);
    CHECK(p.bias_corrected == correct);
    quant::Int8Model int8 = quant::convert(p);
    CHECK(int8.summary().passes.size() == (correct ? 1u : 0u));
    return mean_channel_bias(int8, net, held_out, 8);
  };
  const double plain = run(false);
  const double corrected = run(true);
  INFO("mean |per-channel output bias|: " << plain << " without, " << corrected << " with");
  CHECK(corrected < 0.7 * plain);
}

TEST_CASE("A range rule chosen by a score after one calibration", "[quant][observers][rule]") {
  Rng rng(35);
  nn::init::manual_seed(16);
  CifarCnn net(compressor::testing::narrow_cifar_plan(4));
  randomize_batchnorms(net, rng);
  net.eval();
  RandomBatches calib(Shape{8, 32, 32, 3}, 3, 600, -0.5f, 1.5f);
  const Tensor<float> x = RandomBatches(Shape{4, 32, 32, 3}, 1, 700).batch(0);
  quant::Prepared p =
      quant::prepare_ptq(net, {.observer = [] { return quant::make_observer("histogram_mse"); }});
  quant::calibrate(p, calib);
  const auto hs = quant::histogram_observers(p);
  // Every activation point but the output (a MinMaxObserver by default).
  CHECK(hs.size() == p.points.size() - 1);

  // What convert() gives for each rule, and the same from observers made
  // with that rule and calibrated on the same batches.
  std::vector<Tensor<float>> outputs;
  for (const auto rule : quant::kRangeRules) {
    quant::set_range_rule(p, rule);
    outputs.emplace_back(quant::convert(p).forward(x));
    const std::string name = rule == quant::HistogramMethod::minmax       ? "minmax"
                             : rule == quant::HistogramMethod::percentile ? "histogram"
                             : rule == quant::HistogramMethod::mse        ? "histogram_mse"
                                                                          : "histogram_kl";
    quant::Prepared fresh =
        quant::prepare_ptq(net, {.observer = [name] { return quant::make_observer(name); }});
    quant::calibrate(fresh, calib);
    INFO("rule " << quant::to_string(rule));
    CHECK(compressor::testing::bit_equal(quant::convert(fresh).forward(x), outputs.back()));
  }
  // The rules differ on these activations (else the choice would be moot).
  CHECK_FALSE(compressor::testing::bit_equal(outputs[0], outputs[2]));

  // Scores by call order: the second rule (kl) and the fourth tie for the
  // lowest; the earlier wins and p is left on it.
  const std::vector<double> scores = {3.0, 1.0, 2.0, 1.0};
  std::size_t call = 0;
  const auto choice = quant::choose_range_rule(p, [&](const quant::Int8Model& m) {
    CHECK(m.summary().points.size() == p.points.size());
    return scores.at(call++);
  });
  CHECK(call == 4);
  REQUIRE(choice.trials.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(choice.trials[i].rule == quant::kRangeRules[i]);
    CHECK(choice.trials[i].score == scores[i]);
  }
  CHECK(choice.best == quant::HistogramMethod::kl);
  for (const auto& [name, h] : quant::histogram_observers(p))
    CHECK(h->method() == quant::HistogramMethod::kl);
  CHECK(compressor::testing::bit_equal(quant::convert(p).forward(x), outputs[1]));

  // A chosen subset of rules.
  const quant::HistogramMethod two[] = {quant::HistogramMethod::minmax,
                                        quant::HistogramMethod::percentile};
  CHECK(quant::choose_range_rule(
            p, [](const quant::Int8Model&) { return 0.0; }, two)
            .best == quant::HistogramMethod::minmax);

  // Bad input: no candidates, a NaN score, no histogram observer.
  CHECK_THROWS_WITH(quant::choose_range_rule(
                        p, [](const quant::Int8Model&) { return 0.0; },
                        std::span<const quant::HistogramMethod>{}),
                    Catch::Contains("no candidate"));
  CHECK_THROWS_WITH(
      quant::choose_range_rule(
          p, [](const quant::Int8Model&) { return std::numeric_limits<double>::quiet_NaN(); }),
      Catch::Contains("'mse'") && Catch::Contains("not finite"));
  quant::Prepared plain = quant::prepare_ptq(net, test_config());
  quant::calibrate(plain, calib);
  CHECK_THROWS_WITH(quant::choose_range_rule(plain, [](const quant::Int8Model&) { return 0.0; }),
                    Catch::Contains("no HistogramObserver"));
  // kl needs enough bins.
  quant::HistogramObserver small(64);
  CHECK_THROWS_WITH(small.set_method(quant::HistogramMethod::kl), Catch::Contains("bins"));
}

TEST_CASE("Bias correction: the corrected float model differs only in its biases",
          "[quant][bias_correction]") {
  nn::init::manual_seed(15);
  const nn::ChannelPlan plan = compressor::testing::narrow_cifar_plan(8);
  CifarCnn net(plan);
  auto cfg = test_config();
  cfg.bias_correction = true;
  cfg.float_islands = {"features.8"};
  quant::Prepared p = quant::prepare_ptq(net, cfg);
  auto before = p.model->clone();
  RandomBatches calib(Shape{4, 32, 32, 3}, 2, 600);
  quant::calibrate(p, calib);
  const auto a = before->named_parameters(), b = p.model->named_parameters();
  REQUIRE(a.size() == b.size());
  int changed_biases = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO(a[i].name);
    const bool bias = a[i].name.ends_with(".bias");
    const bool same = rel_to_max(*a[i].value, *b[i].value) == 0.0;
    if (!bias) CHECK(same);
    if (bias && !same) ++changed_biases;
    if (a[i].name == "features.8.bias") CHECK(same);  // a float island keeps its bias
  }
  CHECK(changed_biases == 4);  // three int8 convs and fc
}

TEST_CASE("Float islands: layers with no int8 form, on request", "[quant][islands]") {
  nn::init::manual_seed(16);
  auto n = compressor::testing::net_with_unsupported_layers();
  Rng rng(34);
  randomize_batchnorms(*n, rng);
  n->eval();
  RandomBatches calib(Shape{4, 8, 8, 3}, 3, 700);
  SECTION("without the switch: an error listing them") {
    quant::Prepared p = quant::prepare_ptq(*n, test_config());
    quant::calibrate(p, calib);
    CHECK_THROWS_WITH(quant::convert(p), Catch::Contains("2 layer(s) of Sequential have no int8"));
  }
  SECTION("allow_float_islands: both stay float, named in the summary") {
    auto cfg = test_config();
    cfg.allow_float_islands = true;
    quant::Prepared p = quant::prepare_ptq(*n, cfg);
    CHECK(p.island_points == std::vector<std::string>{"3", "4"});
    quant::calibrate(p, calib);
    quant::Int8Model int8 = quant::convert(p);
    const auto& fl = int8.summary().float_layers;
    REQUIRE(fl.size() == 2);
    CHECK_THAT(fl[0], Catch::StartsWith("3 (BatchNorm2d, no int8 form)"));
    CHECK_THAT(fl[1], Catch::StartsWith("4 (Twice, no int8 form)"));
    CHECK_THAT(int8.summary().str(),
               Catch::Contains("2 float islands") && Catch::Contains("float island: 4 (Twice"));
    const Tensor<float> x = calib.batch(1);
    const Tensor<float> want(n->forward(x));
    const Tensor<float> got(int8.forward(x));
    const double err = rel_to_max(got, want);
    INFO("max |int8 - float| / max |float| = " << err);
    CHECK(err < 0.03);
    auto fq = quant::fake_quant_model(p, int8);
    const auto f = compressor::testing::lockstep_fidelity(int8, *fq, summary_points(int8), x);
    CHECK(f.equal_fraction() >= 0.99);
    CHECK(f.max_diff <= 1);
    // An int8 file stores the float values of islands with weights only.
    CHECK_THROWS_WITH(quant::int8_model_writer(int8, nn::ChannelPlan{}),
                      Catch::Contains("float island '3' is a BatchNorm2d"));
  }
}

TEST_CASE("Float islands: named layers of CifarCnn and ResNet18", "[quant][islands]") {
  nn::init::manual_seed(17);
  Rng rng(35);
  const nn::ChannelPlan plan = compressor::testing::narrow_cifar_plan(8);
  const ResNetOptions ro{.num_classes = 10, .width = 0.125};
  struct Case {
    std::unique_ptr<nn::Module> model;
    Shape input;
    std::vector<std::string> islands, points;
  };
  std::vector<Case> cases;
  cases.push_back({std::make_unique<CifarCnn>(plan),
                   Shape{4, 32, 32, 3},
                   {"features.4", "fc"},
                   {"features.6", "fc"}});
  cases.push_back({std::make_unique<ResNet18>(ro),
                   Shape{2, 40, 40, 3},
                   {"layer1.0.conv1", "layer2.0.conv2"},
                   {"layer1.0.relu", "layer2.0.bn2"}});
  for (auto& c : cases) {
    INFO(c.model->type_name());
    randomize_batchnorms(*c.model, rng);
    auto cfg = test_config();
    cfg.float_islands = c.islands;
    quant::Prepared p = quant::prepare_ptq(*c.model, cfg);
    CHECK(p.island_points.empty());  // their outputs are points of the model
    RandomBatches calib(c.input, 2, 800);
    quant::calibrate(p, calib);
    quant::Int8Model int8 = quant::convert(p);
    const auto& s = int8.summary();
    REQUIRE(s.float_layers.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
      CHECK_THAT(s.float_layers[i], Catch::StartsWith(c.islands[i] + " (") &&
                                        Catch::Contains("kept in float on request") &&
                                        Catch::EndsWith("at '" + c.points[i] + "'"));
      bool float_layer = false;
      for (const auto& l : s.layers)
        float_layer |= l.name == c.islands[i] && l.precision == "float";
      CHECK(float_layer);
    }
    CHECK(s.points.size() == p.points.size());
    auto fq = quant::fake_quant_model(p, int8);
    const auto x = calib.batch(1);
    const auto f = compressor::testing::lockstep_fidelity(int8, *fq, p.points, x);
    CHECK(f.equal_fraction() >= 0.99);
    CHECK(f.max_diff <= 1);
    CHECK(compressor::testing::output_steps(int8, *fq, x) <=
          compressor::testing::kFreeRunningMaxSteps);
  }
}

TEST_CASE("Float islands: names that are no layer conversion can keep in float",
          "[quant][islands]") {
  const ResNetOptions ro{.num_classes = 10, .width = 0.125};
  ResNet18 net(ro);
  auto with = [](std::string name) {
    auto cfg = test_config();
    cfg.float_islands = {std::move(name)};
    return cfg;
  };
  CHECK_THROWS_WITH(quant::prepare_ptq(net, with("layer9.conv1")),
                    Catch::Contains("float island 'layer9.conv1'") &&
                        Catch::Contains("has no layer of that name"));
  CHECK_THROWS_WITH(quant::prepare_ptq(net, with("layer1.0")),
                    Catch::Contains("float island 'layer1.0' (BasicBlock)") &&
                        Catch::Contains("name a layer with weights"));
  CHECK_THROWS_WITH(quant::prepare_ptq(net, with("layer1.0.bn1")),
                    Catch::Contains("float island 'layer1.0.bn1'"));
}

TEST_CASE("Float islands: saved in an int8 file (format version 2) and loaded back",
          "[quant][islands][int8_io]") {
  nn::init::manual_seed(18);
  Rng rng(36);
  const nn::ChannelPlan plan = compressor::testing::narrow_cifar_plan(8);
  CifarCnn net(plan);
  randomize_batchnorms(net, rng);
  auto cfg = test_config();
  cfg.float_islands = {"features.4", "fc"};
  quant::Prepared p = quant::prepare_ptq(net, cfg);
  RandomBatches calib(Shape{4, 32, 32, 3}, 2, 900);
  quant::calibrate(p, calib);
  quant::Int8Model int8 = quant::convert(p);
  const auto dir = std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "ptq_helpers_files";
  std::filesystem::create_directories(dir);
  const auto tmp = dir / "islands.int8.safetensors";
  quant::save_int8_model(int8, net.channel_plan(), tmp);
  io::SafetensorsFile f = io::SafetensorsFile::open(tmp);
  CHECK(*f.metadata_value("format_version") == "2");
  CHECK(*f.metadata_value("float_islands") == "features.4,fc");
  CHECK(f.find("features.4.weight")->dtype == DType::f32);
  CHECK(f.find("features.4.weight_scale") == nullptr);
  quant::Int8Model loaded = quant::load_int8_model(tmp);
  CHECK(loaded.summary().float_layers == int8.summary().float_layers);
  const Tensor<float> x = calib.batch(1);
  const Tensor<float> a(int8.forward(x));
  const Tensor<float> b(loaded.forward(x));
  CHECK(rel_to_max(a, b) == 0.0);
  // Without islands the file stays version 1.
  cfg.float_islands.clear();
  quant::Prepared q = quant::prepare_ptq(net, cfg);
  quant::calibrate(q, calib);
  quant::save_int8_model(quant::convert(q), net.channel_plan(), tmp);
  CHECK(*io::SafetensorsFile::open(tmp).metadata_value("format_version") == "1");
  std::filesystem::remove(tmp);
}
