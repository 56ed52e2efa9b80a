// Unstructured pruning: exact sparsity (global and per layer, with ties),
// layer selection, random baseline, masks that survive fine-tuning with SGD
// (momentum, weight decay) and AdamW, gradual and iterative schedules, errors.
#include <catch2/catch.hpp>
#include <cmath>
#include <compressor/models/cifar_cnn.hpp>
#include <compressor/nn/loss.hpp>
#include <compressor/prune/masked_training.hpp>
#include <compressor/prune/schedule.hpp>
#include <compressor/prune/unstructured.hpp>
#include <compressor/train/trainer.hpp>
#include <functional>
#include <memory>
#include <string>

#include "prune/prune_test_util.hpp"
#include "support/repeat_batch.hpp"

using namespace compressor;
using compressor::testing::random_image_batch;
using compressor::testing::RepeatBatch;
using compressor::testing::zeros_of;

namespace {

/// A small CifarCnn (channels 8-16-16-32) whose weights take few distinct
/// values (many ties), some of them exactly 0.
std::unique_ptr<models::CifarCnn> tied_cnn() {
  nn::init::manual_seed(3);
  nn::ChannelPlan p = models::CifarCnn::default_plan();
  p.set("features.0", 8);
  p.set("features.4", 16);
  p.set("features.8", 16);
  p.set("features.12", 32);
  auto m = std::make_unique<models::CifarCnn>(p);
  for (const auto& name : prune::weighted_layer_names(*m))
    for (auto& v : prune::weight_parameter(*m, name).value->flat())
      v = std::round(v * 8.f) / 8.f;  // a handful of levels, 0 among them
  return m;
}

std::int64_t weights_of(nn::Module& m, const std::string& layer) {
  return prune::weight_parameter(m, layer).value->numel();
}

/// Every pruned |w| <= every kept |w| over the given layers of the original.
void check_magnitude_order(nn::Module& original, const prune::MaskSet& masks,
                           const std::vector<std::string>& layers) {
  float max_pruned = 0.f, min_kept = INFINITY;
  for (const auto& l : layers) {
    const auto* m = masks.find(l);
    REQUIRE(m != nullptr);
    const auto& w = *prune::weight_parameter(original, l).value;
    for (std::int64_t i = 0; i < w.numel(); ++i) {
      const float a = std::abs(w.data()[i]);
      if (m->keep[static_cast<std::size_t>(i)] == 0)
        max_pruned = std::max(max_pruned, a);
      else
        min_kept = std::min(min_kept, a);
    }
  }
  CHECK(max_pruned <= min_kept);
}

}  // namespace

TEST_CASE("magnitude pruning meets the requested sparsity exactly, ties included",
          "[prune][unstructured]") {
  for (const double s : {0.0, 0.3, 0.5, 0.77, 0.9}) {
    SECTION("global, sparsity " + std::to_string(s)) {
      auto model = tied_cnn();
      const auto original = model->clone();
      const auto masks = prune::prune_unstructured(*model, {.sparsity = s});
      const auto layers = prune::weighted_layer_names(*model);
      std::int64_t n = 0, z = 0;
      for (const auto& l : layers) {
        n += weights_of(*model, l);
        z += zeros_of(*model, l);
      }
      const auto want = static_cast<std::int64_t>(std::llround(s * double(n)));
      CHECK(masks.weights() == n);
      CHECK(masks.pruned() == want);
      // Pruned weights are 0; weights that were 0 already count as pruned first.
      CHECK(z >= want);
      CHECK(masks.holds(*model));
      check_magnitude_order(*original, masks, layers);
    }
    SECTION("per layer, sparsity " + std::to_string(s)) {
      auto model = tied_cnn();
      const auto original = model->clone();
      const auto masks =
          prune::prune_unstructured(*model, {.sparsity = s, .scope = prune::Scope::per_layer});
      for (const auto& m : masks.layers()) {
        INFO(m.layer);
        CHECK(m.pruned == std::llround(s * double(m.size())));
        check_magnitude_order(*original, masks, {m.layer});
      }
      CHECK(masks.holds(*model));
    }
  }
}

