// What the full 8-bit weight grid buys (docs/quantization.md, "Saturation"):
// weights quantized per output channel to the narrow grid [-64, 64] (what
// vpmaddubsw multiplies without saturating) against the full grid
// [-127, 127] (kernels::WeightGrid; exact on every path too: vpdpbusd, or the
// widening kernel), measured as the signal-to-quantization-noise ratio of
// each conv layer's output on every ResNet-18 (112x112) and CifarCnn (32x32)
// conv shape.
//
// Weights: Kaiming-normal (std sqrt(2 / fan_in), the library's init),
// symmetric per output channel with the max-abs scale. Activations: ReLU
// outputs (max(0, N(0, 1))), or N(0, 1) for a first layer (a normalised
// image), uint8 per tensor over [min, max]. The reference is the fp32 conv
// summed in double; the quantized conv is the same sum over the dequantized
// tensors, which the int8 kernels compute exactly (tests/kernels: int8 conv
// equals float conv of the dequantized tensors within the rounding rule).
//
// Usage: int8_weight_bits [--check]. Prints a markdown table; --check exits
// 1 unless, on every shape, the narrow grid costs SQNR (weights alone) and
// stays above 25 dB with activations quantized too.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/kernels/conv_f32.hpp"
#include "compressor/kernels/eltwise.hpp"
#include "compressor/kernels/int8_traits.hpp"
#include "compressor/nn/im2col.hpp"
#include "conv_shapes.hpp"

namespace {

using compressor::Rng;
using compressor::bench::ConvShape;

/// x rounded to a symmetric per-channel grid of +-qmax levels (rows of w are
/// output channels, k values each).
std::vector<float> quantize_weights(const std::vector<float>& w, std::int64_t o, std::int64_t k,
                                    int qmax) {
  std::vector<float> q(w.size());
  for (std::int64_t c = 0; c < o; ++c) {
    const float* row = w.data() + c * k;
    float amax = 0.f;
    for (std::int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(row[i]));
    const float s = amax > 0.f ? amax / static_cast<float>(qmax) : 1.f;
    for (std::int64_t i = 0; i < k; ++i) {
      const float v = std::clamp(std::nearbyint(row[i] / s), -float(qmax), float(qmax));
      q[static_cast<std::size_t>(c * k + i)] = v * s;
    }
  }
  return q;
}

/// x quantized to uint8 per tensor over [min(x, 0), max(x, 0)] (zero exactly
/// representable, as the padding needs) and back, by the library's kernels.
compressor::Tensor<float> quantize_activations(const compressor::Tensor<float>& x) {
  const auto [lo_it, hi_it] = std::minmax_element(x.data(), x.data() + x.numel());
  const float lo = std::min(*lo_it, 0.f), hi = std::max(*hi_it, 0.f);
  const float s = hi > lo ? (hi - lo) / 255.f : 1.f;
  const compressor::kernels::QuantParams q{s, static_cast<std::int32_t>(std::nearbyint(-lo / s))};
  compressor::Tensor<std::uint8_t> u(x.shape());
  compressor::Tensor<float> y(x.shape());
  compressor::kernels::quantize_f32_u8(x, q, u);
  compressor::kernels::dequantize_u8_f32(u, q, y);
  return y;
}

/// The conv output (pixels x o) of a padded NHWC input, summed in double.
std::vector<double> conv(const std::vector<float>& xpad,
                         const compressor::kernels::Im2colGeometry& g, const std::vector<float>& w,
                         std::int64_t o) {
  std::vector<float> cols(static_cast<std::size_t>(g.rows() * g.cols()));
  compressor::kernels::ref::im2col_padded(xpad.data(), g, cols.data());
  std::vector<double> y(static_cast<std::size_t>(g.rows() * o));
  for (std::int64_t m = 0; m < g.rows(); ++m)
    for (std::int64_t c = 0; c < o; ++c) {
      double s = 0;
      const float* a = cols.data() + m * g.cols();
      const float* b = w.data() + c * g.cols();
      for (std::int64_t i = 0; i < g.cols(); ++i) s += double(a[i]) * double(b[i]);
      y[static_cast<std::size_t>(m * o + c)] = s;
    }
  return y;
}

double sqnr_db(const std::vector<double>& ref, const std::vector<double>& q) {
  double sig = 0, noise = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    sig += ref[i] * ref[i];
    noise += (q[i] - ref[i]) * (q[i] - ref[i]);
  }
  return 10.0 * std::log10(sig / noise);
}

/// The padded copy of a (1, H, W, C) input.
std::vector<float> pad(const compressor::Tensor<float>& x, const ConvShape& s) {
  compressor::Tensor<float> p;
  compressor::nn::pad_nhwc(x.data(), 1, s.h, s.w, s.c, s.pad, p);
  return {p.data(), p.data() + p.numel()};
}

}  // namespace

int main(int argc, char** argv) {
  const bool check = argc > 1 && std::strcmp(argv[1], "--check") == 0;
  if (argc > 2 || (argc == 2 && !check)) {
    std::fprintf(stderr, "usage: int8_weight_bits [--check]\n");
    return 2;
  }
  auto shapes = compressor::bench::resnet18_112();
  for (auto& s : compressor::bench::cifarcnn_32()) shapes.push_back(s);
  std::printf(
      "| shape | weights full grid (+-127) | weights narrow grid (+-64) | gain of full | full + a8 "
      "| narrow + a8 | gain of full |\n|---|---|---|---|---|---|---|\n");
  bool ok = true;
  Rng rng(2026);
  for (const ConvShape& s : shapes) {
    const std::int64_t k = s.gemm_k();
    const bool first = s.c == 3;
    compressor::Tensor<float> x(compressor::Shape{1, s.h, s.w, s.c});
    std::vector<float> w(static_cast<std::size_t>(s.o * k));
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const float n = static_cast<float>(rng.normal());
      x[i] = first ? n : std::max(0.f, n);
    }
    const double std_w = std::sqrt(2.0 / static_cast<double>(k));
    for (float& v : w) v = static_cast<float>(rng.normal() * std_w);
    const compressor::kernels::Im2colGeometry g{1,   s.h + 2 * s.pad, s.w + 2 * s.pad, s.c,   s.k,
                                                s.k, s.stride,        s.oh(),          s.ow()};
    const auto xp = pad(x, s), xq = pad(quantize_activations(x), s);
    namespace ck = compressor::kernels;
    const auto w8 = quantize_weights(w, s.o, k, ck::weight_qmax(ck::WeightGrid::full)),
               w7 = quantize_weights(w, s.o, k, ck::weight_qmax(ck::WeightGrid::narrow));
    const auto ref = conv(xp, g, w, s.o);
    const double s8 = sqnr_db(ref, conv(xp, g, w8, s.o)), s7 = sqnr_db(ref, conv(xp, g, w7, s.o));
    const double a8 = sqnr_db(ref, conv(xq, g, w8, s.o)), a7 = sqnr_db(ref, conv(xq, g, w7, s.o));
    std::printf("| %s | %.1f dB | %.1f dB | %.1f dB | %.1f dB | %.1f dB | %.1f dB |\n",
                s.name.c_str(), s8, s7, s8 - s7, a8, a7, a8 - a7);
    ok = ok && s7 < s8 && a7 > 25.0;
  }
  std::fflush(stdout);
  if (check && !ok) {
    std::fprintf(stderr, "int8_weight_bits: a shape broke the expected SQNR order or floor\n");
    return 1;
  }
  return 0;
}
