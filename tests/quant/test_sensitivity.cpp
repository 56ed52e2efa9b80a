// The per-point SQNR (measure_sqnr) and the per-point sensitivity report of
// a PTQ model, on random CifarCnn models.
#include <catch2/catch.hpp>
#include <cmath>
#include <compressor/models.hpp>
#include <compressor/quant/convert.hpp>
#include <compressor/quant/sensitivity.hpp>
#include <string>
#include <vector>

#include "quant/quant_test_util.hpp"
#include "surgery/surgery_test_util.hpp"

using namespace compressor;
using namespace compressor::models;
using compressor::testing::random_tensor;
using compressor::testing::randomize_batchnorms;
using compressor::testing::test_config;
using compressor::testing::TestMinMax;

namespace {

/// The observer at a point (the output point's is prepare_ptq's default
/// MinMaxObserver, the others test_config's TestMinMax).
quant::Observer& observer_at(quant::Prepared& p, const std::string& point) {
  auto* o = nn::as<quant::Observer>(*p.model->find(point)->output_hook());
  REQUIRE(o != nullptr);
  return *o;
}

/// Fixed batches: random inputs in [-scale, scale], labels from a model's
/// argmax if one is given.
class StoredBatches : public data::BatchSource {
 public:
  StoredBatches(Shape shape, int batches, std::uint64_t seed, float scale = 1.f) {
    for (int i = 0; i < batches; ++i) {
      Rng rng(seed + static_cast<std::uint64_t>(i));
      data::Batch b;
      b.inputs = random_tensor(shape, rng, -scale, scale);
      batches_.push_back(std::move(b));
    }
  }
  /// Labels every sample with the model's prediction (its accuracy is then 1).
  void label_with(nn::Module& model) {
    model.eval();
    for (auto& b : batches_) {
      const TensorView<const float> z = model.forward(b.inputs);
      const std::int64_t n = z.dim(0), k = z.dim(1);
      b.labels = Tensor<std::int32_t>(Shape{n}, 0);
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t j = 1; j < k; ++j)
          if (z[i * k + j] > z[i * k + b.labels[i]]) b.labels.data()[i] = static_cast<int>(j);
    }
  }
  /// Regression targets (N, 1): the model's outputs (its MAE is then 0).
  void target_with(nn::Module& model) {
    model.eval();
    for (auto& b : batches_) b.targets = Tensor<float>(model.forward(b.inputs));
  }
  void start_epoch(std::uint64_t) override { i_ = 0; }
  bool next(data::Batch& out) override {
    if (i_ >= batches_.size()) return false;
    const data::Batch& b = batches_[i_++];
    out.inputs = b.inputs;
    out.labels = b.labels;
    out.targets = b.targets;
    return true;
  }
  std::int64_t num_batches() const override { return static_cast<std::int64_t>(batches_.size()); }
  std::int64_t num_samples() const override {
    return num_batches() * (batches_.empty() ? 0 : batches_[0].inputs.dim(0));
  }
  const std::vector<data::Batch>& batches() const { return batches_; }

 private:
  std::vector<data::Batch> batches_;
  std::size_t i_ = 0;
};

/// A random CifarCnn at a quarter of the default width (every layer, point
/// and fusion of the full one at 1/16 of its MACs: the sanitizer build runs
/// these tests too).
std::unique_ptr<CifarCnn> random_cnn(std::uint64_t seed, std::int64_t num_classes = 10) {
  Rng rng(seed);
  nn::init::manual_seed(seed);
  auto net = std::make_unique<CifarCnn>(compressor::testing::narrow_cifar_plan(4, num_classes));
  randomize_batchnorms(*net, rng);
  net->eval();
  return net;
}

const Shape kInput{16, 32, 32, 3};

}  // namespace

