// ReLU: y = max(x, 0). Backward masks with the sign of the output.
// AddReLU: y = max(a + b, 0), the residual join of a ResNet block, as a module
// of its own so that its output is a named quantization point.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>

#include "compressor/core/threading.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

/// y = max(x, 0) elementwise (y may alias x); NaN stays NaN, as in PyTorch,
/// so a diverged run is detected rather than silently masked.
inline void relu_forward(const float* x, float* y, std::int64_t n) {
  parallel_for(
      n,
      [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i)
          y[i] = x[i] < 0.f ? 0.f : x[i];  // NaN propagates, as in PyTorch
      },
      1 << 14);
}

/// dx = dy where y > 0, else 0 (y is the ReLU output).
inline void relu_backward(const float* dy, const float* y, float* dx, std::int64_t n) {
  parallel_for(
      n,
      [&](std::int64_t b, std::int64_t e) {
        // Both loads unconditional, so the select vectorises (a conditional
        // load of dy compiles to a branch per element, mispredicted half the
        // time on real activations).
        for (std::int64_t i = b; i < e; ++i) {
          const float g = dy[i];
          dx[i] = y[i] > 0.f ? g : 0.f;
        }
      },
      1 << 14);
}

class ReLU : public Module, public ScaleEquivariant {
 public:
  std::string_view type_name() const override { return "ReLU"; }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    out_.resize(x.shape());
    relu_forward(x.data(), out_.data(), x.numel());
    return out_;
  }

  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "ReLU::backward grad_out");
    if (!input_grad()) return {};
    grad_in_.resize(out_.shape());
    relu_backward(grad_out.data(), out_.data(), grad_in_.data(), out_.numel());
    return grad_in_;
  }

  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<ReLU>(); }

 private:
  Tensor<float> out_, grad_in_;
};

/// y = max(a + b, 0) for two inputs of the same shape: forward(a, b). Its
/// backward returns the gradient of the sum, which is the gradient of both a
/// and b. The one-input forward(x) is an error.
class AddReLU : public Module, public JoinLayer {
 public:
  std::string_view type_name() const override { return "AddReLU"; }

  using Module::forward;
  /// max(a + b, 0), then the output hook.
  TensorView<const float> forward(TensorView<const float> a, TensorView<const float> b) override {
    check_same_shape(b.shape(), a.shape(), "AddReLU: the second input");
    out_.resize(a.shape());
    const float *pa = a.data(), *pb = b.data();
    float* y = out_.data();
    parallel_for(
        out_.numel(),
        [&](std::int64_t i0, std::int64_t i1) {
          for (std::int64_t i = i0; i < i1; ++i) {
            const float s = pa[i] + pb[i];
            y[i] = s < 0.f ? 0.f : s;  // NaN propagates
          }
        },
        1 << 14);
    TensorView<const float> out = out_;
    return output_hook() ? output_hook()->forward(out) : out;
  }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    throw ValueError(detail::concat("AddReLU takes two inputs, forward(a, b); got one of shape ",
                                    x.shape().str()));
  }

  /// Always computes the gradient: it is the gradient of both inputs.
  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "AddReLU::backward grad_out");
    grad_in_.resize(out_.shape());
    relu_backward(grad_out.data(), out_.data(), grad_in_.data(), out_.numel());
    return grad_in_;
  }

  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<AddReLU>(); }

 private:
  Tensor<float> out_, grad_in_;
};

}  // namespace compressor::nn
