// Finalizing unstructured pruning: the masked dense layers become sparse
// deploy-time layers (sparse_layers.hpp) where that pays, and the model is
// saved in the sparse format and loaded back.
//
//   auto decisions = prune::finalize_sparse(model, masks, Shape{1, 112, 112, 3});
//   prune::save_sparse_model(model, "resnet_90.safetensors");
//   auto deployed = prune::load_sparse_model<models::ResNet18>("resnet_90.safetensors");
//
// Which layers turn sparse (SparsePolicy):
//   measured (default)  per layer, a timing probe at the layer's real input
//                       shape (from one forward pass of the model on zeros of
//                       the given input shape): the dense layer's forward and
//                       the sparse one's, median of `repeats` runs after one
//                       warm-up each, on the current thread count; sparse
//                       when at least min_speedup (default 1.1) times
//                       faster, so that near a tie, where the probe's noise
//                       decides, the dense layer stays. The times are in the
//                       decisions.
//   min_sparsity        sparse when the layer's sparsity >= min_sparsity (no
//                       timing; docs/pruning.md has the benchmark behind the
//                       default 0.7)
//   always              every masked layer (tests, file size)
// The model's other layers stay as they are. A converted model runs forward
// only (the sparse layers have no backward).
//
// save_sparse_model() writes io::save_checkpoint's file (with the channel
// plan) plus the list of sparse layers in the metadata (key
// "compressor.sparse_layers", a JSON array of names) and, for a deploy model
// without normalisation layers, e.g. one whose BatchNorms were all folded
// (quant::fp32_deploy_model, nn::fold_batchnorms), the key
// "compressor.batchnorms_folded" = "true"; load_sparse_model<M>() builds M
// from the plan, folds its BatchNorms if so marked, swaps in empty sparse
// layers sized from the file, loads, and packs them.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/io/json.hpp"
#include "compressor/nn/capabilities.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/nn/surgery.hpp"
#include "compressor/prune/mask.hpp"
#include "compressor/prune/report.hpp"
#include "compressor/prune/sparse_layers.hpp"

namespace compressor::prune {

enum class SparsePolicy : std::uint8_t { measured, min_sparsity, always };

struct FinalizeOptions {
  SparsePolicy policy = SparsePolicy::measured;
  double min_sparsity = 0.7;  ///< SparsePolicy::min_sparsity
  int repeats = 5;            ///< SparsePolicy::measured: timed runs per layer and kind
  /// SparsePolicy::measured: sparse when dense_ms >= min_speedup * sparse_ms.
  double min_speedup = 1.1;