TEST_CASE("ties are broken by position, so the masks are deterministic", "[prune][unstructured]") {
  auto a = tied_cnn(), b = tied_cnn();
  const auto ma = prune::unstructured_masks(*a, {.sparsity = 0.6});
  const auto mb = prune::unstructured_masks(*b, {.sparsity = 0.6});
  REQUIRE(ma.layers().size() == mb.layers().size());
  for (std::size_t i = 0; i < ma.layers().size(); ++i)
    CHECK(ma.layers()[i].keep == mb.layers()[i].keep);
  // All weights equal: the first round(s*n) elements in layer order go.
  for (const auto& l : prune::weighted_layer_names(*a))
    prune::weight_parameter(*a, l).value->fill(0.25f);
  const auto eq = prune::unstructured_masks(*a, {.sparsity = 0.5});
  const std::int64_t want = std::llround(0.5 * double(eq.weights()));
  std::int64_t seen = 0;
  for (const auto& m : eq.layers())
    for (const auto k : m.keep) {
      CHECK(static_cast<int>(k) == (seen < want ? 0 : 1));
      ++seen;
    }
}

TEST_CASE("include and exclude lists choose the layers", "[prune][unstructured]") {
  auto model = tied_cnn();
  const auto original = model->clone();
  prune::UnstructuredOptions o{.sparsity = 0.8};
  o.layers.exclude = {"features.0", "fc"};  // stem and head stay dense
  const auto masks = prune::prune_unstructured(*model, o);
  CHECK(masks.find("features.0") == nullptr);
  CHECK(masks.find("fc") == nullptr);
  CHECK(masks.layers().size() == 3);
  CHECK(zeros_of(*model, "features.0") == zeros_of(*original, "features.0"));
  CHECK(zeros_of(*model, "fc") == zeros_of(*original, "fc"));

  prune::UnstructuredOptions g{.sparsity = 0.5};
  g.layers.include = {"features.*"};
  g.layers.exclude = {"features.1?"};  // features.12
  const auto only = prune::unstructured_masks(*model, g);
  REQUIRE(only.layers().size() == 3);
  CHECK(only.layers()[2].layer == "features.8");
}

TEST_CASE("random pruning: exact count, reproducible by seed", "[prune][unstructured]") {
  auto model = tied_cnn();
  const prune::UnstructuredOptions o{.sparsity = 0.7,
                                     .scope = prune::Scope::per_layer,
                                     .criterion = prune::Criterion::random,
                                     .seed = 5};
  const auto a = prune::unstructured_masks(*model, o);
  const auto b = prune::unstructured_masks(*model, o);
  auto o2 = o;
  o2.seed = 6;
  const auto c = prune::unstructured_masks(*model, o2);
  bool differs = false;
  for (std::size_t i = 0; i < a.layers().size(); ++i) {
    CHECK(a.layers()[i].pruned == std::llround(0.7 * double(a.layers()[i].size())));
    CHECK(a.layers()[i].keep == b.layers()[i].keep);
    differs = differs || a.layers()[i].keep != c.layers()[i].keep;
  }
  CHECK(differs);
}

TEST_CASE("masks only grow when given the previous ones", "[prune][unstructured]") {
  for (const auto criterion : {prune::Criterion::magnitude, prune::Criterion::random}) {
    auto model = tied_cnn();
    const auto first = prune::prune_unstructured(*model, {.sparsity = 0.4, .criterion = criterion});
    const auto second =
        prune::prune_unstructured(*model, {.sparsity = 0.7, .criterion = criterion}, &first);
    for (std::size_t l = 0; l < first.layers().size(); ++l)
      for (std::size_t i = 0; i < first.layers()[l].keep.size(); ++i)
        if (first.layers()[l].keep[i] == 0) REQUIRE(second.layers()[l].keep[i] == 0);
    CHECK(second.pruned() == std::llround(0.7 * double(second.weights())));
  }
}

