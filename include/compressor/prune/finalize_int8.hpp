// Finalizing unstructured pruning in an int8 model: prune -> fine-tune with
// the masks (MaskedTraining, through QAT too) -> PTQ or QAT -> int8, then
//
//   auto decisions = prune::finalize_sparse(int8, masks, Shape{1, 32, 32, 3});
//   quant::save_int8_model(int8, model.channel_plan(), "cnn_90.int8.safetensors");
//
// puts the masked layers of the int8 model (quant::Int8Model, layers by the
// float model's names) on the sparse int8 kernel (kernels::SparseConvU8S8,
// sparse_gemm_u8s8) where that pays. The sparse op gives bit-identical
// outputs to the dense int8 op (same integer accumulator, same epilogue), so
// this changes speed and size, never a number. The policy is the fp32
// finalize_sparse's (FinalizeOptions, finalize.hpp):
//   measured (default)  per layer, a timing probe at the layer's real input
//                       (shape and parameters from one forward pass of the
//                       int8 model on zeros of `input`): the dense int8 op and
//                       the sparse one, median of `repeats` runs after one
//                       warm-up each, on the current thread count; sparse
//                       when at least min_speedup times faster. The times
//                       are in the decisions.
//   min_sparsity        sparse when the int8 weight's sparsity >= min_sparsity
//   always              every masked layer (tests, file size)
// A decision's sparsity is that of the int8 weight (zeros / weights), what
// the kernel sees: at least the mask's (quantization rounds some small kept
// weights to 0 too). quant::save_int8_model stores the sparse layers in the
// sparse form and load_int8_model restores them (int8_io.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/rng.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/prune/finalize.hpp"
#include "compressor/prune/mask.hpp"
#include "compressor/prune/report.hpp"
#include "compressor/quant/int8_model.hpp"

namespace compressor::prune {

namespace detail {

/// The int8 weights of layer `name` of m; they must hold mask (ValueError).
inline const quant::QuantizedWeights& int8_weights_holding(const quant::Int8Model& m,
                                                           const LayerMask& mask) {
  const quant::QuantizedWeights* w = nullptr;
  for (const auto& [n, q] : m.layer_weights())
    if (n == mask.layer) w = &q;
  require(w != nullptr && m.layer_op(mask.layer) != nullptr, "finalize_sparse: masked layer '",
          mask.layer, "' is no int8 layer with weights of the int8 ", m.summary().model,
          " (a float island, or a mask of another model)");
  require<ShapeError>(w->weight.numel() == mask.size(), "finalize_sparse: the mask of '",
                      mask.layer, "' has ", mask.size(), " elements, its int8 weight ",
                      w->weight.shape(), " has ", w->weight.numel());
  for (std::int64_t i = 0; i < mask.size(); ++i)
    require(mask.keep[static_cast<std::size_t>(i)] != 0 || w->weight[i] == 0,
            "finalize_sparse: the int8 weights of '", mask.layer,
            "' do not hold its mask (pruned weight ", i, " is ", int(w->weight[i]),
            "); quantize a model whose weights hold the masks");
  return *w;
}

}  // namespace detail

/// Puts the layers of masks on the sparse int8 kernel per the policy (see
/// the top); input is the int8 model's float input shape, for the timing
/// probe. Returns one decision per masked layer; the other layers keep the
/// kernel they have.
inline std::vector<SparseDecision> finalize_sparse(quant::Int8Model& model, const MaskSet& masks,
                                                   const Shape& input,
                                                   const FinalizeOptions& o = {}) {
  o.check();
  for (const auto& m : masks.layers()) (void)detail::int8_weights_holding(model, m);
  if (o.policy == SparsePolicy::measured && !masks.empty())
    (void)model.forward(Tensor<float>(input, 0.f));  // every op sees its input shape
  std::vector<SparseDecision> out;
  for (const auto& m : masks.layers()) {
    const quant::QuantizedWeights& w = detail::int8_weights_holding(model, m);
    quant::Int8WeightedOp& op = *model.layer_op(m.layer);
    std::int64_t zeros = 0;
    for (const std::int8_t v : w.weight.flat()) zeros += v == 0 ? 1 : 0;
    SparseDecision d{m.layer, double(zeros) / double(w.weight.numel()), false, 0, 0};
    if (o.policy == SparsePolicy::always) {
      d.sparse = true;
    } else if (o.policy == SparsePolicy::min_sparsity) {
      d.sparse = d.sparsity >= o.min_sparsity;
    } else {
      require(op.last_input_shape().rank() > 0, "finalize_sparse: int8 layer '", m.layer,
              "' did not run in the forward pass");
      Tensor<std::uint8_t> x(op.last_input_shape());
      Rng rng(1);
      for (auto& v : x.flat()) v = static_cast<std::uint8_t>(rng.below(256));
      const quant::QView xv{std::as_const(x).view(), op.last_input_params()};
      auto time = [&](bool sparse) {
        op.set_sparse(w, sparse);
        return measure_latency([&] { (void)op.forward(xv, nullptr); }, o.repeats, 1).median_ms;
      };
      d.dense_ms = time(false);
      d.sparse_ms = time(true);
      d.sparse = o.sparse_pays(d.dense_ms, d.sparse_ms);
    }
    model.set_sparse(m.layer, d.sparse);
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace compressor::prune
