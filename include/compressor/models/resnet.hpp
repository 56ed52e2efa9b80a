// ResNet-18 with torchvision's topology and state_dict names: 7x7/2 stem conv
// (conv1), bn1, relu, 3x3/2 max pool, layer1..layer4 of two BasicBlocks each
// (64-128-256-512 channels times a width multiplier; layers 2-4 start with
// stride 2 and a 1x1 downsample), global average pool, fc. Works for any
// input size large enough for the five stride-2 stages (>= 32x32).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "compressor/nn/activation.hpp"
#include "compressor/nn/basic_block.hpp"
#include "compressor/nn/init.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/pooling.hpp"
#include "compressor/nn/sequential.hpp"

namespace compressor::models {

struct ResNetOptions {
  std::int64_t num_classes = 1000;
  double width = 1.0;        ///< channel multiplier (0.5 gives 32-64-128-256)
  bool include_head = true;  ///< false: stop after the average pool, output (N, features)
  std::int64_t in_channels = 3;
};

class ResNet18 : public nn::Sequential {
 public:
  explicit ResNet18(const ResNetOptions& o = {}) : opt_(o) {
    require(o.width > 0, "ResNet18: width multiplier must be positive, got ", o.width);
    auto ch = [&](std::int64_t c) {
      return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::lround(c * o.width)));
    };
    const std::int64_t c0 = ch(64);
    add("conv1", std::make_unique<nn::Conv2d>(o.in_channels, c0, 7, 2, 3, false));
    add("bn1", std::make_unique<nn::BatchNorm2d>(c0));
    add("relu", std::make_unique<nn::ReLU>());
    add("maxpool", std::make_unique<nn::MaxPool2d>(3, 2, 1));
    std::int64_t c_in = c0;
    for (int stage = 0; stage < 4; ++stage) {
      const std::int64_t c = ch(64 << stage);
      const std::int64_t stride = stage == 0 ? 1 : 2;
      auto layer = std::make_unique<nn::Sequential>();
      layer->emplace<nn::BasicBlock>(c_in, c, stride);
      layer->emplace<nn::BasicBlock>(c, c, 1);
      add("layer" + std::to_string(stage + 1), std::move(layer));
      c_in = c;
    }
    features_ = c_in;
    add("avgpool", std::make_unique<nn::GlobalAvgPool2d>());
    if (o.include_head) add("fc", std::make_unique<nn::Linear>(c_in, o.num_classes));
    // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") for
    // every conv; BN weight 1, bias 0 (the BN default); Linear keeps its default.
    visit([](const std::string&, nn::Module& m) {
      if (auto* conv = dynamic_cast<nn::Conv2d*>(&m)) {
        const auto& co = conv->options();
        nn::init::kaiming_normal(conv->weight(), co.out_channels * co.kernel_size * co.kernel_size);
      }
    });
    set_input_grad(false);
  }

  std::string_view type_name() const override { return "ResNet"; }
  const ResNetOptions& options() const { return opt_; }
  /// Width of the feature vector before fc (512 at width 1).
  std::int64_t num_features() const { return features_; }

 private:
  ResNetOptions opt_;
  std::int64_t features_ = 0;
};

}  // namespace compressor::models