TEST_CASE("bad pruning options are errors naming the option or pattern", "[prune][unstructured]") {
  auto model = tied_cnn();
  for (const double s : {-0.1, 1.0, 1.5}) {
    CHECK_THROWS_AS(prune::unstructured_masks(*model, {.sparsity = s}), ValueError);
    CHECK_THROWS_WITH(prune::unstructured_masks(*model, {.sparsity = s}),
                      Catch::Contains("UnstructuredOptions::sparsity must be in [0, 1)"));
  }
  prune::UnstructuredOptions o;
  o.layers.include = {"layer1.*"};
  CHECK_THROWS_WITH(prune::unstructured_masks(*model, o),
                    Catch::Contains("include pattern 'layer1.*' matches no layer") &&
                        Catch::Contains("'features.0'"));
  o.layers.include = {};
  o.layers.exclude = {"stem"};
  CHECK_THROWS_WITH(prune::unstructured_masks(*model, o),
                    Catch::Contains("exclude pattern 'stem' matches no layer"));
  o.layers.exclude = {"*"};
  CHECK_THROWS_WITH(prune::unstructured_masks(*model, o), Catch::Contains("leave no layer"));
  // A non-finite weight cannot be ranked.
  prune::weight_parameter(*model, "features.4").value->data()[3] = NAN;
  CHECK_THROWS_WITH(prune::unstructured_masks(*model, {}),
                    Catch::Contains("weight 3 of 'features.4' is nan"));
}

namespace {

/// Trains model `steps` steps on one batch with the optimizer, checking after
/// every step that the masks hold and the sparsity equals the target.
void fine_tune_and_check(nn::Module& model, train::Optimizer& opt, prune::MaskedTraining* masked,
                         const prune::MaskSet& masks, int steps, bool expect_hold) {
  nn::SoftmaxCrossEntropy loss;
  train::Trainer trainer(model, loss, opt, train::Task::classification);
  if (masked != nullptr) masked->attach(trainer);
  bool all_held = true;
  int step = 0;
  trainer.add_after_step([&] {
    ++step;
    const bool holds = masks.holds(model);
    all_held = all_held && holds;
    if (expect_hold) {
      INFO("after step " << step);
      REQUIRE(holds);
      std::int64_t z = 0;
      for (const auto& m : masks.layers()) z += zeros_of(model, m.layer);
      CHECK(z >= masks.pruned());  // exactly the pruned ones are 0 (others: rarely 0 by chance)
    }
  });
  model.train();
  const auto batch = random_image_batch(8, 16, 21);
  for (int i = 0; i < steps; ++i) trainer.step(batch);
  CHECK(step == steps);
  CHECK(all_held == expect_hold);
}

}  // namespace

TEST_CASE("pruned weights stay exactly 0 after every fine-tuning step", "[prune][masks]") {
  const int kSteps = 6;
  SECTION("SGD with momentum, Nesterov and weight decay, state from before pruning") {
    auto model = tied_cnn();
    train::Sgd sgd(*model,
                   {.lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-3f});
    fine_tune_and_check(*model, sgd, nullptr, prune::MaskSet{}, 2, true);  // dense warm-up
    prune::MaskedTraining masked(*model, sgd, prune::prune_unstructured(*model, {.sparsity = 0.8}));
    fine_tune_and_check(*model, sgd, &masked, masked.masks(), kSteps, true);
  }
  SECTION("AdamW with weight decay, state from before pruning") {
    auto model = tied_cnn();
    train::AdamW adamw(*model, {.lr = 1e-2f, .weight_decay = 0.05f});
    fine_tune_and_check(*model, adamw, nullptr, prune::MaskSet{}, 2, true);
    prune::MaskedTraining masked(
        *model, adamw,
        prune::prune_unstructured(*model, {.sparsity = 0.9, .scope = prune::Scope::per_layer}));
    fine_tune_and_check(*model, adamw, &masked, masked.masks(), kSteps, true);
    // The state was masked too.
    for (const auto& m : masked.masks().layers()) {
      const auto* st = adamw.state(m.parameter());
      REQUIRE(st != nullptr);
      for (std::size_t i = 0; i < m.keep.size(); ++i)
        if (m.keep[i] == 0)
          REQUIRE((st->exp_avg.data()[i] == 0.f && st->exp_avg_sq.data()[i] == 0.f));
    }
  }
  SECTION("without the masks in training, pruned weights come back (the test can fail)") {
    auto model = tied_cnn();
    train::Sgd sgd(*model, {.lr = 0.05f, .momentum = 0.9f});
    fine_tune_and_check(*model, sgd, nullptr, prune::MaskSet{}, 2, true);
    const auto masks = prune::prune_unstructured(*model, {.sparsity = 0.8});
    fine_tune_and_check(*model, sgd, nullptr, masks, 1, false);
  }
}

