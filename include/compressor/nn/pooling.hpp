// Pooling on NHWC activations: MaxPool2d (kernel, stride, padding; padding
// counts as -inf, as in PyTorch) and GlobalAvgPool2d ((N, H, W, C) -> (N, C)).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>

#include "compressor/core/threading.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

class MaxPool2d : public Module, public ScaleEquivariant {
 public:
  explicit MaxPool2d(std::int64_t kernel, std::int64_t stride = 0, std::int64_t padding = 0)
      : k_(kernel), s_(stride ? stride : kernel), p_(padding) {
    require(k_ > 0 && s_ > 0 && p_ >= 0 && 2 * p_ <= k_, "MaxPool2d: invalid kernel=", k_,
            " stride=", s_, " padding=", p_, " (padding must be at most half the kernel)");
  }

  std::string_view type_name() const override { return "MaxPool2d"; }
  std::int64_t kernel_size() const { return k_; }
  std::int64_t stride() const { return s_; }
  std::int64_t padding() const { return p_; }

  Shape output_shape(const Shape& in) const {
    if (in.rank() != 4)
      throw ShapeError(detail::concat("MaxPool2d: expected an NHWC input, got ", in.str()));
    const std::int64_t hp = in[1] + 2 * p_ - k_, wp = in[2] + 2 * p_ - k_;
    if (hp < 0 || wp < 0)
      throw ShapeError(detail::concat("MaxPool2d: input ", in.str(), " smaller than kernel ", k_));
    return Shape{in[0], hp / s_ + 1, wp / s_ + 1, in[3]};
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<MaxPool2d>(k_, s_, p_);
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    in_shape_ = x.shape();
    const Shape os = output_shape(in_shape_);
    out_.resize(os);
    argmax_.resize(os);
    const std::int64_t h = x.dim(1), w = x.dim(2), c = x.dim(3), oh = os[1], ow = os[2];
    const float* xp = x.data();
    float* yp = out_.data();
    std::int32_t* ap = argmax_.data();
    parallel_for(
        os[0] * oh,
        [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t r = b; r < e; ++r) {
            const std::int64_t n = r / oh, y = r % oh;
            for (std::int64_t xo = 0; xo < ow; ++xo) {
              float* out = yp + ((r * ow) + xo) * c;
              std::int32_t* arg = ap + ((r * ow) + xo) * c;
              for (std::int64_t j = 0; j < c; ++j) {
                out[j] = -std::numeric_limits<float>::infinity();
                arg[j] = -1;
              }
              for (std::int64_t i = 0; i < k_; ++i) {
                const std::int64_t ih = y * s_ - p_ + i;
                if (ih < 0 || ih >= h) continue;
                for (std::int64_t jj = 0; jj < k_; ++jj) {
                  const std::int64_t iw = xo * s_ - p_ + jj;
                  if (iw < 0 || iw >= w) continue;
                  const std::int64_t base = ((n * h + ih) * w + iw) * c;
                  const float* in = xp + base;
                  const auto at = static_cast<std::int32_t>(base - n * h * w * c);
                  // Selects, not branches (the loop vectorises); NaN wins, as
                  // in PyTorch.
                  for (std::int64_t j = 0; j < c; ++j) {
                    const float v = in[j];
                    const bool take = (v > out[j]) | (v != v) | (arg[j] < 0);
                    out[j] = take ? v : out[j];
                    arg[j] = take ? at + static_cast<std::int32_t>(j) : arg[j];
                  }
                }
              }
            }
          }
        },
        4);
    return out_;
  }

  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "MaxPool2d::backward grad_out");
    if (!input_grad()) return {};
    grad_in_.resize(in_shape_);
    const std::int64_t n = in_shape_[0];
    const std::int64_t in_image = in_shape_.numel() / n, out_image = out_.numel() / n;
    const float* dy = grad_out.data();
    const std::int32_t* ap = argmax_.data();
    float* dx = grad_in_.data();
    // Per image: argmax indices are relative to the image, so images are independent.
    parallel_for(n, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        float* dxi = dx + i * in_image;
        std::fill_n(dxi, in_image, 0.f);
        for (std::int64_t o = i * out_image; o < (i + 1) * out_image; ++o) dxi[ap[o]] += dy[o];
      }
    });
    return grad_in_;
  }

 private:
  std::int64_t k_, s_, p_;
  Shape in_shape_;
  Tensor<float> out_, grad_in_;
  Tensor<std::int32_t> argmax_;  // flat index within the image of each output's maximum
};

class GlobalAvgPool2d : public Module, public ScaleEquivariant {
 public:
  std::string_view type_name() const override { return "AdaptiveAvgPool2d"; }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<GlobalAvgPool2d>();
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    if (x.rank() != 4)
      throw ShapeError(
          detail::concat("GlobalAvgPool2d: expected an NHWC input, got ", x.shape().str()));
    in_shape_ = x.shape();
    const std::int64_t n = x.dim(0), hw = x.dim(1) * x.dim(2), c = x.dim(3);
    out_.resize(Shape{n, c});
    const float inv = 1.f / static_cast<float>(hw);
    parallel_for(n, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        float* y = out_.data() + i * c;
        std::fill_n(y, c, 0.f);
        const float* xi = x.data() + i * hw * c;
        for (std::int64_t p = 0; p < hw; ++p)
          for (std::int64_t j = 0; j < c; ++j) y[j] += xi[p * c + j];
        for (std::int64_t j = 0; j < c; ++j) y[j] *= inv;
      }
    });
    return out_;
  }

  TensorView<const float> backward_impl(TensorView<const float> grad_out) override {
    check_same_shape(grad_out.shape(), out_.shape(), "GlobalAvgPool2d::backward grad_out");
    if (!input_grad()) return {};
    grad_in_.resize(in_shape_);
    const std::int64_t n = in_shape_[0], hw = in_shape_[1] * in_shape_[2], c = in_shape_[3];
    const float inv = 1.f / static_cast<float>(hw);
    parallel_for(n, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const float* dy = grad_out.data() + i * c;
        float* dx = grad_in_.data() + i * hw * c;
        for (std::int64_t p = 0; p < hw; ++p)
          for (std::int64_t j = 0; j < c; ++j) dx[p * c + j] = dy[j] * inv;
      }
    });
    return grad_in_;
  }

 private:
  Shape in_shape_;
  Tensor<float> out_, grad_in_;
};

}  // namespace compressor::nn
