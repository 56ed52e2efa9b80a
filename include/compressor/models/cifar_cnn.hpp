// CifarCnn: four blocks of conv3x3(pad 1, no bias) + BN + ReLU + MaxPool2
// with channels 3-64-128-256-512 (by default; a ChannelPlan may set others),
// global average pool and Linear 512->10 (1,557,066 parameters). PyTorch
// equivalent (same state_dict names):
//
//   quant = nn.Identity()   # the input's quantization point, no parameters
//   features = nn.Sequential(Conv2d(3,64,3,padding=1,bias=False), BatchNorm2d(64),
//                            ReLU(), MaxPool2d(2), Conv2d(64,128,...), ...)   # 16 modules
//   pool = nn.AdaptiveAvgPool2d(1); fc = nn.Linear(512, num_classes)
//   forward: fc(flatten(pool(features(quant(x))), 1))
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/nn/activation.hpp"
#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/identity.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/pooling.hpp"
#include "compressor/nn/sequential.hpp"

namespace compressor::models {

class CifarCnn : public nn::Sequential, public nn::PlannedModel {
 public:
  static constexpr std::string_view kTypeName = "CifarCnn";
  static constexpr std::array<std::int64_t, 4> kChannels{64, 128, 256, 512};
  /// Index in `features` of block b's conv (b = 0..3): 4 modules per block.
  static constexpr std::int64_t conv_index(std::int64_t b) { return 4 * b; }

  /// The reference channels 64-128-256-512.
  static nn::ChannelPlan default_plan(std::int64_t num_classes = 10, std::int64_t in_channels = 3) {
    nn::ChannelPlan p;
    p.model = std::string(kTypeName);
    p.options = {{"num_classes", num_classes}, {"in_channels", in_channels}};
    for (std::size_t b = 0; b < kChannels.size(); ++b)
      p.channels.emplace_back(conv_name(static_cast<std::int64_t>(b)), kChannels[b]);
    p.channels.emplace_back("fc", num_classes);
    return p;
  }

  explicit CifarCnn(std::int64_t num_classes = 10, std::int64_t in_channels = 3)
      : CifarCnn(default_plan(num_classes, in_channels)) {}

  /// Builds the network of a plan (its conv channels; options num_classes,
  /// in_channels). Throws naming the layer on an inconsistent plan.
  explicit CifarCnn(const nn::ChannelPlan& plan) {
    nn::PlanReader r(plan, kTypeName);
    num_classes_ = plan.option_int("num_classes", 10);
    in_channels_ = plan.option_int("in_channels", 3);
    require(num_classes_ > 0 && in_channels_ > 0, "CifarCnn: num_classes and in_channels must be ",
            "positive, got ", num_classes_, " and ", in_channels_);
    add("quant", std::make_unique<nn::Identity>());
    auto features = std::make_unique<nn::Sequential>();
    std::int64_t c_in = in_channels_;
    for (std::size_t b = 0; b < kChannels.size(); ++b) {
      const std::int64_t c = r.out(conv_name(static_cast<std::int64_t>(b)), kChannels[b]);
      features->emplace<nn::Conv2d>(c_in, c, 3, 1, 1, false);
      features->emplace<nn::BatchNorm2d>(c);
      features->emplace<nn::ReLU>();
      features->emplace<nn::MaxPool2d>(2);
      c_in = c;
    }
    add("features", std::move(features));
    add("pool", std::make_unique<nn::GlobalAvgPool2d>());
    add("fc",
        std::make_unique<nn::Linear>(c_in, r.fixed("fc", num_classes_, "the number of classes")));
    r.finish();
    set_input_grad(false);  // nothing needs the gradient of the images
  }

  std::string_view type_name() const override { return kTypeName; }
  std::int64_t num_classes() const { return num_classes_; }

  nn::ChannelPlan channel_plan() override {
    nn::ChannelPlan p;
    p.model = std::string(kTypeName);
    p.options = {{"num_classes", num_classes_}, {"in_channels", in_channels_}};
    p.channels = nn::weighted_channels(*this);
    return p;
  }

  /// quant (input), features.2/6/10/14 (conv+BN+ReLU; each max pool keeps its
  /// input's parameters), pool (global average), fc (output).
  void add_quantization_points(const std::string& prefix,
                               std::vector<nn::QuantPoint>& out) const override {
    out.push_back({join(prefix, "quant"), nn::PointKind::input});
    for (std::size_t b = 0; b < kChannels.size(); ++b)
      out.push_back(
          {join(prefix, "features." + std::to_string(conv_index(static_cast<std::int64_t>(b)) + 2)),
           nn::PointKind::conv, true});
    out.push_back({join(prefix, "pool"), nn::PointKind::pool});
    out.push_back({join(prefix, "fc"), nn::PointKind::output});
  }

 protected:
  struct Shell {};
  CifarCnn(Shell, std::int64_t num_classes, std::int64_t in_channels)
      : num_classes_(num_classes), in_channels_(in_channels) {}
  std::unique_ptr<Module> clone_shell() const override {
    return std::unique_ptr<CifarCnn>(new CifarCnn(Shell{}, num_classes_, in_channels_));
  }

 private:
  static std::string conv_name(std::int64_t b) {
    return "features." + std::to_string(conv_index(b));
  }

  std::int64_t num_classes_ = 10, in_channels_ = 3;
};

}  // namespace compressor::models
