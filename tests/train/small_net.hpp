// The small network of the training-checkpoint tests (optimizer state,
// weight averaging): conv(3->4, no bias) BN ReLU pool Linear(4->classes),
// initialised from `seed`.
#pragma once

#include <cstdint>
#include <memory>

#include "compressor/nn.hpp"

namespace compressor::train_test {

inline std::unique_ptr<nn::Sequential> small_net(std::uint64_t seed, std::int64_t classes = 3) {
  nn::init::manual_seed(seed);
  auto net = std::make_unique<nn::Sequential>();
  net->emplace<nn::Conv2d>(3, 4, 3, 1, 1, false);
  net->emplace<nn::BatchNorm2d>(4);
  net->emplace<nn::ReLU>();
  net->emplace<nn::GlobalAvgPool2d>();
  net->emplace<nn::Linear>(4, classes);
  return net;
}

}  // namespace compressor::train_test
