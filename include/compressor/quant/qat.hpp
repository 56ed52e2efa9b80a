// Quantization-aware training, PyTorch's flow with BatchNorm folded during
// training (its ConvBn2d, "simulated folding"):
//
//   quant::Prepared q = quant::prepare_qat(model, {.observer = ...});
//   ... fine-tune q.model with the normal Trainer ...
//   quant::freeze_batchnorm_stats(*q.model);   // after a set epoch
//   quant::freeze_observers(*q.model);         // after a set epoch
//   quant::Int8Model int8 = quant::convert_qat(q);
//
// prepare_qat() copies the model (the float model is never touched), replaces
// every conv followed by a BatchNorm with a QatConv2d that owns that BN (child
// "bn"; the BN's old slot becomes an Identity), every other conv or linear
// layer with a QatConv2d / QatLinear without one, and attaches a
// FakeQuantize (with the configured observer) at every quantization point.
//
// A QatConv2d computes bn(conv(x, fq(W * s) / s)) with s = gamma /
// sqrt(running_var + eps) per output channel and fq the per-channel symmetric
// weight fake-quant on the grid (scale max|W * s| / qmax, the rounding rule of
// kernels/requant.hpp). While the BN uses batch statistics this is PyTorch's
// scheme; frozen (freeze_batchnorm_stats) the BN is the affine map with its
// running statistics, and the layer computes, up to float rounding, exactly
// the folded conv that convert_qat() quantizes: conv(x, fq(W * s)) + beta -
// mean * s. Gradients: straight-through for the weight fake-quant (dW is the
// conv's weight gradient at the effective weight; s is treated as a constant
// in the weight path), BN's own gradients for gamma and beta.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/identity.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/surgery.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/fake_quant.hpp"
#include "compressor/quant/qparams.hpp"

namespace compressor::quant {

namespace internal {

/// w_eff[o] = fq(w[o] * s[o]) / s[o] per output channel (s empty: 1).
inline void fake_quant_weights(const Tensor<float>& w, const std::vector<double>& s,
                               WeightGrid grid, Tensor<float>& w_eff) {
  const std::int64_t c = w.dim(0), per = w.numel() / c;
  const double qmax = weight_qmax(grid);
  w_eff.resize(w.shape());
  for (std::int64_t o = 0; o < c; ++o) {
    const double so = s.empty() ? 1.0 : s[static_cast<std::size_t>(o)];
    const float* in = w.data() + o * per;
    float* out = w_eff.data() + o * per;
    float m = 0.f;
    for (std::int64_t k = 0; k < per; ++k) {
      out[k] = static_cast<float>(in[k] * so);  // the folded weight, as fold_batchnorm computes it
      m = std::max(m, std::abs(out[k]));
    }
    const float scale = std::max(kMinScale, static_cast<float>(m / qmax));
    for (std::int64_t k = 0; k < per; ++k)
      out[k] = static_cast<float>(fake_quantize_weight(out[k], scale, grid) / so);
  }
}

}  // namespace internal

/// A Conv2d trained with fake-quantized (and BN-folded) weights; see the file comment.
class QatConv2d : public nn::Conv2d {
 public:
  QatConv2d(const nn::Conv2dOptions& o, WeightGrid grid) : nn::Conv2d(o), grid_(grid) {}

  std::string_view type_name() const override { return "QatConv2d"; }
  WeightGrid grid() const { return grid_; }
  /// The BatchNorm this conv owns (child "bn"), or nullptr.
  nn::Normalization* batchnorm() const {
    nn::Module* bn = find_child("bn");
    return bn ? nn::as<nn::Normalization>(*bn) : nullptr;
  }
  /// Takes ownership of the BatchNorm that normalises this conv's output.
  void set_batchnorm(std::unique_ptr<nn::Module> bn) {
    auto& n = nn::require_capability<nn::Normalization>(*bn, "a normalisation", "bn");
    require(n.channels() == out_channels(), "QatConv2d: a BatchNorm of ", n.channels(),
            " channels for ", out_channels(), " output channels");
    register_module("bn", std::move(bn));
  }

