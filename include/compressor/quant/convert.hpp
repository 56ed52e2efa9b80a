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
#include "compressor/quant/bias_correction.hpp"
#include "compressor/quant/equalize.hpp"
#include "compressor/quant/fake_quant.hpp"
#include "compressor/quant/fake_quant_pool.hpp"
#include "compressor/quant/int8_model.hpp"
#include "compressor/quant/int8_ops.hpp"
#include "compressor/quant/observer.hpp"
#include "compressor/quant/observers.hpp"

namespace compressor::quant {

struct PtqConfig {
  /// Makes the observer of each activation point.
  std::function<std::unique_ptr<Observer>()> observer;
  /// Makes the observer of the model's output points (PointKind::output:
  /// the head's output, dequantized as the model's result). Unset: a
  /// MinMaxObserver, so calibration never clips the result itself, whatever
  /// `observer` does to the activations: a regression head (the EF model)
  /// loses every clipped prediction, and an output point sees one value per
  /// sample, too few for a histogram's percentile or KL choice (KL clipped
  /// the EF model's outputs at 20 EF points: MAE 37). Set it to `observer`
  /// to treat the output like every other point.
  std::function<std::unique_ptr<Observer>()> output_observer{};
  /// The int8 weight grid (kernels/int8_traits.hpp): full [-127, 127] by
  /// default (exact on every path; fastest on VNNI), narrow [-64, 64] for
  /// the fastest AVX2 / AVX-512BW kernels (docs/quantization.md, "Weight grid").
  WeightGrid grid = WeightGrid::full;
  /// Cross-layer equalization of every declared pair (quant/equalize.hpp),
  /// after BN folding, before the observers.
  bool cross_layer_equalization = false;
  /// Empirical bias correction (quant/bias_correction.hpp) on the
  /// calibration batches, by the first calibrate(), before observing.
  bool bias_correction = false;
  /// Layers to keep in float inside the int8 model (float islands: dequantize
  /// -> the float layer -> quantize), by name: a layer with weights (with
  /// the folded BN and ReLU that follow it) or a layer with no int8 form.
  std::vector<std::string> float_islands{};
  /// Every layer with no int8 form becomes a float island instead of an error.
  bool allow_float_islands = false;
};

/// Which layers conversion keeps in float (PtqConfig::float_islands and
/// allow_float_islands).
struct IslandOptions {
  std::set<std::string> names;
  bool allow_unsupported = false;
  bool any() const { return allow_unsupported || !names.empty(); }
};

/// A float model prepared for calibration: a deep copy with BatchNorms
/// folded and an observer at every quantization point.
struct Prepared {
  std::unique_ptr<nn::Module> model;
  std::vector<nn::QuantPoint> points;
  WeightGrid grid = WeightGrid::full;
  std::string fingerprint;  ///< names and shapes when prepared (edits are detected)
  std::int64_t calibration_batches = 0;
  IslandOptions islands;
  /// The outputs of float islands that are no quantization point of the
  /// model: each has an observer of its own (the island's int8 output).
  std::vector<std::string> island_points;
  bool bias_correction = false;  ///< pending or done (see bias_corrected)
  bool bias_corrected = false;
  /// What ran besides folding (equalization, bias correction), for the summary.
  std::vector<std::string> passes;
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

/// The start of prepare_ptq and prepare_qat: a copy of m in training or eval
/// mode, with the grid; the observer factory must be set (who names the
/// caller and its config in errors).
inline Prepared prepared_copy(const nn::Module& m, WeightGrid grid, bool has_observer,
                              bool training, std::string_view who) {
  require(has_observer, who, ": the config's observer is not set");
  Prepared p;
  p.grid = grid;
  p.model = m.clone();
  p.model->train(training);
  return p;
}

/// Attaches wrap(observer) as the output hook of every quantization point of
/// p.model (each observer labelled with its point), then records the
/// fingerprint that convert() checks: the common end of prepare_ptq and
/// prepare_qat. who names the caller in errors.
inline void attach_point_hooks(
    Prepared& p, const std::function<std::unique_ptr<Observer>()>& observer,
    const std::function<std::unique_ptr<nn::Module>(std::unique_ptr<Observer>)>& wrap,
    std::string_view who, const std::function<std::unique_ptr<Observer>()>& output_observer = {}) {
  p.points = p.model->quantization_points();
  require(!p.points.empty(), who, ": ", p.model->type_name(),
          " declares no quantization points (Module::add_quantization_points)");
  for (const auto& point : p.points) {
    auto obs =
        point.kind == nn::PointKind::output && output_observer ? output_observer() : observer();
    require(obs != nullptr, who, ": the observer factory returned null");
    obs->set_label(point.name);
    module_at(*p.model, point.name).set_output_hook(wrap(std::move(obs)));
  }
  p.fingerprint = structure_fingerprint(*p.model);
}

/// Throws unless p.model has the structure it had when prepared (its
/// calibration statistics belong to it).
inline void check_unedited(const Prepared& p, std::string_view who, std::string_view prepare) {
  require(p.model != nullptr, who, ": the model was not prepared");
  require(structure_fingerprint(*p.model) == p.fingerprint, who, ": the model was edited after ",
          prepare, "() (its parameters or quantization points changed), so its calibration ",
          "statistics do not belong to it; prepare and calibrate it again");
}

/// The float islands conversion will make of p.model, with their output
/// points (conversion run without weights or parameters).
inline std::vector<std::pair<std::string, std::string>> probe_islands(nn::Module& model,
                                                                      const IslandOptions& o);

}  // namespace internal

/// Copies m, folds its BatchNorms, equalizes (config), and attaches
/// config.observer() at every quantization point and at the output of every
/// float island that is no point. The copy is in eval mode.
inline Prepared prepare_ptq(const nn::Module& m, const PtqConfig& config) {
  Prepared p = internal::prepared_copy(m, config.grid, static_cast<bool>(config.observer),
                                       /*training=*/false, "prepare_ptq");
  nn::fold_batchnorms(*p.model);
  if (config.cross_layer_equalization) {
    const EqualizationReport e = equalize_cross_layer(*p.model);
    p.passes.push_back(compressor::detail::concat("cross-layer equalization: ", e.pairs.size(),
                                                  " pairs, ", e.sweeps, " sweeps"));
  }
  p.bias_correction = config.bias_correction;
  p.islands.names = {config.float_islands.begin(), config.float_islands.end()};
  p.islands.allow_unsupported = config.allow_float_islands;
  internal::attach_point_hooks(
      p, config.observer,
      [](std::unique_ptr<Observer> o) -> std::unique_ptr<nn::Module> { return o; }, "prepare_ptq",
      config.output_observer
          ? config.output_observer
          : [] { return std::unique_ptr<Observer>(std::make_unique<MinMaxObserver>()); });
  if (p.islands.any()) {
    for (const auto& [layer, point] : internal::probe_islands(*p.model, p.islands)) {
      bool known = false;
      for (const auto& q : p.points) known = known || q.name == point;
      if (known) continue;
      auto obs = config.observer();
      obs->set_label(point);
      internal::module_at(*p.model, point).set_output_hook(std::move(obs));
      p.island_points.push_back(point);
    }
    p.fingerprint = internal::structure_fingerprint(*p.model);
  }
  return p;
}

/// Runs up to max_batches batches (0: one epoch) of source through the
/// prepared model in eval mode; returns the batches used. Zero batches, or a
/// non-finite value reaching an observer, is an error naming the point. With
/// PtqConfig::bias_correction, the first call corrects the biases on the same
/// batches (held in memory for it) before the observers see them.
inline std::int64_t calibrate(Prepared& p, data::BatchSource& source,
                              std::int64_t max_batches = 0) {
  require(p.model != nullptr, "calibrate: the model was not prepared");
  p.model->eval();
  source.start_epoch(0);
  data::Batch batch;
  std::int64_t used = 0;
  const bool correct = p.bias_correction && !p.bias_corrected;
  std::vector<Tensor<float>> held;
  while ((max_batches == 0 || used < max_batches) && source.next(batch)) {
    if (correct)
      held.push_back(batch.inputs);
    else
      (void)p.model->forward(batch.inputs);
    ++used;
  }
  require(used > 0, "calibrate: the calibration data gave no batches; PTQ needs at least one");
  if (correct) {
    std::set<std::string> keep_float;
    for (const auto& [layer, point] : internal::probe_islands(*p.model, p.islands))
      keep_float.insert(layer);
    const BiasCorrectionReport r = correct_bias(*p.model, held, p.grid, keep_float);
    p.bias_corrected = true;
    p.fingerprint = internal::structure_fingerprint(*p.model);  // a layer may have gained a bias
    double worst = 0;
    for (const auto& l : r.layers) worst = std::max(worst, l.max_abs);
    p.passes.push_back(compressor::detail::concat("bias correction: ", r.layers.size(),
                                                  " layers on ", r.batches,
                                                  " batches, largest |correction| ", worst));
    for (const auto& x : held) (void)p.model->forward(x);
  }
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
  q.grid = grid;
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
  /// With probe, nothing is quantized or packed: the walk only finds the
  /// float islands and the layers with no int8 form.
  Converter(ConvertSource& source, ConversionSummary& summary, const IslandOptions& islands = {},
            bool probe = false)
      : source_(source), summary_(summary), islands_(islands), probe_(probe) {}

  /// The int8 weights of every converted layer, by name (what a saved int8
  /// model stores).
  std::vector<std::pair<std::string, QuantizedWeights>> weights_;
  /// The op of every converted layer with weights, by name (owned by the body).
  std::vector<std::pair<std::string, Int8WeightedOp*>> ops_;

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
  /// (layer, output point) of every float island made, in data-flow order.
  std::vector<std::pair<std::string, std::string>> islands_made_;
  /// The float layer of every island (owned by its op).
  std::vector<std::pair<std::string, nn::Module*>> island_layers_;

 private:
  std::unique_ptr<Int8Op> sequence(nn::Sequential& seq, const std::string& path) {
    auto out = std::make_unique<Int8Sequence>();
    for (std::size_t i = 0; i < seq.num_children(); ++i)
      i = leaf_run(seq.child(i), join(path, seq.child_name(i)), &seq, i, *out);
    return out;
  }

  /// Converts child i of seq (or a lone module), absorbing a following
  /// folded BN (Identity) and ReLU into a layer with weights (and a 2x2
  /// max pool into a conv); returns the index of the last child consumed.
  std::size_t leaf_run(nn::Module& m, const std::string& path, nn::Sequential* seq, std::size_t i,
                       Int8Sequence& out) {
    if (nn::as<nn::Identity>(m) || nn::as<nn::Flatten>(m)) return i;
    if (nn::as<nn::WeightedLayer>(m) || islands_.names.contains(path)) {
      // A layer with weights, or one the user keeps in float, with the
      // folded BN (Identity) and ReLU that follow it.
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
      if (islands_.names.contains(path)) {
        std::vector<nn::Module*> run{&m};
        for (std::size_t k = i + 1; k <= j; ++k) run.push_back(&seq->child(k));
        out.add(island(path, run, point, "kept in float on request"));
      } else {
        std::unique_ptr<Int8Op> op = weighted(*nn::as<nn::WeightedLayer>(m), path, point, relu);
        // A 2x2 max pool of stride 2 right after a conv runs inside it
        // (Int8Conv::fuse_max_pool2: the same outputs in one pass).
        auto* conv = dynamic_cast<Int8Conv*>(op.get());
        nn::MaxPool2d* mp = conv != nullptr && seq != nullptr && j + 1 < seq->num_children()
                                ? nn::as<nn::MaxPool2d>(seq->child(j + 1))
                                : nullptr;
        if (mp != nullptr && mp->kernel_size() == 2 && mp->stride() == 2 && mp->padding() == 0) {
          conv->fuse_max_pool2();
          summary_.layers.back().max_pool2 = true;
          ++j;
        }
        out.add(std::move(op));
      }
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
    if (islands_.allow_unsupported) {
      out.add(island(path, {&m}, path, "no int8 form"));
      return i;
    }
    unsupported_.push_back(path + " (" + std::string(m.type_name()) +
                           (nn::as<nn::Normalization>(m) ? ": not folded into a conv)" : ")"));
    return i;
  }

  /// A float island: the modules of run (copies without hooks) between a
  /// dequantize and a quantize with the parameters of `point`.
  std::unique_ptr<Int8Op> island(const std::string& path, const std::vector<nn::Module*>& run,
                                 const std::string& point, std::string_view why) {
    const QuantParams in = cur_;
    const QuantParams out = source_.point(point);
    islands_made_.emplace_back(path, point);
    nn::Module& first = *run.front();
    std::string what = std::string(first.type_name());
    for (std::size_t k = 1; k < run.size(); ++k) what += " + " + std::string(run[k]->type_name());
    summary_.float_layers.push_back(path + " (" + what + ", " + std::string(why) +
                                    "): dequantize -> float -> quantize at '" + point + "'");
    if (auto* w = nn::as<nn::WeightedLayer>(first)) {
      LayerSummary l;
      l.name = path;
      l.kind = w->weight().rank() == 4 ? "conv" : "linear";
      l.precision = "float";
      l.point = point;
      l.in = in;
      l.out = out;
      summary_.layers.push_back(std::move(l));
    }
    summary_point(point, out);
    cur_ = out;
    std::vector<std::unique_ptr<nn::Module>> layers;
    if (probe_) return std::make_unique<Int8FloatIsland>(point, std::move(layers), out);
    for (nn::Module* m : run) layers.push_back(strip_hooks(m->clone()));
    auto op = std::make_unique<Int8FloatIsland>(point, std::move(layers), out);
    island_layers_.emplace_back(path, &op->layer(0));
    return op;
  }

  /// A conv or linear layer whose output is the point `point`.
  std::unique_ptr<Int8Op> weighted(nn::WeightedLayer& w, const std::string& path,
                                   const std::string& point, bool relu) {
    const QuantParams in = cur_;
    const QuantParams out = source_.point(point);
    const bool conv = w.weight().rank() == 4;
    if (probe_) {
      summary_point(point, out);
      cur_ = out;
      return std::make_unique<Int8Sequence>();
    }
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
    std::unique_ptr<Int8WeightedOp> op;
    if (conv)
      op = std::make_unique<Int8Conv>(point, q, out, relu);
    else
      op = std::make_unique<Int8Linear>(point, q, out, relu);
    ops_.emplace_back(path, op.get());
    weights_.emplace_back(path, std::move(q));
    return op;
  }

  std::unique_ptr<Int8Op> basic_block(nn::BasicBlock& b, const std::string& path) {
    const QuantParams in = cur_;
    auto conv = [&](const std::string& conv_name, const std::string& point, bool relu) {
      auto* w = nn::as<nn::WeightedLayer>(b.child(conv_name));
      const std::string name = join(path, conv_name);
      if (islands_.names.contains(name) || (w == nullptr && islands_.allow_unsupported)) {
        // The conv with its folded BN (and ReLU), in float.
        std::vector<nn::Module*> run{&b.child(conv_name)};
        run.push_back(&b.child(relu ? "bn1" : "bn2"));
        if (relu) run.push_back(&b.child("relu"));
        return island(name, run, join(path, point),
                      w ? "kept in float on request" : "no int8 form");
      }
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
  IslandOptions islands_;
  bool probe_ = false;
};

/// Every float island asked for by name must be a layer without children
/// that conversion reached (a layer with weights, or a layer with no int8
/// form; not a BN or ReLU that conversion fuses into the layer before it).
inline void check_islands(nn::Module& model, const IslandOptions& o,
                          const std::vector<std::pair<std::string, std::string>>& made) {
  for (const auto& name : o.names) {
    const nn::Module* m = model.find(name);
    require(m != nullptr, "float island '", name, "': ", model.type_name(),
            " has no layer of that name");
    bool found = false;
    for (const auto& [layer, point] : made) found = found || layer == name;
    require(found && m->num_children() == 0, "float island '", name, "' (", m->type_name(),
            "): not a layer conversion can keep in float by itself; name a layer with weights ",
            "(its folded BN and ReLU come with it) or a layer with no int8 form");
  }
}

/// Parameters for the probe: any valid value (nothing is computed with them).
class ProbeSource final : public ConvertSource {
 public:
  QuantParams point(const std::string&) override { return QuantParams{}; }
  QuantizedWeights weights(const std::string& name, nn::WeightedLayer&, QuantParams) override {
    throw ValueError(compressor::detail::concat("probe: no weights for '", name, "'"));
  }
};

inline std::vector<std::pair<std::string, std::string>> probe_islands(nn::Module& model,
                                                                      const IslandOptions& o) {
  if (!o.any()) return {};
  ProbeSource source;
  ConversionSummary summary;
  Converter c(source, summary, o, /*probe=*/true);
  (void)c.module(model, "");
  check_islands(model, o, c.islands_made_);
  return c.islands_made_;
}

}  // namespace internal

/// Converts the float model `root` (BatchNorms folded), whose quantization
/// points are `points`, taking parameters and weights from `source`; the
/// layers `islands` names (or allows) stay float islands.
inline Int8Model convert_with(nn::Module& root, const std::vector<nn::QuantPoint>& points,
                              WeightGrid grid, ConvertSource& source,
                              const IslandOptions& islands = {}) {
  require(!points.empty() && points.front().kind == nn::PointKind::input,
          "convert: the first quantization point of ", root.type_name(), " is not the model input");
  const nn::QuantPoint& input = points.front();
  ConversionSummary summary;
  summary.model = std::string(root.type_name());
  summary.grid = grid;
  internal::Converter c(source, summary, islands);
  const QuantParams in_q = source.point(input.name);
  c.cur_ = in_q;
  auto body = c.module(root, "");
  if (!c.unsupported_.empty()) {
    std::string list;
    for (const auto& u : c.unsupported_) list += "\n  " + u;
    throw ValueError(compressor::detail::concat(
        "convert: ", c.unsupported_.size(), " layer(s) of ", summary.model, " have no int8 form:",
        list, "\n(keep them in float with PtqConfig::allow_float_islands or float_islands)"));
  }
  internal::check_islands(root, islands, c.islands_made_);
  // Points in the model's order, with their kinds; then the outputs of
  // float islands that are no point of the model.
  std::vector<PointSummary> ordered;
  for (const auto& point : points) {
    QuantParams q = point.name == input.name ? in_q : QuantParams{};
    const auto* s = summary.point(point.name);
    require(s != nullptr || point.name == input.name, "convert: quantization point '", point.name,
            "' of ", summary.model, " is produced by no converted layer");
    if (s) q = s->q;
    ordered.push_back({point.name, point.kind, q});
  }
  for (const auto& [layer, point] : c.islands_made_) {
    bool listed = false;
    for (const auto& o : ordered) listed = listed || o.name == point;
    if (!listed) ordered.push_back({point, nn::PointKind::conv, summary.point(point)->q});
  }
  summary.points = std::move(ordered);
  return Int8Model(input.name, in_q, std::move(body), std::move(summary), std::move(c.weights_),
                   std::move(c.island_layers_), std::move(c.ops_));
}

/// Converts a prepared, calibrated model into an int8 model (see the file
/// comment). Errors: the model was edited since prepare_ptq(), a point whose
/// observer saw nothing, layers with no int8 form (all listed) unless they
/// are float islands.
inline Int8Model convert(Prepared& p) {
  internal::check_unedited(p, "convert", "prepare_ptq");
  internal::ModelSource source(*p.model, p.grid);
  Int8Model m = convert_with(*p.model, p.points, p.grid, source, p.islands);
  m.summary().passes = p.passes;
  return m;
}

/// The fp32 deploy model, the baseline of latency comparisons: a copy in
/// eval mode with every BatchNorm folded into its convolution.
inline std::unique_ptr<nn::Module> fp32_deploy_model(const nn::Module& m) {
  auto d = m.clone();
  d->eval();
  nn::fold_batchnorms(*d);
  return d;
}

namespace internal {
/// fake_quant_model(): the averaging layers at pool points become their
/// int8-exact twins (fake_quant_pool.hpp). A point whose input or own
/// parameters the summary lacks (a float island) keeps its float layer.
inline void swap_in_fake_quant_pools(nn::Module& m, const ConversionSummary& s) {
  const std::vector<nn::QuantPoint> points = m.quantization_points();
  for (std::size_t i = 1; i < points.size(); ++i) {
    const nn::PointKind kind = points[i].kind;
    if (kind != nn::PointKind::pool && kind != nn::PointKind::temporal_pool) continue;
    const PointSummary* in = s.point(points[i - 1].name);
    const PointSummary* out = s.point(points[i].name);
    if (in == nullptr || out == nullptr) continue;
    const std::string& name = points[i].name;
    nn::Module& pool = module_at(m, name);
    if (kind == nn::PointKind::pool && nn::as<nn::GlobalAvgPool2d>(pool) != nullptr)
      m.replace(name, std::make_unique<FakeQuantGlobalAvgPool2d>(in->q));
    else if (const auto* t = nn::as<nn::TemporalPool>(pool))
      m.replace(name, std::make_unique<FakeQuantTemporalPool>(t->mode(), in->q));
  }
}
}  // namespace internal

/// The float model that simulates `int8` (converted from p): a copy of p's
/// model with each layer's weights fake-quantized per channel, its bias on the
/// int32 grid, and a FakeQuantize with the point's parameters at every point.
/// At every pool and temporal-pool point the averaging layer is swapped for
/// its fake_quant_pool.hpp twin, which rounds means as the int8 op does
/// (ties included); its input parameters are those of the point declared
/// before it (models declare their points in forward order).
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
    if (l.precision != "int8") continue;  // a float island keeps its weights
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
  internal::swap_in_fake_quant_pools(*m, s);
  for (const auto& point : s.points)
    internal::module_at(*m, point.name).set_output_hook(std::make_unique<FakeQuantize>(point.q));
  m->eval();
  return m;
}

}  // namespace compressor::quant
