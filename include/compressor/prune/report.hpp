// What pruning did, measured on the model (library calls the experiments
// print): per layer with weights and in total, parameters (total and
// nonzero), sparsity, MACs for a given input shape (dense, and counting only
// nonzero weights), the saved file's size, and a latency helper.
//
// Sparsity both ways (the definition of mask.hpp):
//   over the pruned layers   zeros / weights of the layers a policy chose
//                            (sparsity_over(report, layers); what a target means)
//   over the model           zeros / all parameters (every trainable scalar:
//                            weights, biases, BatchNorm gamma and beta)
//
// MACs (multiply-accumulates) of a layer with weights = output positions x
// weight elements, i.e. for a conv N * OH * OW * O * KH * KW * I and for a
// Linear N * O * I; "nonzero MACs" counts only nonzero weights (the work of
// a sparse kernel). The output positions are measured by one eval-mode
// forward pass of a copy of the model on zeros of the input shape (so any
// input size and every model work, and the model itself is untouched).
// Sparse deploy-time layers (sparse_layers.hpp) count as their dense shape
// with their nonzeros.
// Normalisation, pooling and activations are not counted.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/prune/selection.hpp"
#include "compressor/prune/sparse_layers.hpp"

namespace compressor::prune {

struct LayerReport {
  std::string name;
  std::string type;
  Shape weight_shape;
  std::int64_t weights = 0, nonzero = 0;  ///< of the weight tensor
  std::int64_t macs = 0, nonzero_macs = 0;
  double sparsity() const { return weights == 0 ? 0.0 : 1.0 - double(nonzero) / double(weights); }
};

struct ModelReport {
  Shape input;
  std::vector<LayerReport> layers;  ///< the layers with weights, in visit order
  std::int64_t parameters = 0;      ///< every trainable scalar
  std::int64_t nonzero_parameters = 0;
  std::int64_t macs = 0, nonzero_macs = 0;

  /// Zeros / parameters over the whole model.
  double model_sparsity() const {
    return parameters == 0 ? 0.0 : 1.0 - double(nonzero_parameters) / double(parameters);
  }
  const LayerReport* find(std::string_view layer) const {
    for (const auto& l : layers)
      if (l.name == layer) return &l;
    return nullptr;
  }
};

namespace detail {
/// An output hook that records its module's output shape.
class ShapeRecorder : public nn::Module {
 public:
  std::string_view type_name() const override { return "ShapeRecorder"; }
  Shape shape;

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    shape = x.shape();
    return x;
  }
  TensorView<const float> backward_impl(TensorView<const float> g) override { return g; }
};

inline std::int64_t count_nonzero(const Tensor<float>& t) {
  return static_cast<std::int64_t>(
      std::count_if(t.data(), t.data() + t.numel(), [](float v) { return v != 0.f; }));
}
}  // namespace detail

struct LayerShape {
  std::string layer;
  Shape output;
};

/// The output shape of every layer with weights (dense or sparse) of model in
/// one eval-mode forward pass of a copy on zeros of shape input, in visit
/// order; the model itself is untouched.
inline std::vector<LayerShape> output_shapes(nn::Module& model, const Shape& input) {
  std::unique_ptr<nn::Module> copy = model.clone();
  copy->eval();
  std::vector<std::pair<std::string, detail::ShapeRecorder*>> hooks;
  copy->visit([&](const std::string& name, nn::Module& m) {
    if (nn::as<nn::WeightedLayer>(m) == nullptr && nn::as<SparseLayer>(m) == nullptr) return;
    auto hook = std::make_unique<detail::ShapeRecorder>();
    hooks.emplace_back(name, hook.get());
    (void)m.set_output_hook(std::move(hook));
  });
  const Tensor<float> zeros(input, 0.f);
  (void)copy->forward(zeros);
  std::vector<LayerShape> out;
  for (const auto& [name, h] : hooks) {
    require(h->shape.rank() > 0, "output_shapes: '", name, "' did not run in the forward pass of ",
            "the ", model.type_name(), " on ", input);
    out.push_back({name, h->shape});
  }
  return out;
}

/// An input shape for which the layer produces `output` (a conv's smallest
/// such input): what the timing probe of finalize.hpp feeds it.
inline Shape layer_input_shape(nn::WeightedLayer& w, const Shape& output) {
  if (w.weight().rank() != 4) return Shape{output[0], w.in_channels()};
  const auto k = w.kernel();
  auto in = [&](std::int64_t o, std::int64_t kk) {
    return std::max<std::int64_t>(1, (o - 1) * k.stride + kk - 2 * k.padding);
  };
  return Shape{output[0], in(output[1], k.kh), in(output[2], k.kw), w.in_channels()};
}

