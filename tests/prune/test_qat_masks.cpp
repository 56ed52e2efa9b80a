// Masks through quantization-aware fine-tuning: quant::prepare_qat keeps the
// layer names (QatConv2d / QatLinear are layers with weights) and the weight
// fake-quant maps 0 to 0, so MaskedTraining keeps pruned weights exactly 0.
#include <catch2/catch.hpp>
#include <compressor/models/cifar_cnn.hpp>
#include <compressor/nn/loss.hpp>
#include <compressor/prune/masked_training.hpp>
#include <compressor/prune/unstructured.hpp>
#include <compressor/quant/observers.hpp>
#include <compressor/quant/qat.hpp>
#include <compressor/train/trainer.hpp>

#include "prune/prune_test_util.hpp"

using namespace compressor;

TEST_CASE("masks hold through quantization-aware fine-tuning", "[prune][masks][qat]") {
  nn::init::manual_seed(8);
  models::CifarCnn model;
  prune::UnstructuredOptions o{.sparsity = 0.8};
  o.layers.exclude = {"features.0"};
  const auto masks = prune::prune_unstructured(model, o);
  quant::Prepared q =
      quant::prepare_qat(model, {.observer = [] { return quant::make_observer("histogram"); }});
  REQUIRE(masks.holds(*q.model));
  train::Sgd sgd(*q.model, {.lr = 0.02f, .momentum = 0.9f, .weight_decay = 1e-4f});
  nn::SoftmaxCrossEntropy loss;
  train::Trainer trainer(*q.model, loss, sgd, train::Task::classification);
  prune::MaskedTraining masked(*q.model, sgd, masks);
  masked.attach(trainer);
  int steps = 0;
  trainer.add_after_step([&] {
    ++steps;
    INFO("after step " << steps);
    REQUIRE(masks.holds(*q.model));
  });
  q.model->train();
  const auto batch = compressor::testing::random_image_batch(4, 16, 9);
  for (int i = 0; i < 3; ++i) trainer.step(batch);
  CHECK(steps == 3);
}
