// PTQ on the real CIFAR-10: a CifarCnn trained briefly (as the training smoke
// test) keeps its top-1 within 1 point after PTQ with the histogram observer
// and 10 calibration batches. Labelled slow (about 40 s on 2 cores).
#include <catch2/catch.hpp>
#include <chrono>
#include <iostream>
#include <memory>

#include "compressor/data/image_dataset.hpp"
#include "compressor/data/image_folder.hpp"
#include "compressor/data/loader.hpp"
#include "compressor/models/cifar_cnn.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/observers.hpp"
#include "compressor/train.hpp"

using namespace compressor;

TEST_CASE("PTQ keeps a CifarCnn's CIFAR-10 top-1 within 1 point", "[quant][ptq][cifar10]") {
  const std::filesystem::path root(COMPRESSOR_CIFAR10_DIR);
  data::ImageFolderOptions fo;
  fo.max_per_class = 200;
  auto train_set = std::make_shared<data::ImageDataset>(data::load_image_folder(root / "train", fo),
                                                        data::Normalization::cifar10(),
                                                        data::Augmentation::none());
  fo.max_per_class = 100;
  auto test_set = std::make_shared<data::ImageDataset>(data::load_image_folder(root / "test", fo),
                                                       data::Normalization::cifar10());
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
  fit.log = nullptr;
  const auto t0 = std::chrono::steady_clock::now();
  trainer.fit(train_loader, nullptr, fit);
  const double fp32 = train::evaluate(net, ce, train::Task::classification, test_loader).accuracy;

  quant::Prepared p =
      quant::prepare_ptq(net, {.observer = [] { return quant::make_observer("histogram"); }});
  CHECK(quant::calibrate(p, train_loader, 10) == 10);
  quant::Int8Model int8 = quant::convert(p);
  const double int8_acc =
      train::evaluate(int8, ce, train::Task::classification, test_loader).accuracy;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "CIFAR-10 PTQ: fp32 top-1 " << 100 * fp32 << "%, int8 " << 100 * int8_acc
            << "% on 1000 test images, " << secs << " s\n";
  CHECK(fp32 > 0.30);  // the model learned something
  CHECK(std::abs(int8_acc - fp32) <= 0.01);
}