  /// The folded float conv this layer stands for (what convert_qat quantizes).
  std::unique_ptr<nn::Conv2d> folded() {
    std::unique_ptr<nn::Conv2d> c;
    {
      const nn::init::PreserveGenerator unchanged;
      c = std::make_unique<nn::Conv2d>(options());
    }
    c->weight() = weight();
    if (has_bias()) c->bias() = bias();
    if (nn::Normalization* bn = batchnorm()) nn::fold_batchnorm_into(*c, *bn, "a QatConv2d");
    return c;
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    auto o = options();
    return std::make_unique<QatConv2d>(o, grid_);
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    bn_scale(s_);
    internal::fake_quant_weights(weight(), s_, grid_, w_eff_);
    std::swap(weight(), w_eff_);
    TensorView<const float> y;
    try {
      y = nn::Conv2d::forward_impl(x);
    } catch (...) {
      std::swap(weight(), w_eff_);
      throw;
    }
    std::swap(weight(), w_eff_);
    if (nn::Module* bn = find_child("bn")) y = bn->forward(y);
    return y;
  }

  TensorView<const float> backward_impl(TensorView<const float> g) override {
    if (nn::Module* bn = find_child("bn")) g = bn->backward(g);
    std::swap(weight(), w_eff_);  // the input gradient uses the effective weight
    TensorView<const float> dx;
    try {
      dx = nn::Conv2d::backward_impl(g);
    } catch (...) {
      std::swap(weight(), w_eff_);
      throw;
    }
    std::swap(weight(), w_eff_);
    return dx;
  }

 private:
  void bn_scale(std::vector<double>& s) {
    s.clear();
    nn::Normalization* bn = batchnorm();
    if (bn == nullptr) return;
    s.resize(static_cast<std::size_t>(bn->channels()));
    for (std::int64_t o = 0; o < bn->channels(); ++o)
      s[static_cast<std::size_t>(o)] =
          static_cast<double>(bn->weight()[o]) /
          std::sqrt(static_cast<double>(bn->running_var()[o]) + bn->eps());
  }

  WeightGrid grid_;
  std::vector<double> s_;
  Tensor<float> w_eff_;
};

/// A Linear trained with fake-quantized weights.
class QatLinear : public nn::Linear {
 public:
  QatLinear(std::int64_t in, std::int64_t out, bool bias, WeightGrid grid)
      : nn::Linear(in, out, bias), grid_(grid) {}
  std::string_view type_name() const override { return "QatLinear"; }

  std::unique_ptr<nn::Linear> plain() {
    std::unique_ptr<nn::Linear> l;
    {
      const nn::init::PreserveGenerator unchanged;
      l = std::make_unique<nn::Linear>(in_channels(), out_channels(), has_bias());
    }
    l->weight() = weight();
    if (has_bias()) l->bias() = bias();
    return l;
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<QatLinear>(in_channels(), out_channels(), has_bias(), grid_);
  }
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    internal::fake_quant_weights(weight(), {}, grid_, w_eff_);
    std::swap(weight(), w_eff_);
    const auto y = nn::Linear::forward_impl(x);
    std::swap(weight(), w_eff_);
    return y;
  }
  TensorView<const float> backward_impl(TensorView<const float> g) override {
    std::swap(weight(), w_eff_);
    const auto dx = nn::Linear::backward_impl(g);
    std::swap(weight(), w_eff_);
    return dx;
  }

 private:
  WeightGrid grid_;
  Tensor<float> w_eff_;
};

struct QatConfig {
  /// Makes the observer inside each activation FakeQuantize (PyTorch's QAT
  /// default is a moving-average min/max).
  std::function<std::unique_ptr<Observer>()> observer;
  /// The int8 weight grid (kernels/int8_traits.hpp): full [-127, 127] by
  /// default (exact on every path; fastest on VNNI), narrow [-64, 64] for
  /// the fastest AVX2 / AVX-512BW kernels (docs/quantization.md, "Weight grid").
  WeightGrid grid = WeightGrid::full;
  bool learnable_scale = false;  ///< LSQ scales for the activations
};

