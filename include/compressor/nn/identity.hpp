// Identity: y = x (a view, no copy). It stands where a layer was removed
// (a BatchNorm folded into its convolution) and marks the model input as a
// named quantization point ("quant", as torchvision's quantizable models name
// their QuantStub).
#pragma once

#include <memory>
#include <string_view>

#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

class Identity : public Module, public ScaleEquivariant {
 public:
  std::string_view type_name() const override { return "Identity"; }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    shape_ = x.shape();
    return x;
  }
  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    if (!input_grad()) return {};
    check_same_shape(grad_out.shape(), shape_, "Identity::backward grad_out");
    return grad_out;
  }
  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<Identity>(); }

 private:
  Shape shape_;
};

}  // namespace compressor::nn
