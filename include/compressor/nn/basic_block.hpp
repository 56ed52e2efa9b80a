// ResNet BasicBlock as torchvision builds it:
//   out = add_relu(bn2(conv2(relu(bn1(conv1(x))))), shortcut(x))
// with conv1 3x3/stride, conv2 3x3/1, and shortcut = downsample (1x1/stride
// conv + BN, children "downsample.0" and "downsample.1") when the stride or
// the channel count changes, else the identity. The first ReLU ("relu") and
// the residual join ("add_relu", as in torchvision's quantizable ResNet) are
// child modules, so their outputs are named quantization points. conv1 may
// have fewer output channels than the block (a pruned block: `mid`).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/threading.hpp"
#include "compressor/nn/activation.hpp"
#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/sequential.hpp"

namespace compressor::nn {

class BasicBlock : public Module {
 public:
  /// in -> mid (conv1) -> out (conv2) channels; mid = out unless pruned.
  BasicBlock(std::int64_t in_channels, std::int64_t out_channels, std::int64_t stride = 1,
             std::int64_t mid_channels = 0) {
    const std::int64_t mid = mid_channels > 0 ? mid_channels : out_channels;
    register_module("conv1", std::make_unique<Conv2d>(in_channels, mid, 3, stride, 1, false));
    register_module("bn1", std::make_unique<BatchNorm2d>(mid));
    register_module("relu", std::make_unique<ReLU>());
    register_module("conv2", std::make_unique<Conv2d>(mid, out_channels, 3, 1, 1, false));
    register_module("bn2", std::make_unique<BatchNorm2d>(out_channels));
    if (stride != 1 || in_channels != out_channels) {
      auto ds = std::make_unique<Sequential>();
      ds->emplace<Conv2d>(in_channels, out_channels, 1, stride, 0, false);
      ds->emplace<BatchNorm2d>(out_channels);
      register_module("downsample", std::move(ds));
    }
    register_module("add_relu", std::make_unique<AddReLU>());
  }

  std::string_view type_name() const override { return "BasicBlock"; }
  bool has_downsample() const { return find_child("downsample") != nullptr; }
  std::int64_t in_channels() const { return weighted("conv1").in_channels(); }
  std::int64_t mid_channels() const { return weighted("conv1").out_channels(); }
  std::int64_t out_channels() const { return weighted("conv2").out_channels(); }
  std::int64_t stride() const { return weighted("conv1").kernel().stride; }

  /// Children by name; these follow replace(), so they stay valid after a
  /// child was swapped for another type.
  Module& conv1() const { return child("conv1"); }
  Module& bn1() const { return child("bn1"); }
  Module& relu() const { return child("relu"); }
  Module& conv2() const { return child("conv2"); }
  Module& bn2() const { return child("bn2"); }
  Module* downsample() const { return find_child("downsample"); }
  Module& add_relu() const { return child("add_relu"); }

  void set_input_grad(bool on) override {
    Module::set_input_grad(on);
    conv1().set_input_grad(on);
    if (auto* ds = downsample()) ds->set_input_grad(on);
  }

  std::vector<std::pair<std::string, std::string>> batchnorm_pairs() const override {
    return {{"conv1", "bn1"}, {"conv2", "bn2"}};  // downsample: a Sequential of its own
  }

  /// conv1 -> conv2 once bn1 is folded (an Identity): conv1's output reaches
  /// only conv2, through the ReLU.
  std::vector<std::pair<std::string, std::string>> equalization_pairs() const override {
    if (as<WeightedLayer>(conv1()) && conv1().output_hook() == nullptr &&
        passes_channel_scale(bn1()) && passes_channel_scale(relu()) && as<WeightedLayer>(conv2()))
      return {{"conv1", "conv2"}};
    return {};
  }

  void add_quantization_points(const std::string& prefix,
                               std::vector<QuantPoint>& out) const override {
    out.push_back({join(prefix, "relu"), PointKind::conv, true});
    out.push_back({join(prefix, "bn2"), PointKind::conv, false});
    if (has_downsample()) out.push_back({join(prefix, "downsample.1"), PointKind::conv, false});
    out.push_back({join(prefix, "add_relu"), PointKind::add, true});
  }

 protected:
  /// An empty block for clone(): the children come from the original.
  struct Shell {};
  explicit BasicBlock(Shell) {}
  std::unique_ptr<Module> clone_shell() const override {
    return std::unique_ptr<BasicBlock>(new BasicBlock(Shell{}));
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    x_ = x;
    auto h = relu().forward(bn1().forward(conv1().forward(x)));
    h = bn2().forward(conv2().forward(h));
    TensorView<const float> shortcut = x;
    if (auto* ds = downsample()) shortcut = ds->forward(x);
    check_same_shape(shortcut.shape(), h.shape(), "BasicBlock shortcut");
    return require_capability<JoinLayer>(add_relu(), "a residual join", "add_relu")
        .forward(h, shortcut);
  }

  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    // Through the join: the gradient of both branches.
    const auto g_sum = add_relu().backward(grad_out);
    // Main path.
    const auto g_mid = relu().backward(conv2().backward(bn2().backward(g_sum)));
    const auto g_main = conv1().backward(bn1().backward(g_mid));
    // Shortcut path.
    TensorView<const float> g_short = g_sum;
    if (auto* ds = downsample()) g_short = ds->backward(g_sum);
    if (!input_grad()) return {};
    grad_in_.resize(x_.shape());
    const float *a = g_main.data(), *b = g_short.data();
    float* dx = grad_in_.data();
    parallel_for(
        grad_in_.numel(),
        [&](std::int64_t i0, std::int64_t i1) {
          for (std::int64_t i = i0; i < i1; ++i) dx[i] = a[i] + b[i];
        },
        1 << 14);
    return grad_in_;
  }

 private:
  WeightedLayer& weighted(std::string_view name) const {
    return require_capability<WeightedLayer>(child(name), "a layer with weights", name);
  }

  TensorView<const float> x_;
  Tensor<float> grad_in_;
};

}  // namespace compressor::nn
