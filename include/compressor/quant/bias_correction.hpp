// Empirical bias correction (Nagel et al. 2019, section 4.2; AIMET's
// "empirical" variant). Quantizing a layer's weights shifts the expected value
// of its output: E[W_q x] != E[W x], per output channel, and the shift adds
// up downstream (ReLUs and pools turn a shifted mean into a different
// activation range). On calibration batches, layer by layer in data-flow
// order, the correction is
//
//   c = E[y_float] - E[y_q]      per output channel, y = the layer's output
//
// where y_float comes from the float model and y_q from the model whose
// layers up to and including this one have quantized weights (the earlier
// ones already corrected), and c is added to the layer's bias. So each
// correction also absorbs the mean error that reaches the layer from above.
// Activations stay float here: the correction targets the weight rounding,
// the activation grid (uint8 rounding, round half to even) has no systematic
// error to speak of. prepare_ptq() + calibrate() run it with
// PtqConfig::bias_correction, before the observers see the corrected model.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "compressor/core/tensor.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/quant/qparams.hpp"

namespace compressor::quant {

/// What correct_bias() did, per layer: the largest |correction| and the
/// mean |correction| over its output channels.
struct BiasCorrectionReport {
  struct Layer {
    std::string name;
    double max_abs = 0, mean_abs = 0;
  };
  std::vector<Layer> layers;
  std::int64_t batches = 0;
};

namespace internal {

/// Thrown by a recorder that has seen what it needs (ends a forward pass early).
struct StopForward {};

/// An output hook that passes its input through and sums it per channel
/// (the last axis); with stop, it ends the forward pass after recording.
class ChannelMeanRecorder : public nn::Module {
 public:
  explicit ChannelMeanRecorder(bool stop) : stop_(stop) {}
  std::string_view type_name() const override { return "ChannelMeanRecorder"; }
  std::vector<double> mean() const {
    std::vector<double> m(sum_);
    for (auto& v : m) v /= static_cast<double>(count_ > 0 ? count_ : 1);
    return m;
  }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    const std::int64_t c = x.dim(x.rank() - 1), rows = x.numel() / c;
    if (sum_.empty()) sum_.assign(static_cast<std::size_t>(c), 0.0);
    require<ShapeError>(static_cast<std::int64_t>(sum_.size()) == c,
                        "bias correction: the layer output changed from ", sum_.size(), " to ", c,
                        " channels");
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t i = 0; i < c; ++i) sum_[static_cast<std::size_t>(i)] += x[r * c + i];
    count_ += rows;
    if (stop_) throw StopForward{};
    return x;
  }
  TensorView<const float> backward_impl(TensorView<const float>) override {
    throw ValueError("ChannelMeanRecorder has no backward pass");
  }

 private:
  bool stop_;
  std::vector<double> sum_;
  std::int64_t count_ = 0;
};

/// A copy of m without any output hook (observers, fake-quants).
inline std::unique_ptr<nn::Module> strip_hooks(std::unique_ptr<nn::Module> m) {
  std::vector<std::string> hooked;
  m->visit([&](const std::string& path, nn::Module& x) {
    if (x.output_hook() != nullptr && path.find(nn::Module::kHookName) == std::string::npos)
      hooked.push_back(path);
  });
  for (const auto& path : hooked) m->find(path)->set_output_hook(nullptr);
  return m;
}

/// Replaces w's weights by the weights the int8 model computes with.
inline void fake_quantize_layer_weights(nn::WeightedLayer& w, WeightGrid grid) {
  Tensor<float>& t = w.weight();
  const std::vector<float> s = weight_scales(t, grid);
  const std::int64_t c = t.dim(0), per = t.numel() / c;
  for (std::int64_t o = 0; o < c; ++o)
    for (std::int64_t k = 0; k < per; ++k)
      t.data()[o * per + k] =
          fake_quantize_weight(t[o * per + k], s[static_cast<std::size_t>(o)], grid);
}

}  // namespace internal

/// Corrects the biases of every layer with weights in `model` (in place; it
/// may carry observers, which see nothing of this) on the calibration
/// `inputs`, for weights quantized on `grid`; the layers in `keep_float`
/// (float islands) keep their float weights and their biases. A layer
/// without a bias gains one.
inline BiasCorrectionReport correct_bias(nn::Module& model,
                                         const std::vector<Tensor<float>>& inputs, WeightGrid grid,
                                         const std::set<std::string>& keep_float = {}) {
  require(!inputs.empty(), "bias correction: no calibration batches");
  auto ref = internal::strip_hooks(model.clone());
  auto q = internal::strip_hooks(model.clone());
  ref->eval();
  q->eval();
  std::vector<std::string> layers;
  ref->visit([&](const std::string& path, nn::Module& m) {
    if (nn::as<nn::WeightedLayer>(m) && !keep_float.contains(path)) layers.push_back(path);
  });
  // The float means at every layer, in one pass.
  std::vector<internal::ChannelMeanRecorder*> rec;
  for (const auto& path : layers) {
    auto r = std::make_unique<internal::ChannelMeanRecorder>(false);
    rec.push_back(r.get());
    ref->find(path)->set_output_hook(std::move(r));
  }
  for (const auto& x : inputs) (void)ref->forward(x);
  BiasCorrectionReport report;
  report.batches = static_cast<std::int64_t>(inputs.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const std::string& path = layers[l];
    nn::Module& qm = *q->find(path);
    auto& qw = *nn::as<nn::WeightedLayer>(qm);
    internal::fake_quantize_layer_weights(qw, grid);
    auto r = std::make_unique<internal::ChannelMeanRecorder>(true);
    const internal::ChannelMeanRecorder& got = *r;
    qm.set_output_hook(std::move(r));
    for (const auto& x : inputs) {
      try {
        (void)q->forward(x);
      } catch (const internal::StopForward&) {
      }
    }
    const std::vector<double> want = rec[l]->mean(), have = got.mean();
    qm.set_output_hook(nullptr);
    require<ShapeError>(
        want.size() == static_cast<std::size_t>(qw.out_channels()) && have.size() == want.size(),
        "bias correction: the output of '", path, "' has ", want.size(),
        " channels but the layer has ", qw.out_channels(), " output channels");
    auto& fw =
        nn::require_capability<nn::WeightedLayer>(*model.find(path), "a layer with weights", path);
    qw.enable_bias();
    fw.enable_bias();
    BiasCorrectionReport::Layer entry{path, 0, 0};
    for (std::size_t o = 0; o < want.size(); ++o) {
      const double c = want[o] - have[o];
      const auto oi = static_cast<std::int64_t>(o);
      qw.bias().data()[oi] = static_cast<float>(qw.bias()[oi] + c);
      fw.bias().data()[oi] = static_cast<float>(fw.bias()[oi] + c);
      entry.max_abs = std::max(entry.max_abs, std::abs(c));
      entry.mean_abs += std::abs(c) / static_cast<double>(want.size());
    }
    report.layers.push_back(std::move(entry));
  }
  return report;
}

}  // namespace compressor::quant
