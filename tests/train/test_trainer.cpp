// The training loop: overfits one fixed batch, is deterministic for a seed
// and thread count, stops on a non-finite loss, and reports metrics.
#include <catch2/catch.hpp>
#include <limits>
#include <sstream>

#include "compressor/core/threading.hpp"
#include "compressor/models/cifar_cnn.hpp"
#include "compressor/train.hpp"
#include "support/cifar_plan.hpp"
#include "support/repeat_batch.hpp"
#include "support/test_util.hpp"

using namespace compressor;
using namespace compressor::train;

namespace {
using compressor::testing::narrow_cifar_plan;
using compressor::testing::RepeatBatch;

data::Batch random_batch(std::int64_t n, std::int64_t hw, std::uint64_t seed) {
  Rng rng(seed);
  data::Batch b;
  b.inputs = compressor::testing::random_tensor(Shape{n, hw, hw, 3}, rng);
  b.labels = Tensor<std::int32_t>(Shape{n});
  for (std::int64_t i = 0; i < n; ++i) b.labels[i] = static_cast<std::int32_t>(rng.below(10));
  return b;
}
}  // namespace

TEST_CASE("CifarCnn drives the loss of one fixed batch to near zero", "[train][sanity]") {
  nn::init::manual_seed(1);
  models::CifarCnn net(narrow_cifar_plan(2));  // half width
  nn::SoftmaxCrossEntropy ce;
  Adam adam(net, AdamOptions{.lr = 2e-3f});
  Trainer trainer(net, ce, adam, Task::classification);
  const auto batch = random_batch(32, 16, 7);
  const float first = trainer.step(batch);
  float loss = first;
  for (int i = 0; i < 60 && loss > 0.02f; ++i) loss = trainer.step(batch);
  INFO("first loss " << first << ", last " << loss);
  CHECK(first > 1.5f);
  CHECK(loss < 0.05f);
}

TEST_CASE("Training is deterministic for a seed and thread count", "[train][determinism]") {
  auto run = [] {
    nn::init::manual_seed(3);
    models::CifarCnn net(narrow_cifar_plan(2));  // half width
    nn::SoftmaxCrossEntropy ce(0.1f);
    Sgd sgd(net,
            SgdOptions{.lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 5e-4f});
    OneCycleLr sched(0.05f, 6);
    Trainer trainer(net, ce, sgd, Task::classification, &sched);
    std::vector<float> losses;
    for (int i = 0; i < 6; ++i) losses.push_back(trainer.step(random_batch(8, 16, 100 + i)));
    return losses;
  };
  const int saved = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    const auto a = run(), b = run();
    CHECK(a == b);  // bitwise
  }
  set_num_threads(saved);
}

TEST_CASE("OneCycleLr cycles the optimizer's momentum (SGD) or beta1 (Adam)", "[train][schedule]") {
  nn::init::manual_seed(5);
  models::CifarCnn net(narrow_cifar_plan(2));  // half width
  nn::SoftmaxCrossEntropy ce;
  OneCycleLr sched(0.01f, 5);
  Sgd sgd(net, SgdOptions{.lr = 0.01f, .momentum = 0.9f});
  Trainer t(net, ce, sgd, Task::classification, &sched);
  for (int i = 0; i < 5; ++i) {
    t.step(random_batch(2, 16, 40 + i));
    CHECK(sgd.momentum() == sched.momentum_at(i).value());
    CHECK(sgd.lr() == sched.lr_at(i));
  }
  CHECK(sgd.momentum() != 0.9f);
  Adam adam(net, AdamOptions{.lr = 0.01f}, true);
  Trainer ta(net, ce, adam, Task::classification, &sched);
  ta.step(random_batch(2, 16, 50));
  CHECK(adam.beta1() == sched.momentum_at(0).value());
  // Switched off, the optimizer keeps its own.
  OneCycleLr plain(0.01f, 5);
  plain.cycle_momentum(false);
  Sgd sgd2(net, SgdOptions{.lr = 0.01f, .momentum = 0.9f});
  Trainer t2(net, ce, sgd2, Task::classification, &plain);
  t2.step(random_batch(2, 16, 60));
  CHECK(sgd2.momentum() == 0.9f);
  CHECK_THROWS_AS(plain.cycle_momentum(true, 0.96f, 0.95f), ValueError);
  CHECK_THROWS_AS(sgd2.set_momentum(1.f), ValueError);
}

TEST_CASE("An evaluation loss replaces the training loss in evaluate()", "[train]") {
  nn::init::manual_seed(6);
  models::CifarCnn net(narrow_cifar_plan(2));  // half width
  nn::SoftmaxCrossEntropy smoothed(0.1f), plain;
  Sgd sgd(net, SgdOptions{.lr = 0.01f});
  Trainer t(net, smoothed, sgd, Task::classification);
  RepeatBatch val(random_batch(4, 16, 70), 2);
  const Metrics with_smoothing = t.evaluate(val);
  t.set_eval_loss(&plain);
  const Metrics without = t.evaluate(val);
  const Metrics reference = train::evaluate(net, plain, Task::classification, val);
  CHECK(without.loss == reference.loss);
  CHECK(without.loss != with_smoothing.loss);
  CHECK(without.accuracy == with_smoothing.accuracy);
  t.set_eval_loss(nullptr);
  CHECK(t.evaluate(val).loss == with_smoothing.loss);
}

