// Parameter initialisation. Layers initialise themselves as PyTorch does by
// default, drawing from one global generator that manual_seed() resets, so a
// model built after manual_seed(s) is the same every time.
#pragma once

#include <cmath>
#include <cstdint>

#include "compressor/core/rng.hpp"
#include "compressor/core/tensor.hpp"

namespace compressor::nn::init {

inline Rng& generator() {
  static Rng rng(0);
  return rng;
}

/// Restores the generator's state when it goes out of scope: code that builds
/// layers only to overwrite their values (copies, channel selection) leaves
/// the stream of later initialisations as it was.
class PreserveGenerator {
 public:
  PreserveGenerator() : saved_(generator()) {}
  PreserveGenerator(const PreserveGenerator&) = delete;
  PreserveGenerator& operator=(const PreserveGenerator&) = delete;
  ~PreserveGenerator() { generator() = saved_; }

 private:
  Rng saved_;
};

/// Resets the generator that layer constructors draw from.
inline void manual_seed(std::uint64_t seed) {
  generator().reseed(seed);
}

inline void uniform(TensorView<float> t, double lo, double hi, Rng& rng = generator()) {
  for (auto& v : t.flat()) v = static_cast<float>(rng.uniform(lo, hi));
}

inline void normal(TensorView<float> t, double mean, double stddev, Rng& rng = generator()) {
  for (auto& v : t.flat()) v = static_cast<float>(rng.normal(mean, stddev));
}

/// Kaiming/He normal for ReLU networks: N(0, 2/fan) (torchvision's ResNet
/// uses fan = fan_out = out_channels * kernel area).
inline void kaiming_normal(TensorView<float> t, std::int64_t fan, Rng& rng = generator()) {
  normal(t, 0.0, std::sqrt(2.0 / static_cast<double>(fan)), rng);
}

/// Kaiming uniform with a = sqrt(5), PyTorch's default for Conv2d and Linear
/// weights: U(-b, b) with b = 1/sqrt(fan_in). Biases use the same bound.
inline void pytorch_default_uniform(TensorView<float> t, std::int64_t fan_in,
                                    Rng& rng = generator()) {
  const double b = 1.0 / std::sqrt(static_cast<double>(fan_in));
  uniform(t, -b, b, rng);
}

}  // namespace compressor::nn::init
