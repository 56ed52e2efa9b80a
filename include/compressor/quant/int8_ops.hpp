// The int8 model's deploy-time ops. Between ops pass uint8 tensors with their
// quantization parameters (QTensor); weights are quantized and packed once,
// at conversion; every op runs on the int8 kernels (kernels/). Each op that
// produces a quantization point reports it to an optional trace (the fidelity
// tests and the sensitivity report read the uint8 tensors there).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/core/tensor.hpp"
#include "compressor/kernels/conv_u8s8.hpp"
#include "compressor/kernels/eltwise.hpp"
#include "compressor/kernels/pool.hpp"
#include "compressor/kernels/sparse_conv_u8s8.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/quant/qparams.hpp"

namespace compressor::quant {

/// A uint8 tensor with its quantization parameters (an owning buffer, reused).
struct QTensor {
  Tensor<std::uint8_t> data;
  QuantParams q;
};

/// A non-owning uint8 tensor with its parameters.
struct QView {
  TensorView<const std::uint8_t> data;
  QuantParams q;
};

/// Called with each quantization point's name, its uint8 tensor and its
/// parameters, before the next op reads it. The tensor may be changed in
/// place: the fidelity tests write the fake-quant model's values there, so
/// that every op is compared on the same input (errors do not compound).
using PointTrace =
    std::function<void(const std::string& point, TensorView<std::uint8_t> data, QuantParams q)>;

class Int8Op {
 public:
  virtual ~Int8Op() = default;
  /// Runs the op; the result stays valid until the op's next call.
  virtual QView forward(const QView& x, const PointTrace* trace) = 0;
  virtual std::string_view kind() const = 0;
  /// Bytes of quantized weights, biases and parameters the op holds.
  virtual std::int64_t weight_bytes() const { return 0; }

 protected:
  static QView emit(const std::string& point, QTensor& t, const PointTrace* trace) {
    if (trace && *trace && !point.empty()) (*trace)(point, t.data.view(), t.q);
    return {std::as_const(t.data).view(), t.q};
  }
};

/// The int8 weights of a conv or linear layer, as conversion made them:
/// int8 OHWI weights, per-channel scales, int32 bias at s_in * s_w.
struct QuantizedWeights {
  Tensor<std::int8_t> weight;      ///< (O, KH, KW, I); a linear layer is (O, 1, 1, I)
  std::vector<float> scales;       ///< O
  std::vector<std::int32_t> bias;  ///< O, or empty
  std::int64_t stride = 1, padding = 0;
  /// The grid the weights were quantized on (their packing checks it).
  WeightGrid grid = WeightGrid::full;
};

/// A layer with int8 weights, uint8 out with the point's parameters, optional
/// fused ReLU: the common part of conv and linear. It runs on the dense
/// kernel (kernels::ConvU8S8) or, after set_sparse(w, true), on the sparse
/// one (kernels::SparseConvU8S8: the nonzeros only, for unstructured-pruned
/// weights); both give bit-identical outputs (same integer accumulator, same
/// epilogue), so the choice is one of speed and size only
/// (prune::finalize_sparse on an Int8Model makes it per layer).
class Int8WeightedOp : public Int8Op {
 public:
  Int8WeightedOp(std::string point, const QuantizedWeights& w, QuantParams out, bool relu,
                 bool sparse = false)
      : point_(std::move(point)), out_c_(w.weight.dim(0)), relu_(relu) {
    y_.q = out;
    set_sparse(w, sparse);
  }

