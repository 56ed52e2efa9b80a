// The PTQ example of docs/quantization.md ("Flows"), compiled and run: a
// ResNet18, calibrated with the histogram observer, saved, loaded, run and
// evaluated like the float model.
#include <catch2/catch.hpp>
#include <compressor/compressor.hpp>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "quant/quant_test_util.hpp"

using namespace compressor;

TEST_CASE("the docs/quantization.md PTQ example runs", "[quant][docs]") {
  nn::init::manual_seed(3);
  const auto dir = std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "docs_example";
  std::filesystem::create_directories(dir);
  const auto path = dir / "resnet18.int8.safetensors";
  // Two calibration images and one test image: the sanitizer build runs this too.
  compressor::testing::RandomBatches calibration_loader(Shape{1, 112, 112, 3}, 2, 5);
  struct Labelled : data::BatchSource {  // one labelled image
    void start_epoch(std::uint64_t) override { done = false; }
    bool next(data::Batch& b) override {
      if (done) return false;
      b.inputs = Tensor<float>(Shape{1, 112, 112, 3}, 0.1f);
      b.labels = Tensor<std::int32_t>::from(Shape{1}, {3});
      return done = true;
    }
    std::int64_t num_batches() const override { return 1; }
    std::int64_t num_samples() const override { return 1; }
    bool done = false;
  } test_loader;
  nn::SoftmaxCrossEntropy loss;
  std::ostringstream out;

  // --- the example ---
  models::ResNet18 net;  // trained, say
  quant::Prepared p =
      quant::prepare_ptq(net, {.observer = [] { return quant::make_observer("histogram"); }});
  quant::calibrate(p, calibration_loader, /*max_batches=*/32);
  quant::Int8Model int8 = quant::convert(p);  // every layer int8, or an error
  out << int8.summary().str();                // per point: scale, zero point
  quant::save_int8_model(int8, net.channel_plan(), path);

  quant::Int8Model loaded = quant::load_int8_model<models::ResNet18>(path);
  Tensor<float> x(Shape{1, 112, 112, 3});              // NHWC, normalised like training
  TensorView<const float> logits = loaded.forward(x);  // float out, as the float model
  train::Metrics m = train::evaluate(loaded, loss, train::Task::classification, test_loader);
  // --- end of the example ---

  CHECK(logits.shape() == Shape{1, 1000});
  CHECK(out.str().find("weight grid full [-127, 127]") != std::string::npos);  // the default
  CHECK(int8.summary().points.size() == 31);
  CHECK(int8.summary().layers.size() == 21);  // 20 convs + fc
  CHECK(std::filesystem::file_size(path) > 0);
  CHECK(m.samples == 1);
}
