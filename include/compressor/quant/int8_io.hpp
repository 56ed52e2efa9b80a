// Saving and loading int8 models (docs/quantization.md, "Saving and loading
// int8 models"). The file is safetensors (io/safetensors.hpp), written
// atomically:
//
//   quant::save_int8_model(int8, model.channel_plan(), "cnn.int8.safetensors");
//   quant::Int8Model a = quant::load_int8_model<models::CifarCnn>("cnn.int8.safetensors");
//   quant::Int8Model b = quant::load_int8_model("cnn.int8.safetensors");  // type from the file
//
// Tensors, by the float model's names:
//
//   <layer>.weight          I8   (O, KH, KW, I) for a conv (OHWI), (O, I) for a linear layer
//   <layer>.weight_scale    F32  (O)      per output channel: real = scale[o] * q
//   <layer>.bias            I32  (O)      at s_in * s_w[o]; only for a layer with a bias
//   act.<point>.scale       F32  (1)      activation parameters of a quantization point
//   act.<point>.zero_point  I32  (1)
//
// A float island (PtqConfig::float_islands: a layer with weights kept in
// float) stores its float values instead of the first three:
//
//   <layer>.weight          F32  the float weight, same layout and shape
//   <layer>.bias            F32  (O)      only for a layer with a bias
//
// with its layers listed, comma-separated, in the metadata "float_islands";
// such a file has format_version 2 (a file without islands stays version 1,
// which every reader of version 1 reads as before).
//
// A layer on the sparse int8 kernel (Int8Model::set_sparse, usually through
// prune::finalize_sparse) stores its weight as its nonzeros (CSR over output
// channels, the layout of the fp32 sparse checkpoint, prune/sparse_layers.hpp)
// instead of <layer>.weight:
//
//   <layer>.weight_values   I8   (nnz)    the nonzeros, row by row
//   <layer>.weight_indices  I32  (nnz)    their column in the (O, KH*KW*I)
//                                          matrix of the OHWI weight, ascending
//                                          per row (a linear layer: the input index)
//   <layer>.weight_row_ptr  I64  (O + 1)  row o is [row_ptr[o], row_ptr[o+1])
//
// (weight_scale and bias as above), with the metadata "sparse_layers": a JSON
// object of each such layer's dense weight shape, {"features.4": [64, 3, 3,
// 32], "fc": [10, 256]}, which the loader checks the channel plan and the
// model against. 5 bytes per nonzero against 1 per dense weight: at 90%
// sparsity the weight takes half the bytes, below 80% more than dense, so a
// sparse layer whose CSR would not be smaller keeps its dense <layer>.weight
// (listed in "sparse_layers" all the same: it loads onto the sparse kernel).
// Such a file has format_version 3
// (with or without float islands); files without sparse layers are written
// as version 1 or 2 exactly as before, and versions 1 and 2 load as before.
// The loader checks the CSR (row_ptr from 0 to nnz without decreasing,
// indices ascending inside [0, K), values on the weight grid, nnz the same
// in values and indices) and restores the sparse ops.
//
// A point can have a layer's name ("fc" is both the classifier and its output
// point); the "act." prefix keeps the two families apart for a reader
// ("fc.weight_scale" is the classifier's, "act.fc.scale" its output's). The
// names cannot collide in any model: a layer tensor's last component is
// "weight", "weight_scale" or "bias", a point tensor's is "scale" or
// "zero_point". Metadata: format, format_version, scheme (one line, for
// people), weight_grid, weight_qmax, model (the type name) and the channel
// plan (nn::ChannelPlan::kMetadataKey), completed to every layer with weights.
//
// weight_grid is "narrow" (weights in [-64, 64], weight_qmax "64") or "full"
// ([-127, 127], "127"): the grid the weights were quantized on, which the
// loader checks every weight against and packs them on. Both grids compute
// bit-identically on every kernel path. The key and its check were in
// version 1 from the start, so the full grid needed no new version: a file of
// either grid is version 1 (2 with float islands); a reader that knows only
// the narrow grid refuses a full-grid file naming its metadata 'weight_grid'
// rather than misreading it, and every narrow file written before the full
// grid existed loads as before.
//
// Loading rebuilds the float skeleton from the plan (M(plan), BatchNorms
// folded: this gives the structure, names, kernel geometry and which layers
// have a bias; its float values are never used) and converts it with
// convert_with() reading every number from the file. Nothing is trusted: the
// metadata, the plan against the file's tensors (before the skeleton is
// built), every expected tensor present with its dtype and shape, nothing
// else in the file, and every value on its grid (see check lists below). The
// result is a complete model or an exception (IoError, ShapeError or
// ValueError) whose message starts with the file name and names the tensor
// and what was expected.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <new>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/io/checkpoint.hpp"
#include "compressor/io/safetensors.hpp"
#include "compressor/kernels/int8_traits.hpp"
#include "compressor/models.hpp"
#include "compressor/nn/channel_plan.hpp"
#include "compressor/nn/init.hpp"
#include "compressor/nn/surgery.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/int8_model.hpp"

namespace compressor::quant {

/// Metadata of an int8 model file.
struct Int8FileFormat {
  static constexpr std::string_view kFormat = "compressor.int8_model";
  static constexpr std::string_view kVersion = "1";
  /// The version of a file with float islands (kIslandsKey).
  static constexpr std::string_view kIslandVersion = "2";
  static constexpr std::string_view kIslandsKey = "float_islands";
  /// The version of a file with sparse layers (kSparseKey), islands or not.
  static constexpr std::string_view kSparseVersion = "3";
  static constexpr std::string_view kSparseKey = "sparse_layers";
  static constexpr std::string_view kFormatKey = "format";
  static constexpr std::string_view kVersionKey = "format_version";
  static constexpr std::string_view kSchemeKey = "scheme";
  static constexpr std::string_view kGridKey = "weight_grid";
  static constexpr std::string_view kQMaxKey = "weight_qmax";
  static constexpr std::string_view kModelKey = "model";