  /// Packs w (the weights the op was built from) for the sparse kernel
  /// (true) or the dense one (false), dropping the other form.
  void set_sparse(const QuantizedWeights& w, bool sparse) {
    require<ShapeError>(w.weight.rank() == 4 && w.weight.dim(0) == out_c_, "int8 layer '", point_,
                        "': weights ", w.weight.shape(), " are not the op's (", out_c_,
                        " output channels)");
    const std::int64_t params = 4 * static_cast<std::int64_t>(w.scales.size() + w.bias.size());
    if (sparse) {
      sparse_ = std::make_unique<kernels::SparseConvU8S8>(w.weight.view(), w.scales, w.bias,
                                                          w.stride, w.padding, w.grid);
      dense_.reset();
      // As stored: int8 values, int32 column indices, int64 row pointers.
      bytes_ = 5 * sparse_->weights().nnz() + 8 * (out_c_ + 1) + params;
    } else {
      dense_ = std::make_unique<kernels::ConvU8S8>(w.weight.view(), w.scales, w.bias, w.stride,
                                                   w.padding, w.grid);
      sparse_.reset();
      bytes_ = w.weight.numel() + params;
    }
  }
  /// On the sparse kernel.
  bool sparse() const { return sparse_ != nullptr; }
  std::int64_t weight_bytes() const override { return bytes_; }
  /// The input shape and parameters of the last forward() (NHWC for a conv,
  /// (N, K) for a linear layer): what a timing probe runs the layer on.
  /// Empty before the first forward().
  const Shape& last_input_shape() const { return last_in_; }
  QuantParams last_input_params() const { return last_q_; }
  /// The output shape for a kernel input of shape `in` (NHWC).
  Shape kernel_output_shape(const Shape& in) const {
    return sparse_ ? sparse_->output_shape(in) : dense_->output_shape(in);
  }

 protected:
  /// Runs the convolution of x (NHWC) into y_'s buffer viewed as `y_shape`.
  void run(TensorView<const std::uint8_t> x, QuantParams q, const Shape& y_shape) {
    const TensorView<std::uint8_t> y(y_.data.data(), y_shape);
    if (sparse_)
      sparse_->forward(x, q, y, y_.q, relu_, sparse_scratch_);
    else
      dense_->forward(x, q, y, y_.q, relu_, scratch_);
  }

  void remember(const QView& x) {
    if (!(x.data.shape() == last_in_)) last_in_ = x.data.shape();
    last_q_ = x.q;
  }

  std::string point_;
  std::int64_t out_c_;
  std::unique_ptr<kernels::ConvU8S8> dense_;
  std::unique_ptr<kernels::SparseConvU8S8> sparse_;
  std::int64_t bytes_ = 0;
  bool relu_;
  QTensor y_;
  kernels::ConvScratch scratch_;
  kernels::SparseConvScratch sparse_scratch_;
  Shape last_in_;
  QuantParams last_q_;
};

/// conv(+ReLU), and optionally the 2x2 max pool (stride 2, no padding)
/// that follows it, which keeps the conv output's parameters.
class Int8Conv : public Int8WeightedOp {
 public:
  using Int8WeightedOp::Int8WeightedOp;
  std::string_view kind() const override { return max_pool2_ ? "conv+max_pool" : "conv"; }

  /// Runs the following MaxPool2d(2, 2, 0) too (conversion sets it): in one
  /// pass on the dense or the sparse kernel (forward_max_pool2 of
  /// kernels::ConvU8S8 / SparseConvU8S8, bit for bit the two ops); a trace
  /// that reads the conv output point runs the conv and then the pool.
  void fuse_max_pool2() { max_pool2_ = true; }
  bool fused_max_pool2() const { return max_pool2_; }
  /// With false the fused pool runs after the conv, as its own pass (the
  /// same outputs; what a benchmark compares the one pass with).
  void set_max_pool2_one_pass(bool one_pass) { one_pass_ = one_pass; }

  QView forward(const QView& x, const PointTrace* trace) override {
    remember(x);
    if (max_pool2_ && one_pass_ && !(trace && *trace)) {
      if (sparse_) {
        y_.data.resize(sparse_->pooled_output_shape(x.data.shape()));
        sparse_->forward_max_pool2(x.data, x.q, y_.data.view(), y_.q, relu_, sparse_scratch_);
      } else {
        y_.data.resize(dense_->pooled_output_shape(x.data.shape()));
        dense_->forward_max_pool2(x.data, x.q, y_.data.view(), y_.q, relu_, scratch_);
      }
      return {std::as_const(y_.data).view(), y_.q};
    }
    y_.data.resize(kernel_output_shape(x.data.shape()));
    run(x.data, x.q, y_.data.shape());
    const QView conv = emit(point_, y_, trace);
    if (!max_pool2_) return conv;
    pooled_.q = conv.q;
    pooled_.data.resize(kernels::max_pool_output_shape(conv.data.shape(), 2, 2, 0));
    kernels::max_pool_u8(conv.data, pooled_.data, 2, 2, 0);
    return {std::as_const(pooled_.data).view(), pooled_.q};
  }

