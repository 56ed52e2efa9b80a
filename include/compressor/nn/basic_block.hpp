// ResNet BasicBlock as torchvision builds it:
//   out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))
// with conv1 3x3/stride, conv2 3x3/1, and shortcut = downsample (1x1/stride
// conv + BN, children "downsample.0" and "downsample.1") when the stride or
// the channel count changes, else the identity.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "compressor/core/threading.hpp"
#include "compressor/nn/activation.hpp"
#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/sequential.hpp"

namespace compressor::nn {

class BasicBlock : public Module {
 public:
  BasicBlock(std::int64_t in_channels, std::int64_t out_channels, std::int64_t stride = 1)
      : in_(in_channels), out_channels_(out_channels), stride_(stride) {
    register_module("conv1",
                    std::make_unique<Conv2d>(in_channels, out_channels, 3, stride, 1, false));
    register_module("bn1", std::make_unique<BatchNorm2d>(out_channels));
    register_module("conv2", std::make_unique<Conv2d>(out_channels, out_channels, 3, 1, 1, false));
    register_module("bn2", std::make_unique<BatchNorm2d>(out_channels));
    if (stride != 1 || in_channels != out_channels) {
      auto ds = std::make_unique<Sequential>();
      ds->emplace<Conv2d>(in_channels, out_channels, 1, stride, 0, false);
      ds->emplace<BatchNorm2d>(out_channels);
      register_module("downsample", std::move(ds));
    }
  }

  std::string_view type_name() const override { return "BasicBlock"; }
  bool has_downsample() const { return num_children() == 5; }
  std::int64_t in_channels() const { return in_; }
  std::int64_t out_channels() const { return out_channels_; }
  std::int64_t stride() const { return stride_; }

  /// Children by role; these follow replace(), so they stay valid after a
  /// child was swapped for a deploy-time type.
  Module& conv1() const { return child(0); }
  Module& bn1() const { return child(1); }
  Module& conv2() const { return child(2); }
  Module& bn2() const { return child(3); }
  Module* downsample() const { return has_downsample() ? &child(4) : nullptr; }

  void set_input_grad(bool on) override {
    Module::set_input_grad(on);
    conv1().set_input_grad(on);
    if (auto* ds = downsample()) ds->set_input_grad(on);
  }

  TensorView<const float> forward(TensorView<const float> x) override {
    x_ = x;
    auto h = conv1().forward(x);
    h = bn1().forward(h);
    mid_.resize(h.shape());
    relu_forward(h.data(), mid_.data(), h.numel());
    h = bn2().forward(conv2().forward(mid_));
    TensorView<const float> shortcut = x;
    if (auto* ds = downsample()) shortcut = ds->forward(x);
    check_same_shape(shortcut.shape(), h.shape(), "BasicBlock shortcut");
    out_.resize(h.shape());
    const float *a = h.data(), *b = shortcut.data();
    float* y = out_.data();
    parallel_for(
        out_.numel(),
        [&](std::int64_t i0, std::int64_t i1) {
          for (std::int64_t i = i0; i < i1; ++i) {
            const float s = a[i] + b[i];
            y[i] = s < 0.f ? 0.f : s;  // NaN propagates
          }
        },
        1 << 14);
    return out_;
  }

  TensorView<const float> backward(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "BasicBlock::backward grad_out");
    // Through the final ReLU.
    g_sum_.resize(out_.shape());
    relu_backward(grad_out.data(), out_.data(), g_sum_.data(), out_.numel());
    // Main path.
    auto g = conv2().backward(bn2().backward(g_sum_));
    g_mid_.resize(mid_.shape());
    relu_backward(g.data(), mid_.data(), g_mid_.data(), mid_.numel());
    auto g_main = conv1().backward(bn1().backward(g_mid_));
    // Shortcut path.
    TensorView<const float> g_short = g_sum_;
    if (auto* ds = downsample()) g_short = ds->backward(g_sum_);
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
  std::int64_t in_, out_channels_, stride_;
  TensorView<const float> x_;
  Tensor<float> mid_, out_, g_sum_, g_mid_, grad_in_;
};

}  // namespace compressor::nn