  static std::string weight(const std::string& layer) { return layer + ".weight"; }
  static std::string weight_scale(const std::string& layer) { return layer + ".weight_scale"; }
  static std::string bias(const std::string& layer) { return layer + ".bias"; }
  static std::string weight_values(const std::string& layer) { return layer + ".weight_values"; }
  static std::string weight_indices(const std::string& layer) { return layer + ".weight_indices"; }
  static std::string weight_row_ptr(const std::string& layer) { return layer + ".weight_row_ptr"; }
  static std::string point_scale(const std::string& point) { return "act." + point + ".scale"; }
  static std::string point_zero_point(const std::string& point) {
    return "act." + point + ".zero_point";
  }

  /// The "scheme" metadata: the quantization scheme in one line.
  static std::string scheme(WeightGrid grid) {
    const std::string q = std::to_string(weight_qmax(grid));
    return "activations uint8 asymmetric per tensor (act.<point>.scale F32, "
           "act.<point>.zero_point I32); weights int8 symmetric per output channel on [-" +
           q + ", " + q +
           "] (<layer>.weight I8 OHWI or (out, in), <layer>.weight_scale F32); bias int32 at "
           "s_in*s_w (<layer>.bias I32); int32 accumulation, requantization by "
           "kernels/requant.hpp (docs/quantization.md)";
  }
};

namespace internal {

/// The largest |bias| with which a layer of K products per output, with
/// weights on `grid` (|w| <= qmax), cannot overflow its int32 accumulator:
/// the kernels add the bias, the zero-point correction (|za * rowsum| <= 255 *
/// qmax * K) and the products (|sum x*w| <= 255 * qmax * K), so |bias| <=
/// 2^31 - 1 - 2 * 255 * qmax * K (0 when K is so large that nothing is left).
inline std::int64_t max_safe_bias(std::int64_t k, WeightGrid grid) {
  const std::int64_t per =
      2 * std::int64_t{kernels::Int8Traits::kActivationMax} *
      std::max(-std::int64_t{kernels::weight_min(grid)}, std::int64_t{kernels::weight_max(grid)});
  const std::int64_t room = std::int64_t{std::numeric_limits<std::int32_t>::max()} - per * k;
  return std::max<std::int64_t>(0, room);
}

/// The channel plan completed to every layer of m (in the int8 model's
/// order, which is the float model's), checked against m.
inline nn::ChannelPlan complete_plan(const Int8Model& m, const nn::ChannelPlan& plan) {
  const std::string& model = m.summary().model;
  require(plan.model == model, "save_int8_model: the channel plan is for model '", plan.model,
          "' but the int8 model was converted from a '", model, "'");
  nn::ChannelPlan out;
  out.model = plan.model;
  out.options = plan.options;
  for (const auto& [name, q] : m.layer_weights()) out.channels.emplace_back(name, q.weight.dim(0));
  for (const auto& [name, layer] : m.float_island_layers())
    if (const auto* w = nn::as<nn::WeightedLayer>(*layer))
      out.channels.emplace_back(name, w->out_channels());
  for (const auto& [name, c] : plan.channels) {
    const std::int64_t* have = out.find(name);
    require(have != nullptr, "save_int8_model: layer '", name,
            "' of the channel plan is not a layer of the int8 ", model);
    require(*have == c, "save_int8_model: the channel plan gives layer '", name, "' ", c,
            " output channels but the int8 ", model, " has ", *have);
  }
  return out;
}

inline const LayerSummary* layer_summary(const ConversionSummary& s, const std::string& name) {
  for (const auto& l : s.layers)
    if (l.name == name) return &l;
  return nullptr;
}

}  // namespace internal

/// The file content of an int8 model (what save_int8_model writes).
inline io::SafetensorsWriter int8_model_writer(const Int8Model& m, const nn::ChannelPlan& plan) {
  using F = Int8FileFormat;
  const ConversionSummary& s = m.summary();
  std::string islands;
  for (const auto& [name, layer] : m.float_island_layers()) {
    require(nn::as<nn::WeightedLayer>(*layer) != nullptr, "save_int8_model: float island '", name,
            "' is a ", layer->type_name(), "; an int8 file stores the float values of float ",
            "islands that are layers with weights only");
    islands += (islands.empty() ? "" : ",") + name;
  }
  require(m.float_island_layers().size() == s.float_layers.size(),
          "save_int8_model: the summary lists ", s.float_layers.size(), " float islands, the ",
          "model holds ", m.float_island_layers().size());
  const nn::ChannelPlan full = internal::complete_plan(m, plan);
  const std::vector<std::string> sparse = m.sparse_layers();
  io::json::Object sparse_shapes;
  for (const auto& [name, q] : m.layer_weights()) {
    if (std::find(sparse.begin(), sparse.end(), name) == sparse.end()) continue;
    const LayerSummary* l = internal::layer_summary(s, name);
    require(l != nullptr, "save_int8_model: layer '", name, "' is missing from the summary");
    io::json::Array dims;
    if (l->kind == "linear")
      dims = {io::json::Value(q.weight.dim(0)), io::json::Value(q.weight.dim(3))};
    else
      for (const std::int64_t d : q.weight.shape().dims()) dims.emplace_back(d);
    sparse_shapes.emplace_back(name, io::json::Value(std::move(dims)));
  }
  io::SafetensorsWriter w;
  w.set_metadata(std::string(F::kFormatKey), std::string(F::kFormat));
  w.set_metadata(std::string(F::kVersionKey), std::string(!sparse.empty()   ? F::kSparseVersion
                                                          : islands.empty() ? F::kVersion
                                                                            : F::kIslandVersion));
  if (!islands.empty()) w.set_metadata(std::string(F::kIslandsKey), islands);
  if (!sparse.empty())
    w.set_metadata(std::string(F::kSparseKey),
                   io::json::dump(io::json::Value(std::move(sparse_shapes))));
  w.set_metadata(std::string(F::kSchemeKey), F::scheme(s.grid));
  w.set_metadata(std::string(F::kGridKey), std::string(to_string(s.grid)));
  w.set_metadata(std::string(F::kQMaxKey), std::to_string(weight_qmax(s.grid)));
  w.set_metadata(std::string(F::kModelKey), s.model);
  w.set_metadata(std::string(nn::ChannelPlan::kMetadataKey), full.to_json());
  for (const auto& [name, q] : m.layer_weights()) {
    const LayerSummary* l = internal::layer_summary(s, name);
    require(l != nullptr, "save_int8_model: layer '", name, "' is missing from the summary");
    const std::int64_t o = q.weight.dim(0);
    const auto nonzeros = static_cast<std::int64_t>(std::count_if(
        q.weight.flat().begin(), q.weight.flat().end(), [](std::int8_t v) { return v != 0; }));
    // CSR: 1 + 4 bytes per nonzero and 8 per row pointer, against 1 per weight.
    const bool csr = std::find(sparse.begin(), sparse.end(), name) != sparse.end() &&
                     5 * nonzeros + 8 * (o + 1) < q.weight.numel();
    if (csr) {
      // CSR of the (O, K) matrix: the nonzeros of each output channel in k order.
      const std::int64_t k = q.weight.numel() / o;
      std::vector<std::int8_t> values;
      std::vector<std::int32_t> indices;
      std::vector<std::int64_t> row_ptr{0};
      for (std::int64_t r = 0; r < o; ++r) {
        for (std::int64_t c = 0; c < k; ++c)
          if (const std::int8_t v = q.weight.data()[r * k + c]; v != 0) {
            values.push_back(v);
            indices.push_back(static_cast<std::int32_t>(c));
          }
        row_ptr.push_back(static_cast<std::int64_t>(values.size()));
      }
      const Shape nnz{static_cast<std::int64_t>(values.size())};
      w.add<std::int8_t>(F::weight_values(name), TensorView<const std::int8_t>(values.data(), nnz));
      w.add<std::int32_t>(F::weight_indices(name),
                          TensorView<const std::int32_t>(indices.data(), nnz));
      w.add<std::int64_t>(F::weight_row_ptr(name),
                          TensorView<const std::int64_t>(row_ptr.data(), Shape{o + 1}));
    } else if (l->kind == "linear") {  // held as a 1x1 convolution (O, 1, 1, I)
      w.add<std::int8_t>(F::weight(name), q.weight.reshape(Shape{o, q.weight.dim(3)}));
    } else {
      w.add<std::int8_t>(F::weight(name), q.weight.view());
    }
    w.add<float>(F::weight_scale(name), TensorView<const float>(q.scales.data(), Shape{o}));
    if (!q.bias.empty())
      w.add<std::int32_t>(F::bias(name), TensorView<const std::int32_t>(q.bias.data(), Shape{o}));
  }
  for (const auto& [name, layer] : m.float_island_layers()) {
    auto& fl = *nn::as<nn::WeightedLayer>(*layer);
    w.add<float>(F::weight(name), fl.weight().view());
    if (fl.has_bias()) w.add<float>(F::bias(name), fl.bias().view());
  }
  for (const auto& p : s.points) {
    w.add<float>(F::point_scale(p.name), Tensor<float>(Shape{1}, p.q.scale));
    w.add<std::int32_t>(F::point_zero_point(p.name),
                        Tensor<std::int32_t>(Shape{1}, p.q.zero_point));
  }
  return w;
}

/// Writes m atomically to path (temp file, fsync, rename). plan is the channel
/// plan of the float model m was converted from (model.channel_plan()); it is
/// stored completed to every layer and must agree with m (ValueError).
inline void save_int8_model(const Int8Model& m, const nn::ChannelPlan& plan,
                            const std::filesystem::path& path) {
  int8_model_writer(m, plan).write(path);
}

namespace internal {

/// Runs f; an Error whose message does not start with `where` is rethrown as
/// the same class with "where: " in front.
template <class F>
decltype(auto) with_source(const std::string& where, F&& f) {
  auto prefixed = [&](const Error& e) {
    const std::string what = e.what();
    return what.rfind(where, 0) == 0 ? what : where + ": " + what;
  };
  try {
    return f();
  } catch (const IoError& e) {
    throw IoError(prefixed(e));
  } catch (const ShapeError& e) {
    throw ShapeError(prefixed(e));
  } catch (const ValueError& e) {
    throw ValueError(prefixed(e));
  } catch (const Error& e) {
    throw Error(prefixed(e));
  }
}

/// What the metadata says.
struct Int8FileHeader {
  WeightGrid grid = WeightGrid::narrow;
  std::string model;
  nn::ChannelPlan plan;
  std::set<std::string> islands;  ///< layers stored in float (version 2, or 3)
  /// Layers on the sparse kernel (version 3), with their dense weight shape.
  std::vector<std::pair<std::string, Shape>> sparse;
  /// Those of them stored as their dense <layer>.weight (not smaller as CSR).
  std::set<std::string> sparse_stored_dense;
  /// A sparse layer whose weight the file holds as CSR.
  bool csr(const std::string& layer) const {
    return sparse_shape(layer) != nullptr && !sparse_stored_dense.contains(layer);
  }