TEST_CASE("measure_sqnr: finite and positive at every point; observers untouched",
          "[quant][sensitivity]") {
  auto net = random_cnn(31);
  StoredBatches calib(kInput, 3, 100), eval(kInput, 2, 500);
  quant::Prepared p = quant::prepare_ptq(*net, test_config());
  quant::calibrate(p, calib);
  quant::Int8Model int8 = quant::convert(p);
  for (const auto& pt : int8.summary().points) CHECK(std::isnan(pt.sqnr_db));

  quant::measure_sqnr(int8, *p.model, eval, 0);
  const auto& s = int8.summary();
  INFO(s.str());
  REQUIRE(s.points.size() == 7);
  for (const auto& pt : s.points) {
    INFO(pt.name << " " << pt.sqnr_db);
    CHECK(std::isfinite(pt.sqnr_db));
    CHECK(pt.sqnr_db > 0);
  }
  REQUIRE(s.layers.size() == 5);  // four convs and fc
  for (const auto& l : s.layers) {
    INFO(l.name);
    CHECK(l.sqnr_db == s.point(l.point)->sqnr_db);
  }
  // The observers of p.model recorded nothing more and are still attached.
  for (const auto& pt : p.points) {
    INFO(pt.name);
    CHECK(observer_at(p, pt.name).observed() == 3);
  }
  CHECK(std::string(s.str()).find("nan") == std::string::npos);

  // The same numbers from the deploy copy of the original float model, and
  // from one batch only (a different value, still finite).
  quant::Int8Model again = quant::convert(p);
  quant::measure_sqnr(again, *quant::fp32_deploy_model(*net), eval, 0);
  for (std::size_t i = 0; i < s.points.size(); ++i)
    CHECK(again.summary().points[i].sqnr_db == Approx(s.points[i].sqnr_db).epsilon(1e-4));
  quant::measure_sqnr(again, *p.model, eval, 1);
  for (const auto& pt : again.summary().points) CHECK(std::isfinite(pt.sqnr_db));

  StoredBatches none(kInput, 0, 1);
  CHECK_THROWS_WITH(quant::measure_sqnr(again, *p.model, none, 0), Catch::Contains("no batches"));
  ResNetOptions ro;
  ro.width = 0.25;
  ResNet18 other(ro);
  CHECK_THROWS_WITH(quant::measure_sqnr(again, other, eval, 0),
                    Catch::Contains("no module at quantization point 'features.2'"));
}

TEST_CASE("measure_sqnr: the input point against a direct computation", "[quant][sensitivity]") {
  auto net = random_cnn(32);
  StoredBatches calib(kInput, 2, 300, 0.8f), eval(kInput, 2, 700);  // eval exceeds the range
  quant::Prepared p = quant::prepare_ptq(*net, test_config());
  quant::calibrate(p, calib);
  quant::Int8Model int8 = quant::convert(p);
  quant::measure_sqnr(int8, *p.model, eval, 0);
  const quant::QuantParams q = int8.input_params();
  double sig = 0, err = 0;
  for (const auto& b : eval.batches())
    for (std::int64_t i = 0; i < b.inputs.numel(); ++i) {
      const double x = b.inputs[i];
      const double d = double(quant::fake_quantize_activation(b.inputs[i], q)) - x;
      sig += x * x;
      err += d * d;
    }
  const double direct = 10 * std::log10(sig / err);
  INFO("direct " << direct << " dB");
  CHECK(int8.summary().points[0].name == "quant");
  CHECK(int8.summary().points[0].sqnr_db == Approx(direct).epsilon(1e-9));
}

TEST_CASE("measure_sqnr: ranges far too wide cost SQNR at every point", "[quant][sensitivity]") {
  auto net = random_cnn(33);
  StoredBatches eval(kInput, 2, 900), wide(kInput, 2, 900, 50.f);  // the same batches x 50
  quant::Prepared good = quant::prepare_ptq(*net, test_config());
  quant::calibrate(good, eval);
  quant::Prepared bad = quant::prepare_ptq(*net, test_config());
  quant::calibrate(bad, wide);
  quant::Int8Model g = quant::convert(good), b = quant::convert(bad);
  quant::measure_sqnr(g, *good.model, eval, 0);
  quant::measure_sqnr(b, *bad.model, eval, 0);
  INFO(g.summary().str() << b.summary().str());
  // Input scale 50x coarser: 20 log10(50) = 34 dB less on the input, and at
  // least 10 dB less at every point downstream.
  const double input_loss = g.summary().points[0].sqnr_db - b.summary().points[0].sqnr_db;
  CHECK(input_loss > 30);
  CHECK(input_loss < 38);
  for (std::size_t i = 0; i < g.summary().points.size(); ++i) {
    INFO(g.summary().points[i].name);
    CHECK(g.summary().points[i].sqnr_db > b.summary().points[i].sqnr_db + 10);
  }
}

TEST_CASE("sensitivity_report: one row per point, classification", "[quant][sensitivity]") {
  auto net = random_cnn(34);
  StoredBatches calib(kInput, 3, 1100), eval(kInput, 2, 1300);
  eval.label_with(*net);  // the float model's accuracy is 1 by construction
  nn::SoftmaxCrossEntropy loss;
  const double float_acc =
      train::evaluate(*net, loss, train::Task::classification, eval).headline();
  REQUIRE(float_acc == 1.0);
  quant::Prepared p = quant::prepare_ptq(*net, test_config());
  quant::calibrate(p, calib);

  const auto rows = quant::sensitivity_report(*net, p, eval, train::Task::classification, loss);
  INFO(quant::format_sensitivity(rows, "acc", float_acc));
  REQUIRE(rows.size() == p.points.size());
  quant::Int8Model int8 = quant::convert(p);
  quant::measure_sqnr(int8, *net, eval, 0);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    INFO(rows[i].point);
    CHECK(rows[i].point == p.points[i].name);  // data-flow order
    CHECK(std::isfinite(rows[i].metric));
    CHECK(rows[i].metric >= 0);
    CHECK(rows[i].metric <= 1);
    CHECK(rows[i].sqnr_db == int8.summary().points[i].sqnr_db);
  }
  // Everything quantized (the plain fake-quant model) changes the accuracy
  // at least as much as the input point alone. (On a random model at ~40 dB
  // few argmaxes flip, so both may be 1; the regression case below is the
  // sensitive one.)
  auto all = quant::fake_quant_model(p, int8);
  const double all_acc = train::evaluate(*all, loss, train::Task::classification, eval).headline();
  INFO("all quantized: acc " << all_acc);
  CHECK(std::abs(rows[0].metric - float_acc) <= std::abs(all_acc - float_acc));
}

