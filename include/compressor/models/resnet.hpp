// ResNet-18 with torchvision's topology and state_dict names: 7x7/2 stem conv
// (conv1), bn1, relu, 3x3/2 max pool, layer1..layer4 of two BasicBlocks each
// (64-128-256-512 channels times a width multiplier, or the counts of a
// ChannelPlan; layers 2-4 start with stride 2 and a 1x1 downsample), global
// average pool, fc. A parameter-free Identity "quant" before conv1 marks the
// input's quantization point (torchvision's quantizable ResNet has a QuantStub
// there). Works for any input size large enough for the five stride-2 stages
// (>= 32x32).
//
// Plan entries (output channels): conv1, layerS.B.conv1 (a block's inner
// width), layerS.B.conv2 and layerS.B.downsample.0 (a block's output; equal,
// since the two are added), fc (= num_classes). A block has a downsample when
// its stride is 2 or its input and output widths differ, as in torchvision.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/nn/activation.hpp"
#include "compressor/nn/basic_block.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/identity.hpp"
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

class ResNet18 : public nn::Sequential, public nn::PlannedModel {
 public:
  static constexpr std::string_view kTypeName = "ResNet";

  /// The uniform plan of a width multiplier.
  static nn::ChannelPlan uniform_plan(const ResNetOptions& o) {
    require(o.width > 0, "ResNet18: width multiplier must be positive, got ", o.width);
    auto ch = [&](std::int64_t c) {
      return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::lround(c * o.width)));
    };
    nn::ChannelPlan p;
    p.model = std::string(kTypeName);
    p.options = options_json(o.num_classes, o.include_head, o.in_channels);
    add_uniform_channels(p, "", ch);
    if (o.include_head) p.channels.emplace_back("fc", o.num_classes);
    return p;
  }

  explicit ResNet18(const ResNetOptions& o = {}) : ResNet18(uniform_plan(o)) { opt_ = o; }

  /// Builds the network of a plan; throws naming the layer on an
  /// inconsistent plan.
  explicit ResNet18(const nn::ChannelPlan& plan) {
    nn::PlanReader r(plan, kTypeName);
    opt_.num_classes = plan.option_int("num_classes", 1000);
    opt_.include_head = plan.option_bool("include_head", true);
    opt_.in_channels = plan.option_int("in_channels", 3);
    build(r, "");
    r.finish();
  }

  /// Builds the trunk of a plan read by r, whose layer names carry prefix
  /// ("backbone." inside EfRegressor); r.finish() is the caller's.
  ResNet18(nn::PlanReader& r, const std::string& prefix, std::int64_t in_channels) {
    opt_.include_head = false;
    opt_.in_channels = in_channels;
    build(r, prefix);
  }

  std::string_view type_name() const override { return kTypeName; }
  /// num_classes, include_head and in_channels as built (width: as requested
  /// when built from a width, 0 when built from a plan).
  const ResNetOptions& options() const { return opt_; }
  /// Width of the feature vector before fc (512 at width 1): the output
  /// channels of the last block.
  std::int64_t num_features() const {
    return require_capability<nn::ChannelProducer>(*find("layer4.1.conv2"), "a layer with weights",
                                                   "layer4.1.conv2")
        .out_channels();
  }

  nn::ChannelPlan channel_plan() override {
    nn::ChannelPlan p;
    p.model = std::string(kTypeName);
    p.options = options_json(opt_.num_classes, opt_.include_head, opt_.in_channels);
    p.channels = nn::weighted_channels(*this);
    return p;
  }

  /// quant (input), relu (stem conv+BN+ReLU; the max pool keeps its
  /// parameters), each block's points, avgpool, fc (output).
  void add_quantization_points(const std::string& prefix,
                               std::vector<nn::QuantPoint>& out) const override {
    out.push_back({join(prefix, "quant"), nn::PointKind::input});
    out.push_back({join(prefix, "relu"), nn::PointKind::conv, true});
    for (int s = 1; s <= 4; ++s) {
      const std::string layer = "layer" + std::to_string(s);
      child(layer).add_quantization_points(join(prefix, layer), out);
    }
    out.push_back({join(prefix, "avgpool"), nn::PointKind::pool});
    if (find_child("fc")) out.push_back({join(prefix, "fc"), nn::PointKind::output});
  }

  /// Adds the uniform trunk channels of ch(64 << stage) under prefix.
  template <class Ch>
  static void add_uniform_channels(nn::ChannelPlan& p, const std::string& prefix, Ch&& ch) {
    p.channels.emplace_back(prefix + "conv1", ch(64));
    for (int s = 0; s < 4; ++s)
      for (int b = 0; b < 2; ++b) {
        const std::string block =
            prefix + "layer" + std::to_string(s + 1) + "." + std::to_string(b) + ".";
        p.channels.emplace_back(block + "conv1", ch(64 << s));
        p.channels.emplace_back(block + "conv2", ch(64 << s));
        if (s > 0 && b == 0) p.channels.emplace_back(block + "downsample.0", ch(64 << s));
      }
  }

 protected:
  struct Shell {};
  ResNet18(Shell, const ResNetOptions& o) : opt_(o) {}
  std::unique_ptr<Module> clone_shell() const override {
    return std::unique_ptr<ResNet18>(new ResNet18(Shell{}, opt_));
  }

 private:
  static io::json::Object options_json(std::int64_t num_classes, bool include_head,
                                       std::int64_t in_channels) {
    io::json::Object o{{"include_head", include_head}, {"in_channels", in_channels}};
    if (include_head) o.emplace_back("num_classes", num_classes);
    return o;
  }

  void build(nn::PlanReader& r, const std::string& prefix) {
    require(opt_.in_channels > 0, "ResNet18: in_channels must be positive, got ", opt_.in_channels);
    const std::int64_t c0 = r.out(prefix + "conv1");
    add("quant", std::make_unique<nn::Identity>());
    add("conv1", std::make_unique<nn::Conv2d>(opt_.in_channels, c0, 7, 2, 3, false));
    add("bn1", std::make_unique<nn::BatchNorm2d>(c0));
    add("relu", std::make_unique<nn::ReLU>());
    add("maxpool", std::make_unique<nn::MaxPool2d>(3, 2, 1));
    std::int64_t c_in = c0;
    for (int stage = 0; stage < 4; ++stage) {
      const std::string layer_name = "layer" + std::to_string(stage + 1);
      auto layer = std::make_unique<nn::Sequential>();
      for (int b = 0; b < 2; ++b) {
        const std::string block = prefix + layer_name + "." + std::to_string(b) + ".";
        const std::int64_t stride = stage > 0 && b == 0 ? 2 : 1;
        const std::int64_t mid = r.out(block + "conv1");
        const std::int64_t out = r.out(block + "conv2");
        if (stride != 1 || c_in != out)
          r.fixed(block + "downsample.0", out, "the residual add with " + block + "conv2");
        layer->emplace<nn::BasicBlock>(c_in, out, stride, mid);
        c_in = out;
      }
      add(layer_name, std::move(layer));
    }
    add("avgpool", std::make_unique<nn::GlobalAvgPool2d>());
    if (opt_.include_head)
      add("fc", std::make_unique<nn::Linear>(
                    c_in, r.fixed(prefix + "fc", opt_.num_classes, "the number of classes")));
    // torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") for
    // every conv; BN weight 1, bias 0 (the BN default); Linear keeps its default.
    visit([](const std::string&, nn::Module& m) {
      auto* w = nn::as<nn::WeightedLayer>(m);
      if (w == nullptr || w->weight().rank() != 4) return;
      const auto k = w->kernel();
      nn::init::kaiming_normal(w->weight(), w->out_channels() * k.kh * k.kw);
    });
    set_input_grad(false);
  }

  ResNetOptions opt_{.num_classes = 1000, .width = 0.0, .include_head = true, .in_channels = 3};
};

}  // namespace compressor::models