  const Shape* sparse_shape(const std::string& layer) const {
    for (const auto& [n, sh] : sparse)
      if (n == layer) return &sh;
    return nullptr;
  }
};

/// Parses the metadata "sparse_layers": {"layer": [dims...], ...}, each
/// shape of rank 2 or 4 with positive dimensions, names distinct.
inline std::vector<std::pair<std::string, Shape>> parse_sparse_layers(const std::string& where,
                                                                      const std::string& text) {
  using F = Int8FileFormat;
  auto bad = [&](auto&&... what) {
    return IoError(
        compressor::detail::concat(where, ": metadata '", F::kSparseKey, "': ", what...));
  };
  io::json::Value v;
  try {
    v = io::json::parse(text);
  } catch (const Error& e) {
    throw bad("not valid JSON (", e.what(), ")");
  }
  if (!v.is_object() || v.as_object().empty())
    throw bad(
        "expected a non-empty JSON object of layer names and their weight shapes, e.g. "
        "{\"fc\": [10, 256]}");
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& [name, dims] : v.as_object()) {
    for (const auto& [n, sh] : out)
      if (n == name) throw bad("layer '", name, "' is listed twice");
    if (!dims.is_array() || (dims.as_array().size() != 2 && dims.as_array().size() != 4))
      throw bad("the shape of '", name, "' is not an array of 2 or 4 dimensions");
    std::vector<std::int64_t> d;
    for (const auto& e : dims.as_array()) {
      if (!e.is_int64() || e.as_int64() <= 0 || e.as_int64() > INT32_MAX)
        throw bad("the shape of '", name, "' has a dimension that is no positive 32-bit integer");
      d.push_back(e.as_int64());
    }
    std::int64_t n = 1;
    for (const std::int64_t x : d) {
      if (n > INT32_MAX / x) throw bad("the shape of '", name, "' has more than 2^31 elements");
      n *= x;
    }
    out.emplace_back(name, Shape(std::span<const std::int64_t>(d)));
  }
  return out;
}

inline const std::string& required_metadata(const io::SafetensorsFile& f, std::string_view key,
                                            std::string_view expected) {
  const std::string* v = f.metadata_value(key);
  if (v == nullptr)
    throw IoError(compressor::detail::concat(f.source(), ": no metadata '", key, "' (expected ",
                                             expected, ")"));
  return *v;
}

/// Checks format, version, grid, qmax and model; reads the plan.
inline Int8FileHeader read_int8_header(const io::SafetensorsFile& f) {
  using F = Int8FileFormat;
  const std::string& where = f.source();
  const std::string* format = f.metadata_value(F::kFormatKey);
  if (format == nullptr || *format != F::kFormat)
    throw IoError(compressor::detail::concat(
        where, ": not an int8 model file: metadata 'format' is ",
        format ? "'" + *format + "'" : std::string("missing"), ", expected '", F::kFormat,
        "' (a float checkpoint loads with io::load_checkpoint or io::load_model)"));
  const std::string& version = required_metadata(f, F::kVersionKey, "'1', '2' or '3'");
  if (version != F::kVersion && version != F::kIslandVersion && version != F::kSparseVersion)
    throw IoError(compressor::detail::concat(where, ": int8 model format_version '", version,
                                             "' is not supported: this library reads versions ",
                                             F::kVersion, ", ", F::kIslandVersion, " and ",
                                             F::kSparseVersion));
  Int8FileHeader h;
  const std::string* islands = f.metadata_value(F::kIslandsKey);
  const std::string* sparse = f.metadata_value(F::kSparseKey);
  if ((sparse != nullptr) != (version == F::kSparseVersion))
    throw IoError(compressor::detail::concat(
        where, ": format_version '", version, "' ", sparse ? "with" : "without", " metadata '",
        F::kSparseKey, "' (version ", F::kSparseVersion, " files list their sparse layers, ",
        "versions ", F::kVersion, " and ", F::kIslandVersion, " have none)"));
  if (version != F::kSparseVersion && (islands != nullptr) != (version == F::kIslandVersion))
    throw IoError(compressor::detail::concat(
        where, ": format_version '", version, "' ", islands ? "with" : "without", " metadata '",
        F::kIslandsKey, "' (version ", F::kIslandVersion, " files list their float islands, ",
        "version ", F::kVersion, " files have none)"));
  if (sparse != nullptr) h.sparse = parse_sparse_layers(where, *sparse);
  for (const auto& entry : h.sparse)  // a dense weight and no CSR values: stored dense
    if (f.find(F::weight(entry.first)) != nullptr &&
        f.find(F::weight_values(entry.first)) == nullptr)
      h.sparse_stored_dense.insert(entry.first);
  if (islands != nullptr) {
    std::size_t start = 0;
    while (start <= islands->size()) {
      const std::size_t end = std::min(islands->find(',', start), islands->size());
      const std::string name = islands->substr(start, end - start);
      if (name.empty() || !h.islands.insert(name).second)
        throw IoError(compressor::detail::concat(where, ": metadata '", F::kIslandsKey, "' is '",
                                                 *islands, "': expected distinct layer names ",
                                                 "separated by commas"));
      start = end + 1;
    }
  }
  const std::string& grid = required_metadata(f, F::kGridKey, "'narrow' or 'full'");
  try {
    h.grid = weight_grid_from_string(grid);
  } catch (const ValueError& e) {
    throw IoError(compressor::detail::concat(where, ": metadata 'weight_grid': ", e.what()));
  }
  const std::int32_t qmax = weight_qmax(h.grid);
  const std::string& qmax_text = required_metadata(f, F::kQMaxKey, std::to_string(qmax));
  if (qmax_text != std::to_string(qmax))
    throw IoError(compressor::detail::concat(where, ": metadata 'weight_qmax' is '", qmax_text,
                                             "', expected '", qmax, "' for weight grid '", grid,
                                             "'"));
  h.model = required_metadata(f, F::kModelKey, "the model's type name");
  if (f.metadata_value(nn::ChannelPlan::kMetadataKey) == nullptr)
    throw IoError(compressor::detail::concat(
        where, ": no channel plan in the metadata (key '", nn::ChannelPlan::kMetadataKey,
        "'): an int8 model file holds the plan of the model it was converted from, which gives "
        "its structure"));
  h.plan = io::read_channel_plan(f);
  if (h.plan.model != h.model)
    throw IoError(compressor::detail::concat(where, ": metadata 'model' is '", h.model,
                                             "' but the channel plan is for '", h.plan.model, "'"));
  for (const auto& name : h.islands)
    if (h.plan.find(name) == nullptr)
      throw IoError(compressor::detail::concat(where, ": float island '", name, "' (metadata '",
                                               F::kIslandsKey,
                                               "') is no layer of the channel plan"));
  for (const auto& [name, shape] : h.sparse)
    if (h.plan.find(name) == nullptr || h.islands.contains(name))
      throw IoError(
          compressor::detail::concat(where, ": sparse layer '", name, "' (metadata '",
                                     F::kSparseKey, "') is no int8 layer of the ", "channel plan",
                                     h.islands.contains(name) ? " (it is a float island)" : ""));
  return h;
}

/// The plan against the file, before anything is built from it: every layer
/// of the plan has its int8 weight in the file with the plan's output
/// channels, and the input channels (option in_channels) are some weight's.
/// So every count the skeleton is built from is a dimension of a tensor the
/// file holds, and a hostile plan cannot ask for an arbitrary model.
inline void check_plan_against_file(io::SafetensorsFile& f, const Int8FileHeader& h) {
  const std::string& where = f.source();
  const nn::ChannelPlan& plan = h.plan;
  const std::set<std::string>& islands = h.islands;
  std::int64_t widest = 0;  // input channels of the weights
  for (const auto& [layer, c] : plan.channels) {
    if (const Shape* sh = h.sparse_shape(layer)) {
      if ((*sh)[0] != c)
        throw ShapeError(
            compressor::detail::concat(where, ": metadata '", Int8FileFormat::kSparseKey,
                                       "' gives layer '", layer, "' the weight shape ", sh->str(),
                                       ", but the channel plan gives it ", c, " output channels"));
      widest = std::max(widest, (*sh)[sh->rank() - 1]);
      continue;
    }
    const std::string name = Int8FileFormat::weight(layer);
    const io::TensorInfo* t = f.find(name);
    if (t == nullptr)
      throw IoError(compressor::detail::concat(where, ": missing tensor '", name,
                                               "' (the int8 weight of layer '", layer,
                                               "' of the channel plan)"));
    f.check_dtype(*t, islands.contains(layer) ? DType::f32 : DType::i8);
    if ((t->dims.size() != 2 && t->dims.size() != 4) || t->dims[0] != c)
      throw ShapeError(compressor::detail::concat(
          where, ": tensor '", name, "' has shape ", t->shape_str(),
          ", but the channel plan gives layer '", layer, "' ", c, " output channels (expected (", c,
          ", KH, KW, I) or (", c, ", I))"));
  }
  if (const io::json::Value* in = plan.option("in_channels"); in && in->is_int64()) {
    for (const auto& t : f.tensors())
      if ((t.dtype == DType::i8 || t.dtype == DType::f32) && t.dims.size() >= 2)
        widest = std::max(widest, t.dims.back());
    if (in->as_int64() > widest)
      throw IoError(compressor::detail::concat(
          where, ": the channel plan's option in_channels = ", in->as_int64(),
          " is no weight's input channel count (the widest in the file is ", widest, ")"));
  }
}

/// One tensor the skeleton expects.
struct ExpectedTensor {
  std::string name;
  DType dtype;
  Shape shape;
  std::string what;         ///< "the OHWI int8 weight of conv 'features.0'"
  bool any_length = false;  ///< 1-D of any length (a sparse layer's nonzeros)
};

/// Every tensor of the file for the (folded) skeleton and its points, in order.
inline std::vector<ExpectedTensor> expected_tensors(nn::Module& skeleton,
                                                    const std::vector<nn::QuantPoint>& points,
                                                    const Int8FileHeader& h) {
  const std::set<std::string>& islands = h.islands;
  using F = Int8FileFormat;
  std::vector<ExpectedTensor> out;
  skeleton.visit([&](const std::string& path, nn::Module& m) {
    auto* w = nn::as<nn::WeightedLayer>(m);
    if (w == nullptr) return;
    const bool conv = w->weight().rank() == 4;
    const std::int64_t o = w->out_channels();
    const std::string who = std::string(conv ? "conv '" : "linear layer '") + path + "'";
    if (islands.contains(path)) {
      out.push_back({F::weight(path), DType::f32, w->weight().shape(),
                     "the float weight of float island " + who});
      if (w->has_bias())
        out.push_back(
            {F::bias(path), DType::f32, Shape{o}, "the float bias of float island " + who});
      return;
    }
    if (h.csr(path)) {
      out.push_back({F::weight_values(path), DType::i8, Shape{0},
                     "the nonzero int8 weights of sparse " + who, true});
      out.push_back({F::weight_indices(path), DType::i32, Shape{0},
                     "the column indices of the nonzero weights of sparse " + who, true});
      out.push_back({F::weight_row_ptr(path), DType::i64, Shape{o + 1},
                     "the row pointers of the nonzero weights of sparse " + who});
    } else {
      out.push_back(
          {F::weight(path), DType::i8, w->weight().shape(),
           std::string(conv ? "the OHWI int8 weight of " : "the (out, in) int8 weight of ") + who});
    }
    out.push_back({F::weight_scale(path), DType::f32, Shape{o},
                   "the per-output-channel weight scales of " + who});
    if (w->has_bias())
      out.push_back({F::bias(path), DType::i32, Shape{o}, "the int32 bias of " + who});
  });
  for (const auto& p : points) {
    out.push_back({F::point_scale(p.name), DType::f32, Shape{1},
                   "the activation scale of quantization point '" + p.name + "'"});
    out.push_back({F::point_zero_point(p.name), DType::i32, Shape{1},
                   "the activation zero point of quantization point '" + p.name + "'"});
  }
  return out;
}

/// Presence, dtype and shape of every expected tensor, and nothing else in the file.
inline void check_structure(io::SafetensorsFile& f, const std::vector<ExpectedTensor>& expected,
                            std::string_view model) {
  const std::string& where = f.source();
  std::vector<std::string> missing;
  std::set<std::string> names;
  for (const auto& e : expected) {
    names.insert(e.name);
    if (!f.contains(e.name))
      missing.push_back(compressor::detail::concat("'", e.name, "' (", e.what, ", ",
                                                   dtype_name(e.dtype), " ",
                                                   e.any_length ? "(nnz)" : e.shape.str(), ")"));
  }
  if (!missing.empty())
    throw IoError(compressor::detail::concat(where, ": ", missing.size(), " tensor(s) of the int8 ",
                                             model,
                                             " are missing: ", io::detail::item_list(missing)));
  std::vector<std::string> unexpected;
  for (const auto& t : f.tensors())
    if (!names.count(t.name)) unexpected.push_back(t.name);
  if (!unexpected.empty())
    throw IoError(compressor::detail::concat(
        where, ": ", unexpected.size(),
        " tensor(s) in the file belong to no layer or point of the int8 ", model,
        " built from its channel plan: ", io::detail::name_list(unexpected)));
  for (const auto& e : expected) {
    const io::TensorInfo& t = *f.find(e.name);
    if (!t.dtype || *t.dtype != e.dtype)
      throw IoError(compressor::detail::concat(where, ": tensor '", e.name, "' has dtype ",
                                               t.dtype_name, ", expected ", dtype_name(e.dtype),
                                               " (", e.what, ")"));
    if (e.any_length ? t.dims.size() != 1
                     : t.dims.size() != static_cast<std::size_t>(e.shape.rank()) ||
                           !std::equal(t.dims.begin(), t.dims.end(), e.shape.dims().begin()))
      throw ShapeError(compressor::detail::concat(
          where, ": tensor '", e.name, "' has shape ", t.shape_str(), ", expected ",
          e.any_length ? "(nnz)" : e.shape.str(), " (", e.what, ")"));
  }
}

/// ConvertSource reading a checked file: each value is validated as it is read.
class FileSource final : public ConvertSource {
 public:
  FileSource(io::SafetensorsFile& f, WeightGrid grid, const Int8FileHeader& h)
      : f_(f), grid_(grid), h_(h) {}

