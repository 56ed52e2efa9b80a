// PTQ on the real CIFAR-10: a CifarCnn trained briefly (as the training smoke
// test) keeps its top-1 within 1 point after PTQ with the histogram observer
// and 10 calibration batches. Labelled slow (about 40 s on 2 cores).
#include <catch2/catch.hpp>
#include <iostream>

#include "compressor/quant/convert.hpp"
#include "compressor/quant/observers.hpp"
#include "support/cifar10_brief.hpp"

using namespace compressor;

TEST_CASE("PTQ keeps a CifarCnn's CIFAR-10 top-1 within 1 point", "[quant][ptq][cifar10]") {
  auto b = testing::train_cifar10_briefly(COMPRESSOR_CIFAR10_DIR, nullptr);
  nn::SoftmaxCrossEntropy ce;
  const double fp32 = train::evaluate(*b.net, ce, train::Task::classification, *b.test).accuracy;
  quant::Prepared p =
      quant::prepare_ptq(*b.net, {.observer = [] { return quant::make_observer("histogram"); }});
  CHECK(quant::calibrate(p, *b.train, 10) == 10);
  quant::Int8Model int8 = quant::convert(p);
  const double int8_acc = train::evaluate(int8, ce, train::Task::classification, *b.test).accuracy;
  std::cout << "CIFAR-10 PTQ: fp32 top-1 " << 100 * fp32 << "%, int8 " << 100 * int8_acc
            << "% on 1000 test images (training " << b.seconds << " s)\n";
  CHECK(fp32 > 0.30);  // the model learned something
  CHECK(std::abs(int8_acc - fp32) <= 0.01);
}
