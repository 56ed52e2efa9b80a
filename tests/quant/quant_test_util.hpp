// Helpers of the quantization tests: a plain min/max observer and a source of
// random calibration batches, enough to drive the PTQ flow, and the flow
// itself in one call.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/data/batch.hpp"
#include "compressor/models/cifar_cnn.hpp"
#include "compressor/nn/activation.hpp"
#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/identity.hpp"
#include "compressor/nn/sequential.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/observer.hpp"
#include "support/cifar_plan.hpp"
#include "support/test_util.hpp"

namespace compressor::testing {

/// A plain min/max observer, enough to drive the flow in these tests.
class TestMinMax : public quant::Observer {
 public:
  TestMinMax() {
    register_buffer("min_val", min_);
    register_buffer("max_val", max_);
  }
  std::string_view type_name() const override { return "TestMinMax"; }
  void observe(TensorView<const float> x) override {
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      require(std::isfinite(x[i]), "observer saw a non-finite value");
      if (n_ == 0 && i == 0) min_[0] = max_[0] = x[0];
      min_[0] = std::min(min_[0], x[i]);
      max_[0] = std::max(max_[0], x[i]);
    }
    ++n_;
  }
  quant::Range range() const override {
    require(n_ > 0, "nothing observed");
    return {min_[0], max_[0]};
  }
  void reset() override { n_ = 0; }
  std::int64_t observed() const override { return n_; }
  /// Scales the recorded range (a badly calibrated point, for the tests).
  void widen(float factor) {
    min_[0] *= factor;
    max_[0] *= factor;
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<TestMinMax>(); }

 private:
  Tensor<float> min_{Shape{1}, 0.f}, max_{Shape{1}, 0.f};
  std::int64_t n_ = 0;
};

/// The PTQ config of the tests: TestMinMax observers, weights on `grid`
/// (PtqConfig's default grid unless asked).
inline quant::PtqConfig test_config(quant::WeightGrid grid = quant::PtqConfig{}.grid) {
  return {.observer = [] { return std::make_unique<TestMinMax>(); }, .grid = grid};
}

/// A few random batches.
class RandomBatches : public data::BatchSource {
 public:
  RandomBatches(Shape shape, int batches, std::uint64_t seed, float lo = -1.f, float hi = 1.f)
      : shape_(shape), n_(batches), seed_(seed), lo_(lo), hi_(hi) {}
  void start_epoch(std::uint64_t) override { i_ = 0; }
  bool next(data::Batch& out) override {
    if (i_ >= n_) return false;
    Rng rng(seed_ + static_cast<std::uint64_t>(i_++));
    out.inputs = random_tensor(shape_, rng, lo_, hi_);
    return true;
  }
  std::int64_t num_batches() const override { return n_; }
  std::int64_t num_samples() const override { return n_ * shape_[0]; }
  Tensor<float> batch(int i) const {
    Rng rng(seed_ + static_cast<std::uint64_t>(i));
    return random_tensor(shape_, rng, lo_, hi_);
  }

 private:
  Shape shape_;
  int n_;
  std::uint64_t seed_;
  float lo_, hi_;
  int i_ = 0;
};

/// y = 2x, a layer type the converter does not know.
struct Twice : nn::Module {
  std::string_view type_name() const override { return "Twice"; }
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    y = Tensor<float>(x);
    for (auto& v : y.flat()) v *= 2.f;
    return y;
  }
  TensorView<const float> backward_impl(TensorView<const float> g) override { return g; }
  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<Twice>(); }
  Tensor<float> y;
};

/// quant, conv 3->4 (3x3), ReLU, then two layers with no int8 form: a
/// BatchNorm after the ReLU (not foldable) as "3" and a Twice as "4". Points:
/// the input and the ReLU ("2"). Input (N, 8, 8, 3).
inline std::unique_ptr<nn::Sequential> net_with_unsupported_layers() {
  struct Net : nn::Sequential {
    void add_quantization_points(const std::string& prefix,
                                 std::vector<nn::QuantPoint>& out) const override {
      out.push_back({join(prefix, "quant"), nn::PointKind::input});
      out.push_back({join(prefix, "2"), nn::PointKind::conv, true});
    }
    std::unique_ptr<Module> clone_shell() const override { return std::make_unique<Net>(); }
  };
  auto n = std::make_unique<Net>();
  n->add("quant", std::make_unique<nn::Identity>());
  n->emplace<nn::Conv2d>(3, 4, 3);
  n->emplace<nn::ReLU>();
  n->emplace<nn::BatchNorm2d>(4);  // after the ReLU: not foldable
  n->emplace<Twice>();
  return n;
}

/// prepare_ptq -> calibrate on `batches` random batches of `input` -> convert,
/// with weights on `grid`.
inline quant::Int8Model ptq_int8(const nn::Module& model, const Shape& input, int batches,
                                 std::uint64_t seed,
                                 quant::WeightGrid grid = quant::PtqConfig{}.grid) {
  quant::Prepared p = quant::prepare_ptq(model, test_config(grid));
  RandomBatches calib(input, batches, seed);
  quant::calibrate(p, calib);
  return quant::convert(p);
}

}  // namespace compressor::testing