  QuantParams point(const std::string& name) override {
    for (const auto& [n, q] : points_)
      if (n == name) return q;
    const std::string sn = Int8FileFormat::point_scale(name);
    const std::string zn = Int8FileFormat::point_zero_point(name);
    const Tensor<float> s = read<float>(sn, Shape{1});
    const Tensor<std::int32_t> z = read<std::int32_t>(zn, Shape{1});
    check_scale(sn, s[0], 0);
    constexpr std::int32_t lo = kernels::Int8Traits::kActivationMin;
    constexpr std::int32_t hi = kernels::Int8Traits::kActivationMax;
    if (z[0] < lo || z[0] > hi)
      throw ValueError(compressor::detail::concat(f_.source(), ": tensor '", zn, "' is ", z[0],
                                                  ", expected a uint8 zero point in [", lo, ", ",
                                                  hi, "]"));
    const QuantParams q{s[0], z[0]};
    points_.emplace_back(name, q);
    return q;
  }

  QuantizedWeights weights(const std::string& name, nn::WeightedLayer& layer,
                           QuantParams) override {
    using F = Int8FileFormat;
    const std::string& where = f_.source();
    const bool conv = layer.weight().rank() == 4;
    const std::int64_t o = layer.out_channels(), i = layer.in_channels();
    QuantizedWeights q;
    std::string wn = F::weight(name);
    if (const Shape* sh = h_.sparse_shape(name)) {
      if (!(*sh == layer.weight().shape()))
        throw ShapeError(compressor::detail::concat(
            where, ": metadata '", F::kSparseKey, "' gives sparse layer '", name,
            "' the weight shape ", sh->str(), ", but the model built from the channel plan has ",
            layer.weight().shape().str()));
    }
    if (h_.csr(name)) {
      wn = F::weight_values(name);
      q.weight = read_sparse(name, layer.weight().shape());
    } else {
      q.weight = read<std::int8_t>(wn, layer.weight().shape());
    }
    const std::int32_t lo = kernels::weight_min(grid_), hi = kernels::weight_max(grid_);
    const std::int64_t per = q.weight.numel() / o;
    for (std::int64_t k = 0; k < q.weight.numel(); ++k)
      if (q.weight[k] < lo || q.weight[k] > hi)
        throw ValueError(compressor::detail::concat(
            where, ": tensor '", wn, "': weight ", int(q.weight[k]), " (output channel ", k / per,
            ", element ", k, ") is outside the file's weight grid '", to_string(grid_), "' [", lo,
            ", ", hi, "] (metadata 'weight_grid')"));
    q.grid = grid_;
    if (!conv) q.weight = Tensor<std::int8_t>(std::as_const(q.weight).reshape(Shape{o, 1, 1, i}));
    const std::string sn = F::weight_scale(name);
    const Tensor<float> s = read<float>(sn, Shape{o});
    for (std::int64_t c = 0; c < o; ++c) check_scale(sn, s[c], c);
    q.scales.assign(s.data(), s.data() + o);
    if (layer.has_bias()) {
      const std::string bn = F::bias(name);
      const Tensor<std::int32_t> b = read<std::int32_t>(bn, Shape{o});
      const std::int64_t limit = max_safe_bias(per, grid_);
      for (std::int64_t c = 0; c < o; ++c)
        if (std::abs(std::int64_t{b[c]}) > limit)
          throw ValueError(compressor::detail::concat(
              where, ": tensor '", bn, "': bias ", b[c], " of output channel ", c, " is outside [-",
              limit, ", ", limit, "], where the int32 accumulator of ", per,
              " products per output cannot overflow"));
      q.bias.assign(b.data(), b.data() + o);
    }
    q.stride = layer.kernel().stride;
    q.padding = layer.kernel().padding;
    layers_.insert(name);
    return q;
  }

