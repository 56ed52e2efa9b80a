// Shared by the distributed tests: a small labelled image data set whose
// pixels and labels come from a seed (and whose sample i can be recognised:
// pixel 0 holds i), and a small model without and one with BatchNorm.
#pragma once

#include <cstdint>
#include <memory>

#include "compressor/core/rng.hpp"
#include "compressor/data/dataset.hpp"
#include "compressor/nn/activation.hpp"
#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/init.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/pooling.hpp"
#include "compressor/nn/sequential.hpp"

namespace compressor::testing {

class IndexedImages final : public data::Dataset {
 public:
  static constexpr std::int64_t kHw = 6, kClasses = 4;
  IndexedImages(std::int64_t n, std::uint64_t seed, std::int64_t hw = kHw)
      : n_(n), seed_(seed), hw_(hw) {}
  std::int64_t size() const override { return n_; }
  Shape sample_shape() const override { return Shape{hw_, hw_, 3}; }
  data::TargetKind target_kind() const override { return data::TargetKind::label; }
  data::Target get(std::int64_t i, TensorView<float> out, Rng&) const override {
    Rng rng = Rng::derive(seed_, static_cast<std::uint64_t>(i));
    for (std::int64_t k = 0; k < out.numel(); ++k)
      out[k] = static_cast<float>(rng.uniform(-1.0, 1.0));
    out[0] = static_cast<float>(i);  // identifies the sample
    return data::Target{static_cast<std::int32_t>(rng.below(kClasses)), 0.f};
  }

 private:
  std::int64_t n_;
  std::uint64_t seed_;
  std::int64_t hw_;
};

/// Conv-ReLU-Conv-ReLU-GlobalAvgPool-Linear, weights from nn::init::manual_seed(seed).
inline std::unique_ptr<nn::Sequential> small_cnn(std::uint64_t seed, std::int64_t width = 8) {
  nn::init::manual_seed(seed);
  auto net = std::make_unique<nn::Sequential>();
  net->emplace<nn::Conv2d>(3, width, 3, 1, 1);
  net->emplace<nn::ReLU>();
  net->emplace<nn::Conv2d>(width, width, 3, 2, 1);
  net->emplace<nn::ReLU>();
  net->emplace<nn::GlobalAvgPool2d>();
  net->emplace<nn::Linear>(width, IndexedImages::kClasses);
  return net;
}

/// Conv-BN-ReLU-Conv-BN-ReLU-GlobalAvgPool-Linear, weights from
/// nn::init::manual_seed(seed).
inline std::unique_ptr<nn::Sequential> small_bn_cnn(std::uint64_t seed, std::int64_t width = 8) {
  nn::init::manual_seed(seed);
  auto net = std::make_unique<nn::Sequential>();
  net->emplace<nn::Conv2d>(3, width, 3, 1, 1, false);
  net->emplace<nn::BatchNorm2d>(width);
  net->emplace<nn::ReLU>();
  net->emplace<nn::Conv2d>(width, width, 3, 2, 1, false);
  net->emplace<nn::BatchNorm2d>(width);
  net->emplace<nn::ReLU>();
  net->emplace<nn::GlobalAvgPool2d>();
  net->emplace<nn::Linear>(width, IndexedImages::kClasses);
  return net;
}

}  // namespace compressor::testing