/// Parameters, sparsity and MACs of model for one input of shape `input`
/// (NHWC images or NTHWC clips; the batch N counts). Sparse deploy-time
/// layers count with their dense shape (parameters) and nonzeros.
inline ModelReport report(nn::Module& model, const Shape& input) {
  ModelReport r;
  r.input = input;
  for (auto& p : model.named_parameters()) {
    r.parameters += p.value->numel();
    r.nonzero_parameters += detail::count_nonzero(*p.value);
  }
  for (const auto& [name, out] : output_shapes(model, input)) {
    nn::Module* m = model.find(name);
    LayerReport l;
    l.name = name;
    l.type = std::string(m->type_name());
    std::int64_t channels = 0;
    if (auto* w = nn::as<nn::WeightedLayer>(*m)) {
      l.weight_shape = w->weight().shape();
      l.nonzero = detail::count_nonzero(w->weight());
      channels = w->out_channels();
    } else {
      auto& s = *nn::as<SparseLayer>(*m);
      l.weight_shape = s.dense_shape();
      l.nonzero = s.nnz();
      channels = s.out_channels();
      const std::int64_t bias = nn::as<SparseWeighted>(*m)->has_bias() ? channels : 0;
      r.parameters += l.weight_shape.numel() + bias;
      r.nonzero_parameters += l.nonzero + bias;
    }
    l.weights = l.weight_shape.numel();
    const std::int64_t positions = out.numel() / channels;
    l.macs = positions * l.weights;
    l.nonzero_macs = positions * l.nonzero;
    r.macs += l.macs;
    r.nonzero_macs += l.nonzero_macs;
    r.layers.push_back(std::move(l));
  }
  return r;
}

/// Zeros / weights over the named layers of a report (the pruned layers).
inline double sparsity_over(const ModelReport& r, const std::vector<std::string>& layers) {
  std::int64_t n = 0, nz = 0;
  for (const auto& name : layers) {
    const LayerReport* l = r.find(name);
    require(l != nullptr, "sparsity_over: '", name, "' is not a layer with weights of the report");
    n += l->weights;
    nz += l->nonzero;
  }
  return n == 0 ? 0.0 : 1.0 - double(nz) / double(n);
}

/// A table, one row per layer with weights and a total.
inline std::string format_report(const ModelReport& r) {
  std::string s;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-28s %-8s %12s %12s %9s %14s %14s\n", "layer", "type", "weights",
                "nonzero", "sparsity", "MACs", "nonzero MACs");
  s += buf;
  for (const auto& l : r.layers) {
    std::snprintf(buf, sizeof buf, "%-28s %-8s %12lld %12lld %8.2f%% %14lld %14lld\n",
                  l.name.c_str(), l.type.c_str(), static_cast<long long>(l.weights),
                  static_cast<long long>(l.nonzero), 100.0 * l.sparsity(),
                  static_cast<long long>(l.macs), static_cast<long long>(l.nonzero_macs));
    s += buf;
  }
  std::snprintf(buf, sizeof buf,
                "total: %lld parameters, %lld nonzero (model sparsity %.2f%%); %lld MACs, %lld "
                "nonzero, for input %s\n",
                static_cast<long long>(r.parameters), static_cast<long long>(r.nonzero_parameters),
                100.0 * r.model_sparsity(), static_cast<long long>(r.macs),
                static_cast<long long>(r.nonzero_macs), r.input.str().c_str());
  s += buf;
  return s;
}

/// Saves model (io::save_checkpoint, with its channel plan) to path and
/// returns the file's size in bytes.
inline std::int64_t saved_size(nn::Module& model, const std::filesystem::path& path) {
  io::save_checkpoint(model, path);
  return static_cast<std::int64_t>(std::filesystem::file_size(path));
}

struct Latency {
  double median_ms = 0, min_ms = 0;
  int repeats = 0, warmup = 0, threads = 0;
};

/// Runs fn `warmup` times, then `repeats` times timed; the median and the
/// minimum wall time, with the thread count (compressor::num_threads()).
inline Latency measure_latency(const std::function<void()>& fn, int repeats = 20, int warmup = 3) {
  require(repeats > 0 && warmup >= 0, "measure_latency: need repeats > 0 and warmup >= 0, got ",
          repeats, " and ", warmup);
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto a = std::chrono::steady_clock::now();
    fn();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
  }
  std::sort(t.begin(), t.end());
  const std::size_t h = t.size() / 2;
  return {t.size() % 2 ? t[h] : 0.5 * (t[h - 1] + t[h]), t.front(), repeats, warmup, num_threads()};
}

}  // namespace compressor::prune
