// Int8Model: a converted model (quant/convert.hpp) with the float model's
// boundary: forward() takes and returns float tensors, so evaluation, metrics
// and latency code treat it like the float model. Inside, the input is
// quantized with the input point's parameters, uint8 tensors pass between the
// int8 ops, and the output point is dequantized at the end.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "compressor/kernels/eltwise.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/quant/int8_ops.hpp"
#include "compressor/quant/qparams.hpp"

namespace compressor::quant {

/// One layer with weights as converted.
struct LayerSummary {
  std::string name;       ///< the float layer ("layer1.0.conv1")
  std::string kind;       ///< "conv" | "linear"
  std::string precision;  ///< "int8", or "float" in a float island
  std::string point;      ///< the quantization point its output is
  QuantParams in, out;
  bool relu = false;
  bool max_pool2 = false;  ///< runs the 2x2 max pool after it too (Int8Conv::fuse_max_pool2)
  std::vector<float> weight_scales;
  bool sparse = false;  ///< runs on the sparse int8 kernel (Int8Model::set_sparse)
  double sqnr_db = std::numeric_limits<double>::quiet_NaN();  ///< at its point, if measured
};

/// One quantization point as converted.
struct PointSummary {
  std::string name;
  nn::PointKind kind;
  QuantParams q;
  double sqnr_db = std::numeric_limits<double>::quiet_NaN();
};

/// What convert() did: per layer and per point, the weight grid, and what
/// stayed float (nothing, unless float islands were asked for).
struct ConversionSummary {
  std::string model;
  WeightGrid grid = WeightGrid::full;
  std::vector<LayerSummary> layers;
  std::vector<PointSummary> points;
  std::vector<std::string> float_layers;  ///< the float islands, with what they hold
  std::vector<std::string> passes;        ///< cross-layer equalization, bias correction

  const PointSummary* point(std::string_view name) const {
    for (const auto& p : points)
      if (p.name == name) return &p;
    return nullptr;
  }

  /// A table: one line per point, then per layer.
  std::string str() const {
    std::ostringstream os;
    std::size_t int8_layers = 0;
    for (const auto& l : layers) int8_layers += l.precision == "int8" ? 1 : 0;
    os << model << ": " << int8_layers << " int8 layers with weights, " << points.size()
       << " quantization points, weight grid " << to_string(grid) << " [-" << weight_qmax(grid)
       << ", " << weight_qmax(grid) << "], " << float_layers.size() << " float islands\n";
    for (const auto& p : passes) os << "  " << p << "\n";
    os << "point                                   scale         zp   SQNR dB\n";
    for (const auto& p : points) {
      char line[160];
      std::snprintf(line, sizeof line, "%-38s %12.6g %4d %9.2f\n", p.name.c_str(),
                    static_cast<double>(p.q.scale), p.q.zero_point, p.sqnr_db);
      os << line;
    }
    os << "layer                          kind    prec  relu  in scale/zp         out point\n";
    for (const auto& l : layers) {
      char line[240];
      std::snprintf(line, sizeof line, "%-30s %-7s %-5s %-5s %10.4g/%-4d -> %s%s\n", l.name.c_str(),
                    l.kind.c_str(), l.precision.c_str(), l.relu ? "yes" : "no",
                    static_cast<double>(l.in.scale), l.in.zero_point, l.point.c_str(),
                    l.sparse ? " (sparse kernel)" : "");
      os << line;
    }
    for (const auto& f : float_layers) os << "float island: " << f << "\n";
    return os.str();
  }
};

class Int8Model {
 public:
  Int8Model(std::string input_point, QuantParams input_q, std::unique_ptr<Int8Op> body,
            ConversionSummary summary,
            std::vector<std::pair<std::string, QuantizedWeights>> weights,
            std::vector<std::pair<std::string, nn::Module*>> island_layers = {},
            std::vector<std::pair<std::string, Int8WeightedOp*>> layer_ops = {})
      : input_point_(std::move(input_point)),
        body_(std::move(body)),
        summary_(std::move(summary)),
        weights_(std::move(weights)),
        island_layers_(std::move(island_layers)),
        layer_ops_(std::move(layer_ops)) {
    in_.q = input_q;
  }

  /// float in (the float model's input layout), float out.
  TensorView<const float> forward(TensorView<const float> x) {
    in_.data.resize(x.shape());
    kernels::quantize_f32_u8(x, in_.q, in_.data);
    const PointTrace* t = trace_ ? &trace_ : nullptr;
    if (t) trace_(input_point_, in_.data.view(), in_.q);
    const QView y = body_->forward(QView{std::as_const(in_.data).view(), in_.q}, t);
    out_.resize(y.data.shape());
    kernels::dequantize_u8_f32(y.data, y.q, out_);
    return out_;
  }

  /// Calls trace(point, uint8 tensor, parameters) at every quantization
  /// point of each forward() (see PointTrace); an empty function switches it off.
  void set_trace(PointTrace trace) { trace_ = std::move(trace); }

  const ConversionSummary& summary() const { return summary_; }
  ConversionSummary& summary() { return summary_; }
  QuantParams input_params() const { return in_.q; }
  /// Bytes of int8 weights, int32 biases and float scales.
  std::int64_t weight_bytes() const { return body_->weight_bytes(); }
  /// The int8 weights of every layer, by the float layer's name.
  const std::vector<std::pair<std::string, QuantizedWeights>>& layer_weights() const {
    return weights_;
  }
  const std::string& input_point() const { return input_point_; }
  /// The first float layer of every float island, by name (owned by the
  /// island; what a saved int8 model stores in float).
  const std::vector<std::pair<std::string, nn::Module*>>& float_island_layers() const {
    return island_layers_;
  }

  /// The op of int8 layer `name` (a converted layer with weights), or null.
  Int8WeightedOp* layer_op(std::string_view name) const {
    for (const auto& [n, op] : layer_ops_)
      if (n == name) return op;
    return nullptr;
  }
  /// Runs int8 layer `name` on the sparse int8 kernel (true) or the dense
  /// one (false); the outputs are bit-identical either way (int8_ops.hpp).
  /// ValueError when `name` is no int8 layer with weights.
  void set_sparse(std::string_view name, bool sparse) {
    Int8WeightedOp* op = layer_op(name);
    const QuantizedWeights* w = nullptr;
    for (const auto& [n, q] : weights_)
      if (n == name) w = &q;
    require(op != nullptr && w != nullptr, "Int8Model::set_sparse: '", name, "' is no int8 layer ",
            "with weights of the ", summary_.model);
    op->set_sparse(*w, sparse);
    for (auto& l : summary_.layers)
      if (l.name == name) l.sparse = sparse;
  }
  /// The layers on the sparse int8 kernel, in model order.
  std::vector<std::string> sparse_layers() const {
    std::vector<std::string> out;
    for (const auto& [n, op] : layer_ops_)
      if (op->sparse()) out.push_back(n);
    return out;
  }

 private:
  std::string input_point_;
  std::unique_ptr<Int8Op> body_;
  ConversionSummary summary_;
  std::vector<std::pair<std::string, QuantizedWeights>> weights_;
  std::vector<std::pair<std::string, nn::Module*>> island_layers_;
  std::vector<std::pair<std::string, Int8WeightedOp*>> layer_ops_;  ///< owned by body_
  QTensor in_;
  Tensor<float> out_;
  PointTrace trace_;
};

}  // namespace compressor::quant