 private:
  bool max_pool2_ = false, one_pass_ = true;
  QTensor pooled_;
};

/// linear(+ReLU): (N, K) -> (N, O) as a 1x1 convolution over N pixels.
class Int8Linear : public Int8WeightedOp {
 public:
  using Int8WeightedOp::Int8WeightedOp;
  std::string_view kind() const override { return "linear"; }

  QView forward(const QView& x, const PointTrace* trace) override {
    require<ShapeError>(x.data.rank() == 2, "int8 linear '", point_, "': expected (N, K), got ",
                        x.data.shape());
    remember(x);
    const std::int64_t n = x.data.dim(0), k = x.data.dim(1);
    y_.data.resize(Shape{n, out_c_});
    run(x.data.reshape(Shape{n, 1, 1, k}), x.q, Shape{n, 1, 1, out_c_});
    return emit(point_, y_, trace);
  }
};

/// Max pool: keeps its input's parameters (no point of its own).
class Int8MaxPool : public Int8Op {
 public:
  Int8MaxPool(std::int64_t k, std::int64_t stride, std::int64_t pad) : k_(k), s_(stride), p_(pad) {}
  std::string_view kind() const override { return "max_pool"; }
  QView forward(const QView& x, const PointTrace*) override {
    y_.q = x.q;
    y_.data.resize(kernels::max_pool_output_shape(x.data.shape(), k_, s_, p_));
    kernels::max_pool_u8(x.data, y_.data, k_, s_, p_);
    return {y_.data.view(), y_.q};
  }

 private:
  std::int64_t k_, s_, p_;
  QTensor y_;
};

/// Global average pool (N, H, W, C) -> (N, C), requantized to the point's parameters.
class Int8GlobalAvgPool : public Int8Op {
 public:
  Int8GlobalAvgPool(std::string point, QuantParams out) : point_(std::move(point)) { y_.q = out; }
  std::string_view kind() const override { return "avg_pool"; }
  QView forward(const QView& x, const PointTrace* trace) override {
    require<ShapeError>(x.data.rank() == 4, "int8 average pool '", point_, "': expected NHWC, got ",
                        x.data.shape());
    y_.data.resize(Shape{x.data.dim(0), x.data.dim(3)});
    kernels::global_avg_pool_u8(x.data, x.q, y_.data, y_.q);
    return emit(point_, y_, trace);
  }

 private:
  std::string point_;
  QTensor y_;
};

/// A float island: the input dequantized, float modules (copies, eval mode,
/// no hooks) run on it, the result quantized with the parameters of its
/// output point. What conversion keeps in float, by request.
class Int8FloatIsland : public Int8Op {
 public:
  Int8FloatIsland(std::string point, std::vector<std::unique_ptr<nn::Module>> layers,
                  QuantParams out)
      : point_(std::move(point)), layers_(std::move(layers)) {
    y_.q = out;
    for (auto& m : layers_) {
      m->eval();
      for (const auto& p : m->named_parameters()) bytes_ += 4 * p.value->numel();
    }
  }
  std::string_view kind() const override { return "float_island"; }
  /// The float modules it runs (the first is the island's layer).
  nn::Module& layer(std::size_t i) { return *layers_.at(i); }
  /// Bytes of the float parameters it holds.
  std::int64_t weight_bytes() const override { return bytes_; }
  QView forward(const QView& x, const PointTrace* trace) override {
    x_.resize(x.data.shape());
    kernels::dequantize_u8_f32(x.data, x.q, x_);
    TensorView<const float> v = x_;
    for (auto& m : layers_) v = m->forward(v);
    y_.data.resize(v.shape());
    kernels::quantize_f32_u8(v, y_.q, y_.data);
    return emit(point_, y_, trace);
  }

