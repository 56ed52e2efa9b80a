// PTQ on the real CIFAR-10: a CifarCnn trained briefly (as the training smoke
// test) keeps its top-1 within 1 point after PTQ with the histogram observer
// and 10 calibration batches, with and without cross-layer equalization and
// bias correction; the test prints each variant's top-1 and the SQNR of its
// logits against fp32 (docs/quantization.md quotes them). Labelled slow
// (about 40 s on 2 cores).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "compressor/quant/convert.hpp"
#include "compressor/quant/observers.hpp"
#include "support/cifar10_brief.hpp"

using namespace compressor;

namespace {

/// 10 log10(sum y^2 / sum (y8 - y)^2) of the logits over the test set.
double logits_sqnr(nn::Module& net, quant::Int8Model& int8, data::BatchSource& test) {
  test.start_epoch(0);
  data::Batch b;
  double sig = 0, err = 0;
  while (test.next(b)) {
    const Tensor<float> y(net.forward(b.inputs));
    const Tensor<float> y8(int8.forward(b.inputs));
    for (std::int64_t i = 0; i < y.numel(); ++i) {
      sig += double(y[i]) * y[i];
      err += (double(y8[i]) - y[i]) * (double(y8[i]) - y[i]);
    }
  }
  return 10 * std::log10(sig / err);
}

}  // namespace

TEST_CASE("PTQ keeps a CifarCnn's CIFAR-10 top-1 within 1 point", "[quant][ptq][cifar10]") {
  auto b = testing::train_cifar10_briefly(COMPRESSOR_CIFAR10_DIR, nullptr);
  nn::SoftmaxCrossEntropy ce;
  const double fp32 = train::evaluate(*b.net, ce, train::Task::classification, *b.test).accuracy;
  std::cout << "CIFAR-10 PTQ (histogram observer, 10 calibration batches of 50; training "
            << b.seconds << " s): fp32 top-1 " << 100 * fp32 << "% on 1000 test images\n";
  CHECK(fp32 > 0.30);  // the model learned something
  b.net->eval();       // logits_sqnr runs it directly
  struct Variant {
    const char* name;
    bool cle, bias_correction;
  };
  for (const Variant v : {Variant{"plain", false, false}, Variant{"CLE", true, false},
                          Variant{"bias correction", false, true}, Variant{"both", true, true}}) {
    INFO(v.name);
    quant::PtqConfig cfg{.observer = [] { return quant::make_observer("histogram"); }};
    cfg.cross_layer_equalization = v.cle;
    cfg.bias_correction = v.bias_correction;
    quant::Prepared p = quant::prepare_ptq(*b.net, cfg);
    CHECK(quant::calibrate(p, *b.train, 10) == 10);
    quant::Int8Model int8 = quant::convert(p);
    const double acc = train::evaluate(int8, ce, train::Task::classification, *b.test).accuracy;
    const double sqnr = logits_sqnr(*b.net, int8, *b.test);
    char line[160];
    std::snprintf(line, sizeof line,
                  "  int8 %-16s top-1 %.1f%% (%+.1f points), logits SQNR %.2f dB\n", v.name,
                  100 * acc, 100 * (acc - fp32), sqnr);
    std::cout << line;
    CHECK(std::abs(acc - fp32) <= 0.01);
  }
}
