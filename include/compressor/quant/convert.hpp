// Post-training static quantization, as PyTorch users know it:
//
//   quant::Prepared p = quant::prepare_ptq(model, {.observer = ...});  // copy, fold BN, observers
//   quant::calibrate(p, calibration_batches, 32);                     // forward passes, eval mode
//   quant::Int8Model int8 = quant::convert(p);                        // int8 ops, float boundary
//
// prepare_ptq() never touches the float model: it works on a deep copy in
// eval mode, folds every BatchNorm into its convolution and attaches an
// observer to every quantization point (Module::quantization_points(); each
// observer is that module's output hook). convert() computes each point's
// parameters from its observer, quantizes every weight per output channel on
// the weight grid (with the bias at s_in * s_w) and builds the int8 ops;
// nothing falls back to float silently: a layer with no int8 form is an error
// listing all of them. fake_quant_model() builds the float model that
// simulates the int8 model (fake-quantized weights and biases, a
// FakeQuantize with the point's parameters at every point): the fidelity
// tests compare the two.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/data/batch.hpp"
#include "compressor/nn/activation.hpp"
#include "compressor/nn/basic_block.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/identity.hpp"
#include "compressor/nn/pooling.hpp"
#include "compressor/nn/sequential.hpp"
#include "compressor/nn/surgery.hpp"
#include "compressor/nn/temporal_pool.hpp"
#include "compressor/quant/fake_quant.hpp"
#include "compressor/quant/int8_model.hpp"
#include "compressor/quant/int8_ops.hpp"
#include "compressor/quant/observer.hpp"