  std::size_t layers_read() const { return layers_.size(); }
  std::size_t points_read() const { return points_.size(); }

 private:
  template <TensorElement T>
  Tensor<T> read(const std::string& name, const Shape& want) {
    const io::TensorInfo* t = f_.find(name);
    if (t == nullptr)
      throw IoError(compressor::detail::concat(f_.source(), ": missing tensor '", name, "' (",
                                               dtype_name(dtype_of<T>()), " ", want.str(), ")"));
    f_.check_dtype(*t, dtype_of<T>());
    if (t->dims.size() != static_cast<std::size_t>(want.rank()) ||
        !std::equal(t->dims.begin(), t->dims.end(), want.dims().begin()))
      throw ShapeError(compressor::detail::concat(f_.source(), ": tensor '", name, "' has shape ",
                                                  t->shape_str(), ", expected ", want.str()));
    return f_.read<T>(*t);
  }

  /// The dense (O, ...) weight of sparse layer `name` from its CSR tensors,
  /// checked: nnz the same in values and indices and at most O * K, row_ptr
  /// from 0 to nnz without decreasing, indices ascending inside [0, K).
  Tensor<std::int8_t> read_sparse(const std::string& name, const Shape& shape) {
    using F = Int8FileFormat;
    const std::string vn = F::weight_values(name), in = F::weight_indices(name),
                      rn = F::weight_row_ptr(name);
    const std::int64_t o = shape[0], k = shape.numel() / o;
    const io::TensorInfo* vt = f_.find(vn);
    const io::TensorInfo* it = f_.find(in);
    auto bad = [&](const std::string& tensor, auto&&... what) {
      return ValueError(compressor::detail::concat(
          f_.source(), ": tensor '", tensor, "' of sparse ", "layer '", name, "': ", what...));
    };
    if (vt == nullptr || it == nullptr || vt->dims.size() != 1 || it->dims.size() != 1)
      throw IoError(compressor::detail::concat(f_.source(), ": sparse layer '", name,
                                               "' needs 1-D ", "tensors '", vn, "' and '", in,
                                               "'"));
    const std::int64_t nnz = vt->dims[0];
    if (it->dims[0] != nnz)
      throw bad(in, "has ", it->dims[0], " entries, but '", vn, "' has ", nnz,
                " (one column index per nonzero)");
    if (nnz > o * k)
      throw bad(vn, "has ", nnz, " nonzeros, more than the ", o * k, " weights of ", shape.str());
    const Tensor<std::int8_t> values = read<std::int8_t>(vn, Shape{nnz});
    const Tensor<std::int32_t> cols = read<std::int32_t>(in, Shape{nnz});
    const Tensor<std::int64_t> row_ptr = read<std::int64_t>(rn, Shape{o + 1});
    if (row_ptr[0] != 0 || row_ptr[o] != nnz)
      throw bad(rn, "runs from ", row_ptr[0], " to ", row_ptr[o], ", expected 0 to ", nnz,
                " (the number of nonzeros)");
    Tensor<std::int8_t> w(shape, std::int8_t{0});
    for (std::int64_t r = 0; r < o; ++r) {
      const std::int64_t b = row_ptr[r], e = row_ptr[r + 1];
      if (e < b || e > nnz)
        throw bad(rn, "decreases or leaves [0, ", nnz, "] at output channel ", r, " (", b, " -> ",
                  e, ")");
      for (std::int64_t j = b; j < e; ++j) {
        if (cols[j] < 0 || cols[j] >= k || (j > b && cols[j] <= cols[j - 1]))
          throw bad(in, "column ", cols[j], " (entry ", j, ", output channel ", r,
                    ") is outside [0, ", k, ") or not above the row's previous one");
        w.data()[r * k + cols[j]] = values[j];
      }
    }
    return w;
  }

