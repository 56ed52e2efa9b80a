// Deploy-time sparse layers: a pruned Conv2d or Linear whose weight is kept
// as its nonzeros only (CSR over output channels, kernels::SparseWeightsF32)
// and run on kernels::sparse_gemm_f32 (a conv through im2col, a 1x1 stride-1
// conv and a Linear directly). Forward only: fine-tune the masked dense
// model, then convert (finalize.hpp).
//
// The CSR lives in buffers, so a checkpoint stores the sparse format:
//   <layer>.weight_values   f32 (nnz)     the nonzeros, row by row
//   <layer>.weight_indices  i32 (nnz)     their column in the (O, KH*KW*I)
//                                          matrix of the OHWI weight, ascending
//                                          per row (a Linear: the input index)
//   <layer>.weight_row_ptr  i64 (O + 1)   row o is [row_ptr[o], row_ptr[o+1])
//   <layer>.bias            f32 (O)       when the layer has a bias
// 8 bytes per nonzero against 4 per dense weight: smaller from 50% sparsity
// on, a fifth of the dense size at 90%. These names are compressor's deploy
// format, not PyTorch's state_dict (exchange the masked dense model instead).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "compressor/core/error.hpp"
#include "compressor/kernels/sparse_gemm.hpp"
#include "compressor/kernels/sparse_weights.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/im2col.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::prune {

/// What a sparse deploy-time layer can say about itself (reports, loading).
class SparseLayer : public nn::ChannelProducer {
 public:
  /// The weight's shape as the dense layer had it (OHWI or (out, in)).
  virtual Shape dense_shape() const = 0;
  virtual std::int64_t nnz() const = 0;
  /// The dense weight (zeros included), for checks and reports.
  virtual Tensor<float> dense_weight() const = 0;
  /// Rebuilds the kernel's packed weights from the buffers (after a load).
  virtual void repack() = 0;
};

/// The common part: CSR buffers, bias, the packed kernel weights.
class SparseWeighted : public nn::Module, public SparseLayer {
 public:
  Shape dense_shape() const override { return shape_; }
  std::int64_t out_channels() const override { return shape_[0]; }
  std::int64_t nnz() const override { return values_.numel(); }
  bool has_bias() const { return has_bias_; }

  Tensor<float> dense_weight() const override {
    Tensor<float> w(shape_, 0.f);
    const std::int64_t k = shape_.numel() / shape_[0];
    for (std::int64_t o = 0; o < shape_[0]; ++o)
      for (std::int64_t j = row_ptr_[o]; j < row_ptr_[o + 1]; ++j)
        w.data()[o * k + indices_[j]] = values_[j];
    return w;
  }

  /// Checks the CSR buffers (a loaded file may be malformed) and packs them
  /// for the kernel; errors name the layer's type and the field.
  void repack() override {
    const std::int64_t n = shape_[0], k = shape_.numel() / n, nz = values_.numel();
    auto bad = [&](auto&&... what) {
      return ValueError(compressor::detail::concat(type_name(), " ", shape_.str(), ": ", what...));
    };
    if (row_ptr_.numel() != n + 1 || indices_.numel() != nz)
      throw bad("weight_row_ptr has ", row_ptr_.numel(), " entries (expected ", n + 1,
                ") and weight_indices ", indices_.numel(), " (expected ", nz, ")");
    if (row_ptr_[0] != 0 || row_ptr_[n] != nz) throw bad("weight_row_ptr must run from 0 to ", nz);
    for (std::int64_t o = 0; o < n; ++o) {
      if (row_ptr_[o + 1] < row_ptr_[o]) throw bad("weight_row_ptr decreases at row ", o);
      for (std::int64_t j = row_ptr_[o]; j < row_ptr_[o + 1]; ++j)
        if (indices_[j] < 0 || indices_[j] >= k ||
            (j > row_ptr_[o] && indices_[j] <= indices_[j - 1]))
          throw bad("weight_indices of row ", o, " must ascend within [0, ", k, ")");
    }
    const Tensor<float> w = dense_weight();
    packed_ = kernels::SparseWeightsF32(w.data(), n, k, k);
  }

 protected:
  /// A layer of dense weight shape `shape` with nnz nonzeros (values zero,
  /// for loading), or, given `dense`, that weight's nonzeros.
  SparseWeighted(const Shape& shape, bool bias, std::int64_t nnz) : shape_(shape), has_bias_(bias) {
    require(shape.rank() >= 2 && shape[0] > 0 && nnz >= 0 && nnz <= shape.numel(),
            "sparse layer: bad weight shape ", shape, " or nonzero count ", nnz);
    values_ = Tensor<float>(Shape{nnz}, 0.f);
    indices_ = Tensor<std::int32_t>(Shape{nnz}, 0);
    row_ptr_ = Tensor<std::int64_t>(Shape{shape[0] + 1}, 0);
    register_buffer("weight_values", values_);
    register_buffer("weight_indices", indices_);
    register_buffer("weight_row_ptr", row_ptr_);
    if (bias) {
      bias_ = Tensor<float>(Shape{shape[0]}, 0.f);
      register_buffer("bias", bias_);
    }
  }

