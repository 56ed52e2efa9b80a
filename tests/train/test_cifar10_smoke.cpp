// Smoke test on the real CIFAR-10: a few epochs on a class-balanced subset of
// the training set must reach well above chance (10%) on held-out test images.
#include <catch2/catch.hpp>
#include <chrono>
#include <iostream>
#include <memory>

#include "compressor/data/image_dataset.hpp"
#include "compressor/data/image_folder.hpp"
#include "compressor/data/loader.hpp"
#include "compressor/models/cifar_cnn.hpp"
#include "compressor/train.hpp"

using namespace compressor;

TEST_CASE("CifarCnn learns real CIFAR-10 well above chance in seconds", "[train][cifar10]") {
  const std::filesystem::path root(COMPRESSOR_CIFAR10_DIR);
  data::ImageFolderOptions fo;
  fo.max_per_class = 200;
  auto train_set = std::make_shared<data::ImageDataset>(data::load_image_folder(root / "train", fo),
                                                        data::Normalization::cifar10(),
                                                        data::Augmentation::none());
  fo.max_per_class = 100;
  auto test_set = std::make_shared<data::ImageDataset>(data::load_image_folder(root / "test", fo),
                                                       data::Normalization::cifar10());
  REQUIRE(train_set->size() == 2000);
  REQUIRE(test_set->size() == 1000);

  data::LoaderOptions lo;
  lo.batch_size = 50;
  lo.seed = 1;
  data::DataLoader train_loader(train_set, lo);
  lo.shuffle = false;
  lo.batch_size = 200;
  data::DataLoader test_loader(test_set, lo);

  nn::init::manual_seed(1);
  models::CifarCnn net;
  nn::SoftmaxCrossEntropy ce;
  const int epochs = 4;
  train::Sgd sgd(net, train::SgdOptions{
                          .lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 5e-4f});
  train::OneCycleLr sched(0.05f, epochs * train_loader.num_batches());
  train::Trainer trainer(net, ce, sgd, train::Task::classification, &sched);
  train::FitOptions fit;
  fit.epochs = epochs;
  fit.log = &std::cout;
  fit.progress_interval = 10;
  const auto t0 = std::chrono::steady_clock::now();
  const auto reports = trainer.fit(train_loader, &test_loader, fit);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double acc = reports.back().val->accuracy;
  std::cout << "CIFAR-10 smoke: test accuracy " << 100 * acc << "% after " << epochs
            << " epochs on 2000 images, " << secs << " s\n";
  CHECK(acc > 0.30);
}