  void check_scale(const std::string& name, float s, std::int64_t index) const {
    if (!(std::isfinite(s) && s >= kMinScale))
      throw ValueError(
          compressor::detail::concat(f_.source(), ": tensor '", name, "': scale ", s, " (element ",
                                     index, ") is not a finite scale >= ", kMinScale,
                                     " (float epsilon, the smallest scale quantization chooses)"));
  }

  io::SafetensorsFile& f_;
  WeightGrid grid_;
  const Int8FileHeader& h_;
  std::vector<std::pair<std::string, QuantParams>> points_;
  std::set<std::string> layers_;
};

/// Reads the float values of island `name` (checked by check_structure) into
/// its skeleton layer; a non-finite value is an error naming the tensor.
inline void read_float_island(io::SafetensorsFile& f, nn::Module& skeleton,
                              const std::string& name) {
  auto& w =
      nn::require_capability<nn::WeightedLayer>(*skeleton.find(name), "a layer with weights", name);
  auto read = [&](const std::string& tensor, Tensor<float>& into) {
    Tensor<float> t = f.read<float>(*f.find(tensor));
    for (std::int64_t k = 0; k < t.numel(); ++k)
      if (!std::isfinite(t[k]))
        throw ValueError(compressor::detail::concat(f.source(), ": tensor '", tensor, "': value ",
                                                    t[k], " (element ", k, ") of float island '",
                                                    name, "' is not finite"));
    into = std::move(t);
  };
  read(Int8FileFormat::weight(name), w.weight());
  if (w.has_bias()) read(Int8FileFormat::bias(name), w.bias());
}

template <class M>
concept Int8Loadable =
    std::derived_from<M, nn::Module> && std::constructible_from<M, const nn::ChannelPlan&>;

}  // namespace internal