  /// Fills the buffers from a dense layer's weight and bias and packs them.
  void take(nn::WeightedLayer& dense) {
    const Tensor<float>& w = dense.weight();
    const std::int64_t n = shape_[0], k = shape_.numel() / n;
    std::int64_t j = 0;
    for (std::int64_t o = 0; o < n; ++o) {
      row_ptr_[o] = j;
      for (std::int64_t c = 0; c < k; ++c)
        if (const float v = w.data()[o * k + c]; v != 0.f) {
          values_[j] = v;
          indices_[j] = static_cast<std::int32_t>(c);
          ++j;
        }
    }
    row_ptr_[n] = j;
    if (has_bias_) bias_ = dense.bias();
    repack();
  }

  static std::int64_t count_nonzero(nn::WeightedLayer& dense) {
    std::int64_t n = 0;
    for (const float v : dense.weight().flat()) n += v != 0.f ? 1 : 0;
    return n;
  }

  void on_cloned() override { repack(); }

  TensorView<const float> backward_impl(TensorView<const float>) override {
    throw Error(compressor::detail::concat(
        type_name(),
        " is a deploy-time layer without backward: fine-tune the masked dense model "
        "(prune::MaskedTraining), then convert it"));
  }

  /// Y (rows x O) = X (rows x K) * W^T + bias on the sparse kernel.
  void multiply(std::int64_t rows, const float* x, float* y) {
    kernels::sparse_gemm_f32(rows, x, packed_.k(), packed_, has_bias_ ? bias_.data() : nullptr,
                             false, y, packed_.n(), scratch_);
  }

  Shape shape_;
  bool has_bias_;
  Tensor<float> values_, bias_;
  Tensor<std::int32_t> indices_;
  Tensor<std::int64_t> row_ptr_;
  kernels::SparseWeightsF32 packed_;
  kernels::SparseScratch scratch_;
  Tensor<float> out_;
};

class SparseConv2d : public SparseWeighted {
 public:
  /// Keeps the nonzeros of a dense convolution (OHWI weight).
  explicit SparseConv2d(nn::WeightedLayer& dense)
      : SparseConv2d(options_of(dense), count_nonzero(dense)) {
    take(dense);
  }
  /// An empty layer for loading: options and the number of nonzeros.
  SparseConv2d(const nn::Conv2dOptions& o, std::int64_t nnz)
      : SparseWeighted(Shape{o.out_channels, o.kernel_size, o.kernel_size, o.in_channels}, o.bias,
                       nnz),
        opt_(o) {}

  std::string_view type_name() const override { return "SparseConv2d"; }
  const nn::Conv2dOptions& options() const { return opt_; }

  static nn::Conv2dOptions options_of(nn::WeightedLayer& w) {
    require(w.weight().rank() == 4, "SparseConv2d: the layer's weight ", w.weight().shape(),
            " is not an OHWI conv weight");
    const auto k = w.kernel();
    require(k.kh == k.kw, "SparseConv2d: only square kernels, got ", k.kh, "x", k.kw);
    return {w.in_channels(), w.out_channels(), k.kh, k.stride, k.padding, w.has_bias()};
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<SparseConv2d>(opt_, nnz());
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    const nn::ConvGeometry g = nn::conv_geometry(opt_, x.shape());
    const float* cols = x.data();
    if (!g.is_pointwise()) {
      cols_.resize(Shape{g.rows(), g.cols()});
      nn::im2col(x.data(), g, cols_.data());
      cols = cols_.data();
    }
    out_.resize(Shape{g.n, g.oh, g.ow, opt_.out_channels});
    multiply(g.rows(), cols, out_.data());
    return out_;
  }

 private:
  nn::Conv2dOptions opt_;
  Tensor<float> cols_;
};

class SparseLinear : public SparseWeighted {
 public:
  /// Keeps the nonzeros of a dense Linear ((out, in) weight).
  explicit SparseLinear(nn::WeightedLayer& dense)
      : SparseLinear(dense.in_channels(), dense.out_channels(), dense.has_bias(),
                     count_nonzero(dense)) {
    require(dense.weight().rank() == 2, "SparseLinear: the layer's weight ", dense.weight().shape(),
            " is not an (out, in) matrix");
    take(dense);
  }
  SparseLinear(std::int64_t in, std::int64_t out, bool bias, std::int64_t nnz)
      : SparseWeighted(Shape{out, in}, bias, nnz) {}

  std::string_view type_name() const override { return "SparseLinear"; }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<SparseLinear>(shape_[1], shape_[0], has_bias_, nnz());
  }

  TensorView<const float> forward_impl(TensorView<const float> x) override {
    if (x.rank() != 2 || x.dim(1) != shape_[1])
      throw ShapeError(compressor::detail::concat("SparseLinear(", shape_[1], "->", shape_[0],
                                                  "): expected input (N, ", shape_[1], "), got ",
                                                  x.shape().str()));
    out_.resize(Shape{x.dim(0), shape_[0]});
    multiply(x.dim(0), x.data(), out_.data());
    return out_;
  }
};

/// The sparse deploy-time layer of a dense conv or Linear (by weight rank).
inline std::unique_ptr<nn::Module> make_sparse(nn::WeightedLayer& dense) {
  if (dense.weight().rank() == 4) return std::make_unique<SparseConv2d>(dense);
  return std::make_unique<SparseLinear>(dense);
}

}  // namespace compressor::prune