TEST_CASE("A non-finite loss stops training with a clear error", "[train]") {
  nn::init::manual_seed(4);
  models::CifarCnn net(narrow_cifar_plan(2));  // half width
  nn::SoftmaxCrossEntropy ce;
  Sgd sgd(net, SgdOptions{.lr = 0.1f});
  Trainer trainer(net, ce, sgd, Task::classification);
  auto batch = random_batch(4, 16, 1);
  batch.inputs[5] = std::numeric_limits<float>::quiet_NaN();
  try {
    trainer.step(batch);
    FAIL("no exception");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("diverged") != std::string::npos);
  }
}

TEST_CASE("fit reports per-epoch metrics and progress", "[train]") {
  nn::init::manual_seed(5);
  models::CifarCnn net(narrow_cifar_plan(2));  // half width
  nn::SoftmaxCrossEntropy ce;
  Adam adam(net, AdamOptions{.lr = 1e-3f});
  Trainer trainer(net, ce, adam, Task::classification);
  RepeatBatch train_src(random_batch(8, 16, 9), 3), val_src(random_batch(8, 16, 10), 1);
  std::ostringstream log;
  int hook_calls = 0;
  FitOptions fo;
  fo.epochs = 2;
  fo.log = &log;
  fo.after_step = [&] { ++hook_calls; };
  const auto reports = trainer.fit(train_src, &val_src, fo);
  REQUIRE(reports.size() == 2);
  CHECK(hook_calls == 6);
  CHECK(reports[1].train.samples == 24);
  REQUIRE(reports[1].val.has_value());
  CHECK(reports[1].val->samples == 8);
  CHECK(reports[1].train.loss < reports[0].train.loss);
  CHECK(log.str().find("epoch 2/2") != std::string::npos);
  CHECK(log.str().find("ETA") != std::string::npos);
  CHECK(trainer.global_step() == 6);
}

TEST_CASE("Regression metrics: MAE, RMSE, R2", "[train][metrics]") {
  MetricAccumulator acc(Task::regression);
  data::Batch b;
  b.targets = Tensor<float>::from(Shape{4, 1}, {50.f, 60.f, 40.f, 70.f});
  const auto pred = Tensor<float>::from(Shape{4, 1}, {52.f, 57.f, 40.f, 71.f});
  acc.add(pred, b, 3.5);
  const Metrics m = acc.result();
  CHECK(m.mae == Approx(1.5));
  CHECK(m.rmse == Approx(std::sqrt(14.0 / 4)));
  CHECK(m.r2 == Approx(1.0 - 14.0 / 500.0));
  CHECK(m.target_mean == Approx(55.0));
  CHECK(m.loss == Approx(3.5));
}

TEST_CASE("Metric sums merge to the metrics of one pass over both parts", "[train][metrics]") {
  data::Batch reg;
  reg.targets = Tensor<float>::from(Shape{4, 1}, {50.f, 60.f, 40.f, 70.f});
  const auto reg_pred = Tensor<float>::from(Shape{4, 1}, {52.f, 57.f, 40.f, 71.f});
  data::Batch cls;
  cls.labels = Tensor<std::int32_t>::from(Shape{3}, {0, 1, 1});
  const auto logits = Tensor<float>::from(Shape{3, 2}, {2.f, 1.f, 0.f, 3.f, 5.f, 4.f});
  for (const Task task : {Task::regression, Task::classification}) {
    const auto& batch = task == Task::regression ? reg : cls;
    const auto& pred = task == Task::regression ? reg_pred : logits;
    const std::int64_t n = pred.dim(0);
    MetricAccumulator whole(task), a(task), b(task);
    whole.add(pred.view(), batch, 2.0);
    data::Batch first, rest;  // the batch split after its first sample
    if (task == Task::regression) {
      first.targets = Tensor<float>::from(Shape{1, 1}, {batch.targets[0]});
      rest.targets = Tensor<float>(Shape{n - 1, 1});
      for (std::int64_t i = 1; i < n; ++i) rest.targets[i - 1] = batch.targets[i];
    } else {
      first.labels = Tensor<std::int32_t>::from(Shape{1}, {batch.labels[0]});
      rest.labels = Tensor<std::int32_t>(Shape{n - 1});
      for (std::int64_t i = 1; i < n; ++i) rest.labels[i - 1] = batch.labels[i];
    }
    a.add(pred.view().narrow(0, 1), first, 2.0);
    b.add(pred.view().narrow(1, n - 1), rest, 2.0);
    a.merge(b);
    const Metrics got = a.result(), want = whole.result();
    CHECK(got.samples == want.samples);
    CHECK(got.loss == Approx(want.loss));
    CHECK(got.accuracy == want.accuracy);
    CHECK(got.mae == Approx(want.mae));
    CHECK(got.rmse == Approx(want.rmse));
    CHECK(got.r2 == Approx(want.r2));
    // sums() round-trips.
    const Metrics back = MetricAccumulator(task, whole.sums()).result();
    CHECK(back.samples == want.samples);
    CHECK(back.loss == want.loss);
    CHECK(back.accuracy == want.accuracy);
    CHECK(back.r2 == want.r2);
  }
  CHECK(MetricAccumulator(Task::classification, {3, 2, 1, 0, 0, 0, 0}).result().accuracy ==
        Approx(2.0 / 3));
  CHECK_THROWS_WITH(MetricAccumulator(Task::classification, {3, 4, 0, 0, 0, 0, 0}),
                    Catch::Contains("0 <= correct <= samples"));
  CHECK_THROWS_WITH(MetricAccumulator(Task::classification, {2.5, 0, 0, 0, 0, 0, 0}),
                    Catch::Contains("whole numbers"));
  MetricAccumulator cls_acc(Task::classification);
  CHECK_THROWS_WITH(cls_acc.merge(MetricAccumulator(Task::regression)),
                    Catch::Contains("tasks differ"));
}

