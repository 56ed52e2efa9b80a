// Per-channel normalisation of 8-bit pixels: x = (v / 255 - mean[c]) / std[c].
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "compressor/core/error.hpp"

namespace compressor::data {

/// Per-channel mean and standard deviation on the [0, 1] pixel scale. Empty
/// vectors mean "scale to [0, 1] only".
struct Normalization {
  std::vector<float> mean;
  std::vector<float> std;

  /// CIFAR-10's training-set statistics (per-pixel std over the 50,000 images).
  static Normalization cifar10() {
    return {{0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}};
  }
  /// Only v / 255.
  static Normalization unit() { return {}; }

  bool is_unit() const { return mean.empty() && std.empty(); }

  /// Throws ValueError unless this fits `channels` channels (or is unit).
  void check(std::int64_t channels, std::string_view where) const {
    if (is_unit()) return;
    require(mean.size() == std.size() && static_cast<std::int64_t>(mean.size()) == channels, where,
            ": normalisation has ", mean.size(), " means and ", std.size(),
            " standard deviations, expected ", channels, " of each (one per channel)");
    for (float s : std) require(s > 0.f, where, ": normalisation std must be > 0, got ", s);
  }
};

/// The affine map v -> v * scale[c] + bias[c] equal to a Normalization, for
/// up to 4 channels.
struct PixelAffine {
  std::array<float, 4> scale{};
  std::array<float, 4> bias{};

  PixelAffine(const Normalization& n, std::int64_t channels) {
    require(channels >= 1 && channels <= 4, "PixelAffine: ", channels,
            " channels, expected 1 to 4");
    n.check(channels, "PixelAffine");
    for (std::size_t c = 0; c < static_cast<std::size_t>(channels); ++c) {
      const float m = n.is_unit() ? 0.f : n.mean[c];
      const float s = n.is_unit() ? 1.f : n.std[c];
      scale[c] = 1.f / (255.f * s);
      bias[c] = -m / s;
    }
  }
  float operator()(std::uint8_t v, std::size_t c) const { return float(v) * scale[c] + bias[c]; }
};

}  // namespace compressor::data