namespace compressor::quant {

struct PtqConfig {
  /// Makes the observer of each activation point.
  std::function<std::unique_ptr<Observer>()> observer;
  WeightGrid grid = WeightGrid::narrow;
};

/// A float model prepared for calibration: a deep copy with BatchNorms
/// folded and an observer at every quantization point.
struct Prepared {
  std::unique_ptr<nn::Module> model;
  std::vector<nn::QuantPoint> points;
  WeightGrid grid = WeightGrid::narrow;
  std::string fingerprint;  ///< names and shapes when prepared (edits are detected)
  std::int64_t calibration_batches = 0;
};

namespace internal {

/// Parameter and buffer names and shapes, and the points: what calibration
/// statistics belong to.
inline std::string structure_fingerprint(nn::Module& m) {
  std::string s;
  for (const auto& p : m.named_parameters()) s += p.name + p.value->shape().str() + ";";
  for (const auto& p : m.quantization_points()) s += p.name + ";";
  return s;
}

inline nn::Module& module_at(nn::Module& root, const std::string& path) {
  nn::Module* m = root.find(path);
  require(m != nullptr, "quantization: no module named '", path, "'");
  return *m;
}

inline std::string join(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace internal

/// Copies m, folds its BatchNorms and attaches config.observer() at every
/// quantization point. The copy is in eval mode.
inline Prepared prepare_ptq(const nn::Module& m, const PtqConfig& config) {
  require(static_cast<bool>(config.observer), "prepare_ptq: PtqConfig::observer is not set");
  Prepared p;
  p.grid = config.grid;
  p.model = m.clone();
  p.model->eval();
  nn::fold_batchnorms(*p.model);
  p.points = p.model->quantization_points();
  require(!p.points.empty(), "prepare_ptq: ", m.type_name(),
          " declares no quantization points (Module::add_quantization_points)");
  for (const auto& point : p.points) {
    auto obs = config.observer();
    require(obs != nullptr, "prepare_ptq: the observer factory returned null");
    obs->set_label(point.name);
    internal::module_at(*p.model, point.name).set_output_hook(std::move(obs));
  }
  p.fingerprint = internal::structure_fingerprint(*p.model);
  return p;
}

/// Runs up to max_batches batches (0: one epoch) of source through the
/// prepared model in eval mode; returns the batches used. Zero batches, or a
/// non-finite value reaching an observer, is an error naming the point.
inline std::int64_t calibrate(Prepared& p, data::BatchSource& source,
                              std::int64_t max_batches = 0) {
  require(p.model != nullptr, "calibrate: the model was not prepared");
  p.model->eval();
  source.start_epoch(0);
  data::Batch batch;
  std::int64_t used = 0;
  while ((max_batches == 0 || used < max_batches) && source.next(batch)) {
    (void)p.model->forward(batch.inputs);
    ++used;
  }
  require(used > 0, "calibrate: the calibration data gave no batches; PTQ needs at least one");
  p.calibration_batches += used;
  return used;
}

namespace internal {

/// The parameters at a point: from its observer or fake-quant hook.
inline QuantParams point_params(nn::Module& root, const std::string& point) {
  nn::Module& m = module_at(root, point);
  nn::Module* hook = m.output_hook();
  if (hook != nullptr) {
    if (auto* fq = nn::as<FakeQuantize>(*hook)) return fq->qparams();
    if (auto* obs = nn::as<Observer>(*hook)) {
      require(obs->observed() > 0, "quantization point '", point,
              "': its observer saw no data (run calibrate() first)");
      return obs->qparams();
    }
  }
  throw ValueError(compressor::detail::concat(
      "quantization point '", point, "' has no observer or fake-quant (prepare the model first)"));
}

}  // namespace internal

/// Where conversion takes its numbers from: a point's parameters and a
/// layer's int8 weights. The PTQ/QAT source reads observers and quantizes the
/// float weights; a saved int8 file is another source (quant/int8_io.hpp).
class ConvertSource {
 public:
  virtual ~ConvertSource() = default;
  virtual QuantParams point(const std::string& name) = 0;
  /// The int8 weights of the layer at `name` (OHWI; a linear layer as
  /// (O, 1, 1, I)) for an input with parameters `in`.
  virtual QuantizedWeights weights(const std::string& name, nn::WeightedLayer& layer,
                                   QuantParams in) = 0;
};

/// Quantizes a float layer's weights per output channel on the grid, with its
/// bias at s_in * s_w (the PTQ and QAT conversion).
inline QuantizedWeights quantize_layer(nn::WeightedLayer& w, QuantParams in, WeightGrid grid) {
  QuantizedWeights q;
  q.scales = weight_scales(w.weight(), grid);
  q.weight = quantize_weights(w.weight(), q.scales, grid);
  if (w.weight().rank() != 4)  // (O, I) -> (O, 1, 1, I): a linear layer is a 1x1 convolution
    q.weight = Tensor<std::int8_t>(
        std::as_const(q.weight).reshape(Shape{w.out_channels(), 1, 1, w.in_channels()}));
  if (w.has_bias()) {
    q.bias.resize(q.scales.size());
    for (std::size_t o = 0; o < q.scales.size(); ++o)
      q.bias[o] = quantize_bias(w.bias()[static_cast<std::int64_t>(o)], in.scale, q.scales[o]);
  }
  q.stride = w.kernel().stride;
  q.padding = w.kernel().padding;
  return q;
}

namespace internal {

/// Observers (or fake-quant hooks) and the float weights of a prepared model.
class ModelSource : public ConvertSource {
 public:
  ModelSource(nn::Module& root, WeightGrid grid) : root_(root), grid_(grid) {}
  QuantParams point(const std::string& name) override { return point_params(root_, name); }
  QuantizedWeights weights(const std::string&, nn::WeightedLayer& layer, QuantParams in) override {
    return quantize_layer(layer, in, grid_);
  }

 private:
  nn::Module& root_;
  WeightGrid grid_;
};

class Converter {
 public:
  Converter(ConvertSource& source, ConversionSummary& summary)
      : source_(source), summary_(summary) {}

  /// The int8 weights of every converted layer, by name (what a saved int8
  /// model stores).
  std::vector<std::pair<std::string, QuantizedWeights>> weights_;

  /// Converts the module at path, whose input has parameters cur_.
  std::unique_ptr<Int8Op> module(nn::Module& m, const std::string& path) {
    if (auto* block = nn::as<nn::BasicBlock>(m)) return basic_block(*block, path);
    if (m.find_child("backbone") && m.find_child("pool") && m.find_child("head"))
      return clip_model(m, path);
    if (auto* seq = nn::as<nn::Sequential>(m)) return sequence(*seq, path);
    // A single layer: a sequence of one.
    auto s = std::make_unique<Int8Sequence>();
    leaf_run(m, path, nullptr, 0, *s);
    return s;
  }

  QuantParams cur_;
  std::vector<std::string> unsupported_;

 private:
  std::unique_ptr<Int8Op> sequence(nn::Sequential& seq, const std::string& path) {
    auto out = std::make_unique<Int8Sequence>();
    for (std::size_t i = 0; i < seq.num_children(); ++i)
      i = leaf_run(seq.child(i), join(path, seq.child_name(i)), &seq, i, *out);
    return out;
  }

  /// Converts child i of seq (or a lone module), absorbing a following
  /// folded BN (Identity) and ReLU into a layer with weights; returns the
  /// index of the last child consumed.
  std::size_t leaf_run(nn::Module& m, const std::string& path, nn::Sequential* seq, std::size_t i,
                       Int8Sequence& out) {
    if (nn::as<nn::Identity>(m) || nn::as<nn::Flatten>(m)) return i;
    if (auto* w = nn::as<nn::WeightedLayer>(m)) {
      std::string point = path;
      bool relu = false;
      std::size_t j = i;
      if (seq != nullptr) {
        const std::string parent = path.substr(0, path.size() - seq->child_name(i).size());
        while (j + 1 < seq->num_children()) {
          nn::Module& next = seq->child(j + 1);
          if (nn::as<nn::Identity>(next) && !relu) {
            ++j;
          } else if (nn::as<nn::ReLU>(next) && !relu) {
            relu = true;
            ++j;
          } else {
            break;
          }
          point = parent + seq->child_name(j);
        }
      }
      out.add(weighted(*w, path, point, relu));
      return j;
    }
    if (auto* mp = nn::as<nn::MaxPool2d>(m)) {
      out.add(std::make_unique<Int8MaxPool>(mp->kernel_size(), mp->stride(), mp->padding()));
      return i;
    }
    if (nn::as<nn::GlobalAvgPool2d>(m)) {
      const QuantParams q = source_.point(path);
      summary_point(path, q);
      out.add(std::make_unique<Int8GlobalAvgPool>(path, q));
      cur_ = q;
      return i;
    }
    if (nn::as<nn::BasicBlock>(m) || nn::as<nn::Sequential>(m)) {
      out.add(module(m, path));
      return i;
    }
    unsupported_.push_back(path + " (" + std::string(m.type_name()) +
                           (nn::as<nn::Normalization>(m) ? ": not folded into a conv)" : ")"));
    return i;
  }

  /// A conv or linear layer whose output is the point `point`.
  std::unique_ptr<Int8Op> weighted(nn::WeightedLayer& w, const std::string& path,
                                   const std::string& point, bool relu) {
    const QuantParams in = cur_;
    const QuantParams out = source_.point(point);
    const bool conv = w.weight().rank() == 4;
    QuantizedWeights q = source_.weights(path, w, in);
    LayerSummary l;
    l.name = path;
    l.kind = conv ? "conv" : "linear";
    l.precision = "int8";
    l.point = point;
    l.in = in;
    l.out = out;
    l.relu = relu;
    l.weight_scales = q.scales;
    summary_.layers.push_back(std::move(l));
    summary_point(point, out);
    cur_ = out;
    std::unique_ptr<Int8Op> op;
    if (conv)
      op = std::make_unique<Int8Conv>(point, q, out, relu);
    else
      op = std::make_unique<Int8Linear>(point, q, out, relu);
    weights_.emplace_back(path, std::move(q));
    return op;
  }

  std::unique_ptr<Int8Op> basic_block(nn::BasicBlock& b, const std::string& path) {
    const QuantParams in = cur_;
    auto conv = [&](const std::string& conv_name, const std::string& point, bool relu) {
      auto* w = nn::as<nn::WeightedLayer>(b.child(conv_name));
      if (w == nullptr) {
        unsupported_.push_back(join(path, conv_name) + " (" +
                               std::string(b.child(conv_name).type_name()) + ")");
        return std::unique_ptr<Int8Op>();
      }
      return weighted(*w, join(path, conv_name), join(path, point), relu);
    };
    for (const char* bn : {"bn1", "bn2"})
      if (!nn::as<nn::Identity>(b.child(bn)))
        unsupported_.push_back(join(path, bn) + " (" + std::string(b.child(bn).type_name()) +
                               ": fold it into its conv)");
    auto conv1 = conv("conv1", "relu", true);
    auto conv2 = conv("conv2", "bn2", false);
    std::unique_ptr<Int8Op> ds;
    if (nn::Module* d = b.downsample()) {
      cur_ = in;
      ds = module(*d, join(path, "downsample"));
    }
    const QuantParams out = source_.point(join(path, "add_relu"));
    summary_point(join(path, "add_relu"), out);
    cur_ = out;
    if (!conv1 || !conv2) return std::make_unique<Int8Sequence>();
    return std::make_unique<Int8BasicBlock>(join(path, "add_relu"), std::move(conv1),
                                            std::move(conv2), std::move(ds), out);
  }

  std::unique_ptr<Int8Op> clip_model(nn::Module& m, const std::string& path) {
    auto trunk = module(m.child("backbone"), join(path, "backbone"));
    auto* pool = nn::as<nn::TemporalPool>(m.child("pool"));
    if (pool == nullptr) {
      unsupported_.push_back(join(path, "pool") + " (" + std::string(m.child("pool").type_name()) +
                             ")");
      return std::make_unique<Int8Sequence>();
    }
    const std::string pool_point = join(path, "pool");
    const QuantParams pq = source_.point(pool_point);
    summary_point(pool_point, pq);
    cur_ = pq;
    auto head = module(m.child("head"), join(path, "head"));
    return std::make_unique<Int8ClipModel>(std::move(trunk), pool_point,
                                           pool->mode() == nn::TemporalPoolMode::mean_max_min, pq,
                                           std::move(head));
  }

  void summary_point(const std::string& name, QuantParams q) {
    for (const auto& p : summary_.points)
      if (p.name == name) return;
    summary_.points.push_back({name, nn::PointKind::conv, q});
  }

  ConvertSource& source_;
  ConversionSummary& summary_;
};

}  // namespace internal

/// Converts the float model `root` (BatchNorms folded), whose quantization
/// points are `points`, taking parameters and weights from `source`.
inline Int8Model convert_with(nn::Module& root, const std::vector<nn::QuantPoint>& points,
                              WeightGrid grid, ConvertSource& source) {
  require(!points.empty() && points.front().kind == nn::PointKind::input,
          "convert: the first quantization point of ", root.type_name(), " is not the model input");
  const nn::QuantPoint& input = points.front();
  ConversionSummary summary;
  summary.model = std::string(root.type_name());
  summary.grid = grid;
  internal::Converter c(source, summary);
  const QuantParams in_q = source.point(input.name);
  c.cur_ = in_q;
  auto body = c.module(root, "");
  if (!c.unsupported_.empty()) {
    std::string list;
    for (const auto& u : c.unsupported_) list += "\n  " + u;
    throw ValueError(compressor::detail::concat("convert: ", c.unsupported_.size(), " layer(s) of ",
                                                summary.model, " have no int8 form:", list));
  }
  // Points in the model's order, with their kinds.
  std::vector<PointSummary> ordered;
  for (const auto& point : points) {
    QuantParams q = point.name == input.name ? in_q : QuantParams{};
    const auto* s = summary.point(point.name);
    require(s != nullptr || point.name == input.name, "convert: quantization point '", point.name,
            "' of ", summary.model, " is produced by no converted layer");
    if (s) q = s->q;
    ordered.push_back({point.name, point.kind, q});
  }
  summary.points = std::move(ordered);
  return Int8Model(input.name, in_q, std::move(body), std::move(summary), std::move(c.weights_));
}

/// Converts a prepared, calibrated model into an int8 model (see the file
/// comment). Errors: the model was edited since prepare_ptq(), a point whose
/// observer saw nothing, layers with no int8 form (all listed).
inline Int8Model convert(Prepared& p) {
  require(p.model != nullptr, "convert: the model was not prepared");
  const std::string now = internal::structure_fingerprint(*p.model);
  require(now == p.fingerprint, "convert: the model was edited after prepare_ptq() (its ",
          "parameters or quantization points changed), so its calibration statistics do not ",
          "belong to it; prepare and calibrate it again");
  internal::ModelSource source(*p.model, p.grid);
  return convert_with(*p.model, p.points, p.grid, source);
}

/// The fp32 deploy model, the baseline of latency comparisons: a copy in
/// eval mode with every BatchNorm folded into its convolution.
inline std::unique_ptr<nn::Module> fp32_deploy_model(const nn::Module& m) {
  auto d = m.clone();
  d->eval();
  nn::fold_batchnorms(*d);
  return d;
}

/// The float model that simulates `int8` (converted from p): a copy of p's
/// model with each layer's weights fake-quantized per channel, its bias on the
/// int32 grid, and a FakeQuantize with the point's parameters at every point.
/// With `weight_layers`, only the layers named there (float layer names, as in
/// ConversionSummary::layers) get fake-quantized weights and biases; the
/// others keep their float ones (the sensitivity report quantizes one layer
/// at a time). Every point still gets its FakeQuantize. A name that is no
/// converted layer is an error.
inline std::unique_ptr<nn::Module> fake_quant_model(
    const Prepared& p, const Int8Model& int8,
    const std::optional<std::set<std::string>>& weight_layers = std::nullopt) {
  auto m = p.model->clone();
  const ConversionSummary& s = int8.summary();
  if (weight_layers)
    for (const auto& name : *weight_layers) {
      bool found = false;
      for (const auto& l : s.layers) found = found || l.name == name;
      require(found, "fake_quant_model: '", name, "' is not a converted layer with weights");
    }
  for (const auto& l : s.layers) {
    if (weight_layers && !weight_layers->contains(l.name)) continue;
    auto& w = nn::require_capability<nn::WeightedLayer>(internal::module_at(*m, l.name),
                                                        "a layer with weights", l.name);
    Tensor<float>& weight = w.weight();
    const std::int64_t c = w.out_channels(), per = weight.numel() / c;
    for (std::int64_t o = 0; o < c; ++o) {
      const float sw = l.weight_scales[static_cast<std::size_t>(o)];
      for (std::int64_t k = 0; k < per; ++k)
        weight.data()[o * per + k] = fake_quantize_weight(weight[o * per + k], sw, s.grid);
      if (w.has_bias())
        w.bias().data()[o] = static_cast<float>(quantize_bias(w.bias()[o], l.in.scale, sw)) *
                             kernels::accumulator_scale(l.in.scale, sw);
    }
  }
  for (const auto& point : s.points)
    internal::module_at(*m, point.name).set_output_hook(std::make_unique<FakeQuantize>(point.q));
  m->eval();
  return m;
}

}  // namespace compressor::quant