TEST_CASE("fit() calls the data-parallel metric hooks at every rank's common points",
          "[train][metrics]") {
  nn::init::manual_seed(5);
  models::CifarCnn net(narrow_cifar_plan(4));
  nn::SoftmaxCrossEntropy ce;
  Sgd sgd(net, SgdOptions{.lr = 1e-3f});
  Trainer trainer(net, ce, sgd, Task::classification);
  RepeatBatch train_src(random_batch(4, 16, 9), 2), val_src(random_batch(4, 16, 10), 1);
  FitOptions fo;
  fo.epochs = 2;
  fo.log = nullptr;
  fo.ranks = 3;
  int reductions = 0, validations = 0;
  // A stand-in for the allreduce over 3 ranks that saw the same samples.
  fo.reduce_metrics = [&](MetricAccumulator& acc) {
    ++reductions;
    auto s = acc.sums();
    for (double& v : s) v *= 3;
    acc = MetricAccumulator(acc.task(), s);
  };
  fo.before_validation = [&] { ++validations; };
  const auto reports = trainer.fit(train_src, &val_src, fo);
  REQUIRE(reports.size() == 2);
  CHECK(reductions == 4);  // each epoch's training and validation sums
  CHECK(validations == 2);
  CHECK(reports[0].train.samples == 3 * 8);
  REQUIRE(reports[0].val.has_value());
  CHECK(reports[0].val->samples == 3 * 4);
  REQUIRE(reports[1].val.has_value());
  CHECK(reports[1].val->accuracy == trainer.evaluate(val_src).accuracy);  // the last epoch's model
  // The rate counts the reduced (global) samples, not them times ranks again.
  CHECK(reports[0].samples_per_second == Approx(24.0 / reports[0].seconds).epsilon(1e-9));
}

TEST_CASE("BN recalibration sets running stats to the data's cumulative average", "[train][bn]") {
  nn::init::manual_seed(6);
  nn::Sequential net;
  net.emplace<nn::Conv2d>(3, 4, 3, 1, 1, false);
  auto& bn = net.emplace<nn::BatchNorm2d>(4);
  net.emplace<nn::GlobalAvgPool2d>();
  data::Batch a = random_batch(6, 8, 20), b = random_batch(6, 8, 21);
  // Reference: per-channel mean of the conv output over both batches (equal sizes).
  std::vector<double> mean(4, 0.0);
  for (const auto* batch : {&a, &b}) {
    auto* conv = dynamic_cast<nn::Conv2d*>(&net.child(0));
    const auto y = conv->forward(batch->inputs);
    for (std::int64_t i = 0; i < y.numel(); ++i) mean[static_cast<std::size_t>(i % 4)] += y[i];
  }
  const double per_batch_rows = 6 * 8 * 8;
  net.eval();
  bn.running_mean().fill(7.f);  // stale
  struct Two : data::BatchSource {
    data::Batch a, b;
    int i = 0;
    void start_epoch(std::uint64_t) override { i = 0; }
    bool next(data::Batch& out) override {
      if (i == 2) return false;
      out = i++ == 0 ? a : b;
      return true;
    }
    std::int64_t num_batches() const override { return 2; }
    std::int64_t num_samples() const override { return 12; }
  } src;
  src.a = a;
  src.b = b;
  CHECK(train::recalibrate_batchnorm(net, src) == 2);
  for (int c = 0; c < 4; ++c)
    CHECK(bn.running_mean()[c] ==
          Approx(mean[static_cast<std::size_t>(c)] / (2 * per_batch_rows)).epsilon(1e-4));
  CHECK_FALSE(net.is_training());
  CHECK(bn.momentum() == Approx(0.1f));
}