TEST_CASE(
    "sensitivity_report: regression MAE against the float outputs; a spoiled point stands out",
    "[quant][sensitivity]") {
  // One output, the targets are the float model's own outputs: the MAE of a
  // row is exactly the mean output change that quantizing that point causes.
  auto net = random_cnn(36, 1);
  StoredBatches calib(kInput, 3, 1700), eval(kInput, 2, 1900);
  eval.target_with(*net);
  nn::L1Loss loss;
  const auto task = train::Task::regression;
  REQUIRE(train::evaluate(*net, loss, task, eval).headline() == 0.0);
  quant::Prepared p = quant::prepare_ptq(*net, test_config());
  quant::calibrate(p, calib);

  const auto rows = quant::sensitivity_report(*net, p, eval, task, loss);
  INFO(quant::format_sensitivity(rows, "mae", 0.0));
  REQUIRE(rows.size() == p.points.size());
  quant::Int8Model int8 = quant::convert(p);
  auto all = quant::fake_quant_model(p, int8);
  const double all_mae = train::evaluate(*all, loss, task, eval).headline();
  INFO("all quantized: mae " << all_mae);
  CHECK(all_mae > 0);
  for (const auto& r : rows) {
    INFO(r.point);
    CHECK(std::isfinite(r.metric));
    CHECK(r.metric > 0);              // every point's rounding moves the output
    CHECK(r.metric < all_mae * 1.5);  // no single point costs (much) more than all of them
  }
  CHECK(rows[0].metric <= all_mae);  // the input alone: at most the whole model's change

  // Spoil one point (its range 50x too wide): the report singles it out.
  auto* widened = nn::as<TestMinMax>(observer_at(p, "features.6"));
  REQUIRE(widened != nullptr);
  widened->widen(50.f);
  const auto spoiled = quant::sensitivity_report(*net, p, eval, task, loss);
  INFO(quant::format_sensitivity(spoiled, "mae", 0.0));
  REQUIRE(spoiled.size() == rows.size());
  std::size_t worst = 0;
  for (std::size_t i = 0; i < spoiled.size(); ++i)
    if (spoiled[i].metric > spoiled[worst].metric) worst = i;
  REQUIRE(spoiled[worst].point == "features.6");
  CHECK(spoiled[worst].metric > 5 * rows[worst].metric);
  CHECK(spoiled[worst].sqnr_db < rows[worst].sqnr_db - 20);
  // Points before it are untouched by the change (same parameters, weights
  // and upstream values).
  CHECK(spoiled[0].metric == rows[0].metric);
  CHECK(spoiled[1].metric == rows[1].metric);
  CHECK(spoiled[1].sqnr_db == rows[1].sqnr_db);
}

TEST_CASE("fake_quant_model: weight fake-quant restricted to named layers",
          "[quant][sensitivity]") {
  auto net = random_cnn(35);
  StoredBatches calib(kInput, 1, 1500);
  quant::Prepared p = quant::prepare_ptq(*net, test_config());
  quant::calibrate(p, calib);
  quant::Int8Model int8 = quant::convert(p);
  auto only = quant::fake_quant_model(p, int8, std::set<std::string>{"features.4"});
  auto every = quant::fake_quant_model(p, int8);
  auto weight = [](nn::Module& m, const std::string& name) {
    return Tensor<float>(nn::as<nn::WeightedLayer>(*m.find(name))->weight());
  };
  auto same = [](const Tensor<float>& a, const Tensor<float>& b) {
    for (std::int64_t i = 0; i < a.numel(); ++i)
      if (a[i] != b[i]) return false;
    return true;
  };
  CHECK(same(weight(*only, "features.4"), weight(*every, "features.4")));
  CHECK(!same(weight(*only, "features.4"), weight(*p.model, "features.4")));
  CHECK(same(weight(*only, "features.0"), weight(*p.model, "features.0")));
  CHECK(!same(weight(*every, "features.0"), weight(*p.model, "features.0")));
  CHECK_THROWS_WITH(quant::fake_quant_model(p, int8, std::set<std::string>{"features.2"}),
                    Catch::Contains("'features.2' is not a converted layer"));
}