/// Copies m for QAT (see the file comment); the copy is in training mode.
inline Prepared prepare_qat(const nn::Module& m, const QatConfig& config) {
  Prepared p = internal::prepared_copy(m, config.grid, static_cast<bool>(config.observer),
                                       /*training=*/true, "prepare_qat");
  // Conv + BN pairs first, then the remaining layers with weights.
  std::vector<std::pair<std::string, std::string>> pairs;
  p.model->visit([&](const std::string& path, nn::Module& mod) {
    for (const auto& [conv, bn] : mod.batchnorm_pairs()) {
      const std::string pre = path.empty() ? "" : path + ".";
      if (nn::as<nn::Conv2d>(*mod.find_child(conv)) && nn::as<nn::BatchNorm2d>(*mod.find_child(bn)))
        pairs.emplace_back(pre + conv, pre + bn);
    }
  });
  const nn::init::PreserveGenerator unchanged;  // the new layers' values are copied in
  auto make_qat_conv = [&](nn::Conv2d& c) {
    auto q = std::make_unique<QatConv2d>(c.options(), config.grid);
    q->weight() = c.weight();
    if (c.has_bias()) q->bias() = c.bias();
    return q;
  };
  for (const auto& [conv, bn] : pairs) {
    auto q = make_qat_conv(*nn::as<nn::Conv2d>(*p.model->find(conv)));
    q->set_batchnorm(p.model->replace(bn, std::make_unique<nn::Identity>()));
    p.model->replace(conv, std::move(q));
  }
  std::vector<std::string> rest;
  p.model->visit([&](const std::string& path, nn::Module& mod) {
    if (nn::as<QatConv2d>(mod) || nn::as<QatLinear>(mod)) return;
    if (nn::as<nn::Conv2d>(mod) || nn::as<nn::Linear>(mod)) rest.push_back(path);
  });
  for (const auto& path : rest) {
    nn::Module& mod = *p.model->find(path);
    if (auto* c = nn::as<nn::Conv2d>(mod)) {
      p.model->replace(path, make_qat_conv(*c));
    } else {
      auto& l = *nn::as<nn::Linear>(mod);
      auto q =
          std::make_unique<QatLinear>(l.in_channels(), l.out_channels(), l.has_bias(), config.grid);
      q->weight() = l.weight();
      if (l.has_bias()) q->bias() = l.bias();
      p.model->replace(path, std::move(q));
    }
  }
  internal::attach_point_hooks(
      p, config.observer,
      [&](std::unique_ptr<Observer> obs) -> std::unique_ptr<nn::Module> {
        return std::make_unique<FakeQuantize>(std::move(obs), config.learnable_scale);
      },
      "prepare_qat");
  return p;
}

/// Freezes the running statistics of every BatchNorm (QAT after a set epoch).
inline void freeze_batchnorm_stats(nn::Module& m) {
  m.visit([](const std::string&, nn::Module& x) {
    if (nn::as<nn::Normalization>(x)) x.freeze();
  });
}

/// Freezes every activation observer: the fake-quant parameters stay fixed.
inline void freeze_observers(nn::Module& m) {
  m.visit([](const std::string&, nn::Module& x) {
    if (nn::as<Observer>(x)) x.freeze();
  });
}

/// The float model a QAT model stands for: a copy in eval mode where every
/// QatConv2d is its folded conv (BN running statistics) and every QatLinear
/// a Linear; the FakeQuantize hooks stay at their points.
inline std::unique_ptr<nn::Module> fold_qat_model(const Prepared& p) {
  require(p.model != nullptr, "fold_qat_model: the model was not prepared");
  auto m = p.model->clone();
  m->eval();
  std::vector<std::string> convs, linears;
  m->visit([&](const std::string& path, nn::Module& x) {
    if (nn::as<QatConv2d>(x)) convs.push_back(path);
    if (nn::as<QatLinear>(x)) linears.push_back(path);
  });
  // Each layer's output hook (a point's FakeQuantize) moves to its replacement.
  for (const auto& path : convs) {
    nn::Module& old = *m->find(path);
    auto hook = old.set_output_hook(nullptr);
    m->replace(path, nn::as<QatConv2d>(old)->folded());
    m->find(path)->set_output_hook(std::move(hook));
  }
  for (const auto& path : linears) {
    nn::Module& old = *m->find(path);
    auto hook = old.set_output_hook(nullptr);
    m->replace(path, nn::as<QatLinear>(old)->plain());
    m->find(path)->set_output_hook(std::move(hook));
  }
  return m;
}

/// Converts a QAT model (fold_qat_model, then the activation parameters of
/// its FakeQuantizes and the folded weights, as convert()).
inline Int8Model convert_qat(Prepared& p) {
  internal::check_unedited(p, "convert_qat", "prepare_qat");
  auto m = fold_qat_model(p);
  internal::ModelSource source(*m, p.grid);
  return convert_with(*m, p.points, p.grid, source);
}

}  // namespace compressor::quant
