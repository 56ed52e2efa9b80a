// ReLU: y = max(x, 0). Backward masks with the sign of the output.
#pragma once

#include <cstdint>
#include <string_view>

#include "compressor/core/threading.hpp"
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

class ReLU : public Module {
 public:
  std::string_view type_name() const override { return "ReLU"; }

  TensorView<const float> forward(TensorView<const float> x) override {
    out_.resize(x.shape());
    relu_forward(x.data(), out_.data(), x.numel());
    return out_;
  }

  TensorView<const float> backward(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "ReLU::backward grad_out");
    if (!input_grad()) return {};
    grad_in_.resize(out_.shape());
    relu_backward(grad_out.data(), out_.data(), grad_in_.data(), out_.numel());
    return grad_in_;
  }

 private:
  Tensor<float> out_, grad_in_;
};

}  // namespace compressor::nn
