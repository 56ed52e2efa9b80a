// CifarCnn: four blocks of conv3x3(pad 1, no bias) + BN + ReLU + MaxPool2
// with channels 3-64-128-256-512, global average pool and Linear 512->10
// (1,557,066 parameters). PyTorch equivalent (same state_dict names):
//
//   features = nn.Sequential(Conv2d(3,64,3,padding=1,bias=False), BatchNorm2d(64),
//                            ReLU(), MaxPool2d(2), Conv2d(64,128,...), ...)   # 16 modules
//   pool = nn.AdaptiveAvgPool2d(1); fc = nn.Linear(512, num_classes)
//   forward: fc(flatten(pool(features(x)), 1))
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>

#include "compressor/nn/activation.hpp"
#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/pooling.hpp"
#include "compressor/nn/sequential.hpp"

namespace compressor::models {

class CifarCnn : public nn::Sequential {
 public:
  static constexpr std::array<std::int64_t, 4> kChannels{64, 128, 256, 512};

  explicit CifarCnn(std::int64_t num_classes = 10, std::int64_t in_channels = 3) {
    auto features = std::make_unique<nn::Sequential>();
    std::int64_t c_in = in_channels;
    for (const std::int64_t c : kChannels) {
      features->emplace<nn::Conv2d>(c_in, c, 3, 1, 1, false);
      features->emplace<nn::BatchNorm2d>(c);
      features->emplace<nn::ReLU>();
      features->emplace<nn::MaxPool2d>(2);
      c_in = c;
    }
    add("features", std::move(features));
    add("pool", std::make_unique<nn::GlobalAvgPool2d>());
    add("fc", std::make_unique<nn::Linear>(c_in, num_classes));
    set_input_grad(false);  // nothing needs the gradient of the images
  }

  std::string_view type_name() const override { return "CifarCnn"; }
};

}  // namespace compressor::models