  void check() const {
    require(repeats > 0, "FinalizeOptions::repeats must be positive, got ", repeats);
    check_ratio(min_sparsity, "FinalizeOptions::min_sparsity");
    require(std::isfinite(min_speedup) && min_speedup > 0,
            "FinalizeOptions::min_speedup must be a positive number, got ", min_speedup);
  }
  /// The measured policy's choice for a layer timed dense and sparse.
  bool sparse_pays(double dense_ms, double sparse_ms) const {
    return dense_ms >= min_speedup * sparse_ms;
  }
};

struct SparseDecision {
  std::string layer;
  double sparsity = 0;
  bool sparse = false;
  double dense_ms = 0, sparse_ms = 0;  ///< medians; 0 when not measured
};

inline constexpr std::string_view kSparseLayersKey = "compressor.sparse_layers";
inline constexpr std::string_view kBatchnormsFoldedKey = "compressor.batchnorms_folded";

/// Converts the layers of masks to sparse deploy-time layers per the policy
/// (their weights must hold the masks: prune, fine-tune with MaskedTraining);
/// input is the model's input shape for the timing probe. Returns one
/// decision per masked layer.
inline std::vector<SparseDecision> finalize_sparse(nn::Module& model, const MaskSet& masks,
                                                   const Shape& input,
                                                   const FinalizeOptions& o = {}) {
  o.check();
  require(masks.holds(model),
          "finalize_sparse: the model's weights do not hold the masks (a "
          "pruned weight is nonzero); apply them first");
  std::vector<LayerShape> shapes;
  if (o.policy == SparsePolicy::measured) shapes = output_shapes(model, input);
  std::vector<SparseDecision> out;
  for (const auto& m : masks.layers()) {
    auto& dense = nn::require_capability<nn::WeightedLayer>(*model.find(m.layer),
                                                            "a layer with weights", m.layer);
    SparseDecision d{m.layer, m.sparsity(), false, 0, 0};
    auto sparse = make_sparse(dense);
    if (o.policy == SparsePolicy::always) {
      d.sparse = true;
    } else if (o.policy == SparsePolicy::min_sparsity) {
      d.sparse = d.sparsity >= o.min_sparsity;
    } else {
      const Shape* y = nullptr;
      for (const auto& s : shapes)
        if (s.layer == m.layer) y = &s.output;
      require(y != nullptr, "finalize_sparse: '", m.layer, "' did not run in the forward pass");
      const Tensor<float> x(layer_input_shape(dense, *y), 0.25f);
      nn::Module& dm = *model.find(m.layer);
      const bool was_training = dm.is_training();
      dm.eval();
      d.dense_ms = measure_latency([&] { (void)dm.forward(x); }, o.repeats, 1).median_ms;
      d.sparse_ms = measure_latency([&] { (void)sparse->forward(x); }, o.repeats, 1).median_ms;
      dm.train(was_training);
      d.sparse = o.sparse_pays(d.dense_ms, d.sparse_ms);
    }
    if (d.sparse) model.replace(m.layer, std::move(sparse));
    out.push_back(std::move(d));
  }
  return out;
}

/// The names of the sparse deploy-time layers under model, in visit order.
inline std::vector<std::string> sparse_layer_names(nn::Module& model) {
  std::vector<std::string> names;
  model.visit([&](const std::string& name, nn::Module& m) {
    if (nn::as<SparseLayer>(m) != nullptr) names.push_back(name);
  });
  return names;
}

/// Saves model with its sparse layers in the sparse format (see the top),
/// and the channel plan of a PlannedModel (which lists the sparse layers).
inline void save_sparse_model(nn::Module& model, const std::filesystem::path& path) {
  io::json::Array names;
  std::vector<std::pair<std::string, std::string>> meta;
  const auto sparse = sparse_layer_names(model);
  for (const auto& n : sparse) names.emplace_back(n);
  meta.emplace_back(std::string(kSparseLayersKey), io::json::dump(io::json::Value(names)));
  // No normalisation left: a deploy model whose BatchNorms were folded (or a
  // model without any), which the loader folds the same way.
  bool has_normalization = false;
  model.visit([&](const std::string&, nn::Module& m) {
    has_normalization = has_normalization || nn::as<nn::Normalization>(m) != nullptr;
  });
  if (!has_normalization) meta.emplace_back(std::string(kBatchnormsFoldedKey), "true");
  if (auto* planned = nn::as<nn::PlannedModel>(model)) {
    meta.emplace_back(std::string(nn::ChannelPlan::kMetadataKey),
                      planned->channel_plan().to_json());
  }
  io::save_checkpoint(model, path, meta);
}

/// Builds M from the file's channel plan, folds its BatchNorms if the file is
/// so marked, swaps in its sparse layers, loads the file and packs them.
/// Throws IoError naming the file on a missing or malformed sparse-layer list
/// or fold mark, and the load_checkpoint errors otherwise.
template <class M>
requires std::derived_from<M, nn::Module> && std::constructible_from<M, const nn::ChannelPlan&>
    std::unique_ptr<M> load_sparse_model(const std::filesystem::path& path) {
  io::SafetensorsFile file = io::SafetensorsFile::open(path);
  auto model = std::make_unique<M>(io::read_channel_plan(file));
  const std::string* list = file.metadata_value(kSparseLayersKey);
  auto bad = [&](auto&&... what) {
    return IoError(compressor::detail::concat(file.source(), ": metadata '", kSparseLayersKey,
                                              "': ", what...));
  };
  if (list == nullptr) throw bad("missing; save the model with save_sparse_model()");
  if (const std::string* f = file.metadata_value(kBatchnormsFoldedKey)) {
    if (*f != "true")
      throw IoError(compressor::detail::concat(file.source(), ": metadata '", kBatchnormsFoldedKey,
                                               "': expected \"true\", got \"", *f, "\""));
    nn::fold_batchnorms(*model);
  }
  io::json::Value v;
  try {
    v = io::json::parse(*list);
  } catch (const Error& e) {
    throw bad("not valid JSON (", e.what(), ")");
  }
  if (!v.is_array()) throw bad("expected a JSON array of layer names");
  std::vector<SparseLayer*> loaded;
  for (const auto& e : v.as_array()) {
    if (!e.is_string()) throw bad("expected a JSON array of layer names");
    const std::string& name = e.as_string();
    nn::Module* m = model->find(name);
    auto* w = m ? nn::as<nn::WeightedLayer>(*m) : nullptr;
    if (w == nullptr) throw bad("'", name, "' is not a layer with weights of the ", M::kTypeName);
    const io::TensorInfo* t = file.find(name + ".weight_values");
    if (t == nullptr || t->dims.size() != 1)
      throw bad("no 1-D tensor '", name, ".weight_values' in the file");
    std::unique_ptr<nn::Module> shell;
    if (w->weight().rank() == 4)
      shell = std::make_unique<SparseConv2d>(SparseConv2d::options_of(*w), t->dims[0]);
    else
      shell = std::make_unique<SparseLinear>(w->in_channels(), w->out_channels(), w->has_bias(),
                                             t->dims[0]);
    loaded.push_back(nn::as<SparseLayer>(*shell));
    model->replace(name, std::move(shell));
  }
  io::load_checkpoint(*model, file);
  for (SparseLayer* s : loaded) s->repack();
  return model;
}

}  // namespace compressor::prune