/// Loads an int8 model of type M from an open file (see the file comment);
/// throws IoError / ShapeError / ValueError naming the file and the tensor.
template <class M>
requires internal::Int8Loadable<M> Int8Model load_int8_model(io::SafetensorsFile& file) {
  const std::string& where = file.source();
  const internal::Int8FileHeader h = internal::read_int8_header(file);
  if constexpr (requires { M::kTypeName; }) {
    if (h.model != M::kTypeName)
      throw IoError(compressor::detail::concat(where, ": the file holds an int8 '", h.model,
                                               "', not a '", M::kTypeName,
                                               "' (quant::load_int8_model(path) takes the type "
                                               "from the file)"));
  }
  internal::check_plan_against_file(file, h);
  std::unique_ptr<M> skeleton;
  {
    nn::init::PreserveGenerator keep;  // the skeleton's random values are never used
    internal::with_source(where, [&] {
      try {
        skeleton = std::make_unique<M>(h.plan);
      } catch (const std::bad_alloc&) {
        throw IoError("the channel plan asks for a model too large to build");
      } catch (const std::length_error&) {
        throw IoError("the channel plan asks for a model too large to build");
      }
    });
  }
  skeleton->eval();
  nn::fold_batchnorms(*skeleton);
  const std::vector<nn::QuantPoint> points = skeleton->quantization_points();
  const auto expected = internal::expected_tensors(*skeleton, points, h);
  internal::check_structure(file, expected, skeleton->type_name());
  for (const auto& name : h.islands) internal::read_float_island(file, *skeleton, name);
  internal::FileSource source(file, h.grid, h);
  IslandOptions islands;
  islands.names = h.islands;
  Int8Model m = internal::with_source(
      where, [&] { return convert_with(*skeleton, points, h.grid, source, islands); });
  // Every layer and point the file holds went into the model.
  std::size_t layers = 0;
  for (const auto& e : expected) layers += e.dtype == DType::i8;
  require(source.layers_read() == layers && source.points_read() == points.size(), where,
          ": the conversion used ", source.layers_read(), " of ", layers, " layers and ",
          source.points_read(), " of ", points.size(), " quantization points of the file");
  for (const auto& entry : h.sparse)
    internal::with_source(where, [&] { m.set_sparse(entry.first, true); });
  return m;
}