TEST_CASE("cubic schedule of Zhu and Gupta", "[prune][schedule]") {
  const prune::CubicSchedule s{.initial_sparsity = 0.1,
                               .final_sparsity = 0.9,
                               .begin_step = 10,
                               .end_step = 50,
                               .frequency = 10};
  CHECK(s.sparsity_at(0) == 0.0);
  CHECK(s.sparsity_at(10) == Approx(0.1));
  CHECK(s.sparsity_at(19) == Approx(0.1));  // held between updates
  CHECK(s.sparsity_at(20) == Approx(0.9 - 0.8 * 0.75 * 0.75 * 0.75));
  CHECK(s.sparsity_at(40) == Approx(0.9 - 0.8 * 0.25 * 0.25 * 0.25));
  CHECK(s.sparsity_at(50) == 0.9);
  CHECK(s.sparsity_at(500) == 0.9);
  CHECK(s.is_update_step(10));
  CHECK_FALSE(s.is_update_step(15));
  CHECK(s.is_update_step(50));
  CHECK_FALSE(s.is_update_step(60));
  prune::CubicSchedule bad = s;
  bad.final_sparsity = 1.0;
  CHECK_THROWS_WITH(bad.check(), Catch::Contains("CubicSchedule::final_sparsity"));
}

TEST_CASE("gradual pruning: the sparsity after every step is the schedule's", "[prune][schedule]") {
  auto model = tied_cnn();
  train::Sgd sgd(*model, {.lr = 0.02f, .momentum = 0.9f});
  nn::SoftmaxCrossEntropy loss;
  train::Trainer trainer(*model, loss, sgd, train::Task::classification);
  prune::UnstructuredOptions policy;
  policy.layers.exclude = {"features.0"};
  const prune::CubicSchedule sched{.initial_sparsity = 0.2,
                                   .final_sparsity = 0.8,
                                   .begin_step = 1,
                                   .end_step = 7,
                                   .frequency = 2};
  prune::GradualPruning gradual(*model, sgd, policy, sched);
  gradual.attach(trainer);
  trainer.add_after_step([&] {
    const auto& m = gradual.masks();
    INFO("step " << gradual.steps());
    CHECK(m.pruned() == std::llround(sched.sparsity_at(gradual.steps()) * double(m.weights())));
    REQUIRE(m.holds(*model));
  });
  model->train();
  const auto batch = random_image_batch(8, 16, 4);
  for (int i = 0; i < 9; ++i) trainer.step(batch);
  CHECK(gradual.masks().sparsity() == Approx(0.8).margin(1e-4));
}

TEST_CASE("iterative pruning rounds reach the target", "[prune][schedule]") {
  const auto t = prune::iterative_targets(0.875, 3);
  REQUIRE(t.size() == 3);
  CHECK(t[0] == Approx(0.5));
  CHECK(t[1] == Approx(0.75));
  CHECK(t[2] == 0.875);
  auto model = tied_cnn();
  std::vector<double> seen;
  const auto masks =
      prune::prune_iteratively(*model, {.sparsity = 0.875}, 3, [&](int, const prune::MaskSet& m) {
        seen.push_back(m.sparsity());
        CHECK(m.holds(*model));
      });
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == Approx(0.5).margin(1e-4));
  CHECK(masks.sparsity() == Approx(0.875).margin(1e-4));
}
