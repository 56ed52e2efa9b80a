// A CifarCnn trained briefly on a class-balanced subset of the real CIFAR-10
// (2,000 training and 1,000 test images, 4 epochs of one-cycle SGD: about
// 30 s on 2 cores), shared by the training smoke test and the PTQ test.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <ostream>

#include "compressor/data/image_dataset.hpp"
#include "compressor/data/image_folder.hpp"
#include "compressor/data/loader.hpp"
#include "compressor/models/cifar_cnn.hpp"
#include "compressor/train.hpp"

namespace compressor::testing {

struct BriefCifar {
  std::unique_ptr<data::DataLoader> train, test;
  std::unique_ptr<models::CifarCnn> net;
  std::vector<train::EpochReport> reports;
  double seconds = 0;
};

/// Loads the subsets of root (an image-folder CIFAR-10) and trains the net;
/// log receives the trainer's progress (nullptr: silent).
inline BriefCifar train_cifar10_briefly(const std::filesystem::path& root, std::ostream* log) {
  data::ImageFolderOptions fo;
  fo.max_per_class = 200;
  auto train_set = std::make_shared<data::ImageDataset>(data::load_image_folder(root / "train", fo),
                                                        data::Normalization::cifar10(),
                                                        data::Augmentation::none());
  fo.max_per_class = 100;
  auto test_set = std::make_shared<data::ImageDataset>(data::load_image_folder(root / "test", fo),
                                                       data::Normalization::cifar10());
  require(train_set->size() == 2000 && test_set->size() == 1000, "CIFAR-10 subsets of ",
          train_set->size(), " and ", test_set->size(), " images, expected 2000 and 1000");
  BriefCifar b;
  data::LoaderOptions lo;
  lo.batch_size = 50;
  lo.seed = 1;
  b.train = std::make_unique<data::DataLoader>(train_set, lo);
  lo.shuffle = false;
  lo.batch_size = 200;
  b.test = std::make_unique<data::DataLoader>(test_set, lo);

  nn::init::manual_seed(1);
  b.net = std::make_unique<models::CifarCnn>();
  nn::SoftmaxCrossEntropy ce;
  const int epochs = 4;
  train::Sgd sgd(
      *b.net,
      train::SgdOptions{.lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 5e-4f});
  train::OneCycleLr sched(0.05f, epochs * b.train->num_batches());
  train::Trainer trainer(*b.net, ce, sgd, train::Task::classification, &sched);
  train::FitOptions fit;
  fit.epochs = epochs;
  fit.log = log;
  fit.progress_interval = 10;
  const auto t0 = std::chrono::steady_clock::now();
  b.reports = trainer.fit(*b.train, b.test.get(), fit);
  b.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return b;
}

}  // namespace compressor::testing
