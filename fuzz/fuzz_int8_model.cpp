// Fuzzes the int8 model loader (quant/int8_io.hpp) on arbitrary bytes: any
// input must end in a complete model or a compressor::Error. An accepted file
// must save back to a file that loads to the same model (points, weights,
// scales, biases, bit for bit, the same layers on the sparse int8 kernel:
// format version 3 stores them as CSR), the writer must be stable on it, and the
// model must run on an input of its shape (the int8 kernels on whatever
// values the file passed validation with: scales near kMinScale or huge,
// biases near the accumulator bound, zero points 0 or 255).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "compressor/io/checkpoint.hpp"
#include "compressor/quant/int8_io.hpp"

namespace {

using namespace compressor;

bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

bool same_model(const quant::Int8Model& a, const quant::Int8Model& b) {
  const auto &sa = a.summary(), &sb = b.summary();
  if (sa.model != sb.model || sa.points.size() != sb.points.size() ||
      sa.layers.size() != sb.layers.size() ||
      a.layer_weights().size() != b.layer_weights().size() ||
      a.sparse_layers() != b.sparse_layers())
    return false;
  for (std::size_t i = 0; i < sa.points.size(); ++i)
    if (sa.points[i].name != sb.points[i].name || sa.points[i].kind != sb.points[i].kind ||
        !same_bits(sa.points[i].q.scale, sb.points[i].q.scale) ||
        sa.points[i].q.zero_point != sb.points[i].q.zero_point)
      return false;
  for (std::size_t i = 0; i < a.layer_weights().size(); ++i) {
    const auto& [na, wa] = a.layer_weights()[i];
    const auto& [nb, wb] = b.layer_weights()[i];
    if (na != nb || !(wa.weight.shape() == wb.weight.shape()) ||
        std::memcmp(wa.weight.data(), wb.weight.data(), wa.weight.numel()) != 0 ||
        wa.scales.size() != wb.scales.size() ||
        std::memcmp(wa.scales.data(), wb.scales.data(), 4 * wa.scales.size()) != 0 ||
        wa.bias != wb.bias || wa.stride != wb.stride || wa.padding != wb.padding)
      return false;
  }
  return true;
}

/// A small input the model accepts (the library's three models).
Tensor<float> input_for(const std::string& model, const nn::ChannelPlan& plan) {
  const std::int64_t c = plan.option_int("in_channels", 3);
  Shape s;
  if (model == "CifarCnn")
    s = Shape{1, 16, 16, c};
  else if (model == "ResNet")
    s = Shape{1, 32, 32, c};
  else
    s = Shape{1, 2, 32, 32, 3};  // EfRegressor: (N, T, H, W, C)
  Tensor<float> x(s);
  for (std::int64_t i = 0; i < x.numel(); ++i)
    x.data()[i] = static_cast<float>((i * 7919) % 401) / 100.f - 2.f;  // [-2, 2]
  return x;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::optional<io::SafetensorsFile> file;
  std::optional<quant::Int8Model> model;
  try {
    file.emplace(io::SafetensorsFile::from_bytes(
        std::string(reinterpret_cast<const char*>(data), size), "fuzz"));
    model.emplace(quant::load_int8_model(*file));
  } catch (const Error&) {
    return 0;
  }
  // Accepted: it saves back to a file that loads to the same model.
  const nn::ChannelPlan plan = io::read_channel_plan(*file);
  const std::string again = quant::int8_model_writer(*model, plan).bytes();
  quant::Int8Model reloaded = quant::load_int8_model_from_bytes(again, "again");
  if (!same_model(*model, reloaded)) __builtin_trap();
  if (quant::int8_model_writer(reloaded, plan).bytes() != again) __builtin_trap();
  // And it runs (a ShapeError here would be a model that loads but cannot run).
  const Tensor<float> x = input_for(model->summary().model, plan);
  const Tensor<float> y(model->forward(x));
  if (y.numel() == 0) __builtin_trap();
  return 0;
}
