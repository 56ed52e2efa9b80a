// The example of docs/pruning.md, compiled and run (with a narrower ResNet18
// and 32x32 images so that it takes milliseconds).
#include <catch2/catch.hpp>
#include <compressor/compressor.hpp>
#include <sstream>

#include "prune/prune_test_util.hpp"
#include "support/repeat_batch.hpp"

using namespace compressor;

TEST_CASE("the docs/pruning.md example runs", "[prune][docs]") {
  nn::init::manual_seed(1);
  compressor::testing::RepeatBatch train_set(compressor::testing::random_image_batch(4, 32, 1), 2),
      val_set(compressor::testing::random_image_batch(4, 32, 2), 1);
  const auto sparse_path = compressor::testing::temp_path("resnet18_90.safetensors");
  const auto channel_path = compressor::testing::temp_path("resnet18_c50.safetensors");
  const models::ResNetOptions options{.num_classes = 10, .width = 0.25};
  std::ostringstream out;

  // ---- docs/pruning.md, "Example" (sizes as above) ----
  models::ResNet18 net(options);  // trained, say
  const Shape input{1, 32, 32, 3};
  nn::SoftmaxCrossEntropy loss;

  // Unstructured: 90% of the weights of the blocks; the stem and the head stay dense.
  prune::UnstructuredOptions u{.sparsity = 0.9};
  u.layers.exclude = {"conv1", "fc"};
  train::Sgd sgd(net, {.lr = 0.01f, .momentum = 0.9f, .weight_decay = 5e-4f});
  train::Trainer trainer(net, loss, sgd, train::Task::classification);
  prune::MaskedTraining masked(net, sgd, prune::prune_unstructured(net, u));
  masked.attach(trainer);
  train::FitOptions fit;
  fit.epochs = 2;
  trainer.fit(train_set, &val_set, fit);               // 90% after every step
  prune::finalize_sparse(net, masked.masks(), input);  // sparse layers where measured faster
  prune::save_sparse_model(net, sparse_path);

  // Structured: half of each block's inner channels, kept counts a multiple of 16.
  models::ResNet18 small(options);
  const auto groups = prune::prune_channels(small, {.ratio = 0.5, .round_to = 16});
  io::save_checkpoint(small, channel_path);  // with its channel plan
  auto reloaded = io::load_model<models::ResNet18>(channel_path);
  out << prune::format_report(prune::report(*reloaded, input));
  // ---- end of the example ----

  CHECK(masked.masks().sparsity() == Approx(0.9).margin(1e-4));
  auto loaded = prune::load_sparse_model<models::ResNet18>(sparse_path);
  CHECK(loaded->num_children() == net.num_children());
  CHECK(groups.size() == 8);  // one inner group per BasicBlock
  CHECK(out.str().find("layer4.1.conv2") != std::string::npos);
}