 private:
  std::string point_;
  std::vector<std::unique_ptr<nn::Module>> layers_;
  std::int64_t bytes_ = 0;
  Tensor<float> x_;
  QTensor y_;
};

/// Ops in sequence.
class Int8Sequence : public Int8Op {
 public:
  void add(std::unique_ptr<Int8Op> op) { ops_.push_back(std::move(op)); }
  std::size_t size() const { return ops_.size(); }
  std::string_view kind() const override { return "sequence"; }
  std::int64_t weight_bytes() const override {
    std::int64_t b = 0;
    for (const auto& op : ops_) b += op->weight_bytes();
    return b;
  }
  QView forward(const QView& x, const PointTrace* trace) override {
    QView v = x;
    for (auto& op : ops_) v = op->forward(v, trace);
    return v;
  }

 private:
  std::vector<std::unique_ptr<Int8Op>> ops_;
};

/// A ResNet BasicBlock: add_relu(conv2(conv1_relu(x)), downsample(x) or x).
class Int8BasicBlock : public Int8Op {
 public:
  Int8BasicBlock(std::string point, std::unique_ptr<Int8Op> conv1, std::unique_ptr<Int8Op> conv2,
                 std::unique_ptr<Int8Op> downsample, QuantParams out)
      : point_(std::move(point)),
        conv1_(std::move(conv1)),
        conv2_(std::move(conv2)),
        downsample_(std::move(downsample)) {
    y_.q = out;
  }
  std::string_view kind() const override { return "basic_block"; }
  std::int64_t weight_bytes() const override {
    return conv1_->weight_bytes() + conv2_->weight_bytes() +
           (downsample_ ? downsample_->weight_bytes() : 0);
  }
  QView forward(const QView& x, const PointTrace* trace) override {
    const QView main = conv2_->forward(conv1_->forward(x, trace), trace);
    const QView shortcut = downsample_ ? downsample_->forward(x, trace) : x;
    check_same_shape(shortcut.data.shape(), main.data.shape(), "int8 block '" + point_ + "'");
    y_.data.resize(main.data.shape());
    kernels::add_u8_requant(main.data, main.q, shortcut.data, shortcut.q, y_.data, y_.q, true);
    return emit(point_, y_, trace);
  }

 private:
  std::string point_;
  std::unique_ptr<Int8Op> conv1_, conv2_, downsample_;
  QTensor y_;
};

/// The EF model's clip pipeline: (N, T, H, W, C) -> trunk per frame ->
/// (N, T, F) -> temporal pool -> head.
class Int8ClipModel : public Int8Op {
 public:
  Int8ClipModel(std::unique_ptr<Int8Op> trunk, std::string pool_point, bool max_min,
                QuantParams pool_out, std::unique_ptr<Int8Op> head)
      : trunk_(std::move(trunk)),
        pool_point_(std::move(pool_point)),
        max_min_(max_min),
        head_(std::move(head)) {
    pooled_.q = pool_out;
  }
  std::string_view kind() const override { return "clip_model"; }
  std::int64_t weight_bytes() const override {
    return trunk_->weight_bytes() + head_->weight_bytes();
  }
  QView forward(const QView& x, const PointTrace* trace) override {
    require<ShapeError>(x.data.rank() == 5,
                        "int8 EfRegressor: expected clips (N, T, H, W, C), got ", x.data.shape());
    const std::int64_t n = x.data.dim(0), t = x.data.dim(1);
    const QView frames{x.data.reshape(Shape{n * t, x.data.dim(2), x.data.dim(3), x.data.dim(4)}),
                       x.q};
    const QView f = trunk_->forward(frames, trace);  // (N*T, F)
    const std::int64_t nf = f.data.dim(1);
    pooled_.data.resize(Shape{n, max_min_ ? 3 * nf : nf});
    kernels::temporal_pool_u8(f.data.reshape(Shape{n, t, nf}), f.q, max_min_, pooled_.data,
                              pooled_.q);
    return head_->forward(emit(pool_point_, pooled_, trace), trace);
  }

 private:
  std::unique_ptr<Int8Op> trunk_;
  std::string pool_point_;
  bool max_min_;
  std::unique_ptr<Int8Op> head_;
  QTensor pooled_;
};

}  // namespace compressor::quant
