// What the EF examples share about their data: the normalisation ef_train
// trains with (quantize must calibrate with the same) and the synthetic
// EchoNet-layout set generated on first use.
#pragma once

#include <cstdint>
#include <cstdio>
#include <filesystem>

#include "compressor/data/normalize.hpp"
#include "compressor/data/synthetic_echo.hpp"

namespace examples {

/// Per-channel mean 0.5 and std 0.25 on [0, 1] pixels.
inline compressor::data::Normalization echo_normalization() {
  return compressor::data::Normalization{{0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
}

/// Generates `count` synthetic clips (seed) in dir unless they are there; says so when it does.
inline void ensure_synthetic_echo_set(const std::filesystem::path& dir, std::int64_t count,
                                      std::uint64_t seed) {
  compressor::data::SyntheticEchoOptions so;
  so.count = count;
  so.seed = seed;
  if (compressor::data::ensure_synthetic_echo(dir, so))
    std::printf("generated %lld synthetic clips in %s\n", static_cast<long long>(count),
                dir.c_str());
}

}  // namespace examples