/// Opens path and loads an int8 model of type M from it.
template <class M>
requires internal::Int8Loadable<M> Int8Model load_int8_model(const std::filesystem::path& path) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  return load_int8_model<M>(f);
}

/// Loads an int8 model of the type the file's metadata 'model' names
/// (CifarCnn, ResNet, EfRegressor).
inline Int8Model load_int8_model(io::SafetensorsFile& file) {
  const internal::Int8FileHeader h = internal::read_int8_header(file);
  if (h.model == models::CifarCnn::kTypeName) return load_int8_model<models::CifarCnn>(file);
  if (h.model == models::ResNet18::kTypeName) return load_int8_model<models::ResNet18>(file);
  if (h.model == models::EfRegressor::kTypeName) return load_int8_model<models::EfRegressor>(file);
  throw IoError(compressor::detail::concat(file.source(), ": metadata 'model' is '", h.model,
                                           "', expected one of '", models::CifarCnn::kTypeName,
                                           "', '", models::ResNet18::kTypeName, "', '",
                                           models::EfRegressor::kTypeName, "'"));
}

/// Opens path and loads the int8 model it holds, of the type its metadata names.
inline Int8Model load_int8_model(const std::filesystem::path& path) {
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  return load_int8_model(f);
}

/// Loads an int8 model from the bytes of a file; `name` stands for the file in messages.
inline Int8Model load_int8_model_from_bytes(std::string bytes, std::string name = "<memory>") {
  io::SafetensorsFile f = io::SafetensorsFile::from_bytes(std::move(bytes), std::move(name));
  return load_int8_model(f);
}

}  // namespace compressor::quant
