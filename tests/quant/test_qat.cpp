// QAT: prepare_qat replaces conv+BN by QatConv2d (BN folded in training),
// puts FakeQuantize at every point, trains, freezes, converts; the frozen QAT
// model predicts its int8 model at every point.
#include <catch2/catch.hpp>
#include <compressor/models.hpp>
#include <compressor/nn/loss.hpp>
#include <compressor/quant/qat.hpp>
#include <map>
#include <string>

#include "quant/fidelity.hpp"
#include "surgery/surgery_test_util.hpp"

using namespace compressor;
using namespace compressor::models;
using compressor::testing::random_tensor;
using compressor::testing::randomize_batchnorms;

namespace {

/// Moving-average min/max (PyTorch's QAT default), enough for these tests.
class TestMovingMinMax : public quant::Observer {
 public:
  std::string_view type_name() const override { return "TestMovingMinMax"; }
  void observe(TensorView<const float> x) override {
    float lo = x[0], hi = x[0];
    for (const float v : x.flat()) {
      require(std::isfinite(v), "observer saw a non-finite value");
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    if (n_++ == 0) {
      r_ = {lo, hi};
    } else {
      r_.min += 0.01f * (lo - r_.min);
      r_.max += 0.01f * (hi - r_.max);
    }
  }
  quant::Range range() const override { return r_; }
  void reset() override { n_ = 0; }
  std::int64_t observed() const override { return n_; }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<TestMovingMinMax>();
  }

 private:
  quant::Range r_;
  std::int64_t n_ = 0;
};

quant::QatConfig qat_config() {
  return {.observer = [] { return std::make_unique<TestMovingMinMax>(); }};
}

/// Plain SGD on every parameter.
void sgd_step(nn::Module& m, float lr) {
  for (auto& p : m.named_parameters())
    for (std::int64_t i = 0; i < p.value->numel(); ++i) p.value->data()[i] -= lr * (*p.grad)[i];
}

}  // namespace

TEST_CASE("prepare_qat builds QAT layers with BN inside and fake-quant at every point",
          "[quant][qat]") {
  nn::init::manual_seed(41);
  CifarCnn net;
  quant::Prepared q = quant::prepare_qat(net, qat_config());
  CHECK(q.model->find("features.0")->type_name() == "QatConv2d");
  CHECK(q.model->find("features.1")->type_name() == "Identity");
  CHECK(q.model->find("features.0.bn")->type_name() == "BatchNorm2d");
  CHECK(q.model->find("fc")->type_name() == "QatLinear");
  CHECK(q.model->is_training());
  std::map<std::string, bool> names;
  for (const auto& p : q.model->named_parameters()) names[p.name] = true;
  CHECK(names.count("features.0.weight") == 1);
  CHECK(names.count("features.0.bn.weight") == 1);
  for (const auto& point : q.points) {
    INFO(point.name);
    REQUIRE(q.model->find(point.name)->output_hook() != nullptr);
    CHECK(q.model->find(point.name)->output_hook()->type_name() == "FakeQuantize");
  }
  // The float model is untouched.
  CHECK(net.find("features.0")->type_name() == "Conv2d");
  CHECK(net.find("features.2")->output_hook() == nullptr);
}

TEST_CASE("QAT trains, freezes, and converts to an int8 model it predicts", "[quant][qat]") {
  Rng rng(42);
  nn::init::manual_seed(42);
  ResNet18 net(ResNetOptions{.num_classes = 4, .width = 0.25});
  randomize_batchnorms(net, rng);
  quant::Prepared q = quant::prepare_qat(net, qat_config());
  const Tensor<float> x = random_tensor(Shape{8, 32, 32, 3}, rng);
  data::Batch batch;
  batch.inputs = x;
  batch.labels = Tensor<std::int32_t>::from(Shape{8}, {0, 1, 2, 3, 0, 1, 2, 3});
  nn::SoftmaxCrossEntropy ce;
  float first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    if (step == 20) {
      quant::freeze_batchnorm_stats(*q.model);
      quant::freeze_observers(*q.model);
    }
    const auto y = q.model->forward(x);
    const float loss = ce.compute(y, batch);
    if (step == 0) first = loss;
    last = loss;
    q.model->zero_grad();
    (void)q.model->backward(ce.backward());
    sgd_step(*q.model, 0.02f);
  }
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.7f * first);

  quant::Int8Model int8 = quant::convert_qat(q);
  // The int8 model against the fake-quant model of the folded QAT model, at
  // every point. (The QAT model itself keeps its biases in float, where the
  // int8 model rounds them to the int32 grid at s_in * s_w: a fraction of an
  // output step per layer that flips roundings and compounds with depth, as
  // in PyTorch. So it is compared at the output below.)
  quant::Prepared folded;
  folded.model = quant::fold_qat_model(q);
  folded.points = q.points;
  folded.grid = q.grid;
  auto fq = quant::fake_quant_model(folded, int8);
  const auto f = compressor::testing::lockstep_fidelity(int8, *fq, q.points, x);
  INFO("equal " << f.equal << " of " << f.elements << ", worst " << f.max_diff << " at "
                << f.worst_point);
  CHECK(f.equal_fraction() >= 0.99);
  CHECK(f.max_diff <= 1);
  const Tensor<float> y8(int8.forward(x));
  // The frozen QAT model's logits are close to the int8 model's.
  q.model->eval();
  const Tensor<float> yq(q.model->forward(x));
  double dmax = 0, ymax = 0;
  int same = 0;
  for (std::int64_t i = 0; i < 8; ++i) {
    std::int64_t a8 = 0, aq = 0;
    for (std::int64_t j = 0; j < 4; ++j) {
      dmax = std::max(dmax, std::abs(double(y8[i * 4 + j]) - yq[i * 4 + j]));
      ymax = std::max(ymax, std::abs(double(yq[i * 4 + j])));
      if (y8[i * 4 + j] > y8[i * 4 + a8]) a8 = j;
      if (yq[i * 4 + j] > yq[i * 4 + aq]) aq = j;
    }
    same += a8 == aq;
  }
  INFO("max logit difference " << dmax << " of max |logit| " << ymax);
  CHECK(dmax <= 0.1 * ymax);
  CHECK(same >= 7);
  // Editing after prepare is detected.
  const std::vector<std::int64_t> keep{0, 1};
  nn::select_output_channels(*q.model, "fc", keep);
  CHECK_THROWS_WITH(quant::convert_qat(q), Catch::Contains("edited after prepare_qat"));
}
