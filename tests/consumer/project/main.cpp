// Trains a small layer stack for a few steps through the installed headers
// (the umbrella header: everything that needs neither stb nor FFmpeg).
#include <compressor/compressor.hpp>
#include <cstdio>

int main() {
  using namespace compressor;
  nn::init::manual_seed(1);
  nn::Sequential net;
  net.emplace<nn::Conv2d>(3, 8, 3, 1, 1, false);
  net.emplace<nn::BatchNorm2d>(8);
  net.emplace<nn::ReLU>();
  net.emplace<nn::GlobalAvgPool2d>();
  net.emplace<nn::Linear>(8, 2);
  data::Batch batch;
  batch.inputs = Tensor<float>(Shape{4, 8, 8, 3});
  Rng rng(2);
  for (auto& v : batch.inputs.flat()) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  batch.labels = Tensor<std::int32_t>::from(Shape{4}, {0, 1, 0, 1});
  nn::SoftmaxCrossEntropy ce;
  train::Adam adam(net, train::AdamOptions{.lr = 1e-2f});
  train::Trainer trainer(net, ce, adam, train::Task::classification);
  const float first = trainer.step(batch);
  float last = first;
  for (int i = 0; i < 20; ++i) last = trainer.step(batch);
  std::printf("consumer: loss %.4f -> %.4f\n", first, last);
  return last < first ? 0 : 1;
}
