// PackedWeightsU8S8: int8 weights (N x K, e.g. OHWI conv weights flattened)
// packed once, at model conversion, into the layout of the u8s8 micro-kernel,
// with their per-row sums for the activation zero-point correction.
//
// Layout: panels of kNR = 16 output channels; in a panel, for each group of 4
// k values, 16 channels x 4 bytes (64 bytes: one ymm for channels 0-7, one for
// 8-15). K is padded to a multiple of 4 and N to a multiple of 16 with zeros.
#pragma once

#include <algorithm>
#include <cstdint>

#include "compressor/core/aligned_buffer.hpp"
#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/kernels/int8_traits.hpp"

namespace compressor::kernels {

class PackedWeightsU8S8 {
 public:
  static constexpr int kNR = GemmU8S8Tiles::kNR;
  static constexpr int kKG = GemmU8S8Tiles::kKGroup;

  PackedWeightsU8S8() = default;

  /// Packs W (n x k, row stride ldw). Throws ValueError for a weight outside
  /// [Int8Traits::kWeightMin, Int8Traits::kWeightMax].
  PackedWeightsU8S8(const std::int8_t* w, std::int64_t n, std::int64_t k, std::int64_t ldw) {
    pack(w, n, k, ldw);
  }
  /// Packs a weight tensor of shape (N, ...), e.g. OHWI: k = numel / N.
  explicit PackedWeightsU8S8(TensorView<const std::int8_t> w) {
    require<ShapeError>(w.rank() >= 2 && w.dim(0) > 0,
                        "PackedWeightsU8S8: weights must have shape (N, ...) with N > 0, got ",
                        w.shape().str());
    const std::int64_t n = w.dim(0);
    pack(w.data(), n, w.numel() / n, w.numel() / n);
  }

  std::int64_t n() const { return n_; }
  std::int64_t k() const { return k_; }
  /// k rounded up to a multiple of 4.
  std::int64_t k_padded() const { return kp_; }
  std::int64_t panels() const { return panels_; }
  /// Panel j: k_padded() / 4 groups of 64 bytes.
  const std::int8_t* panel(std::int64_t j) const { return data_.data() + j * kp_ * kNR; }
  /// sum_k W[n, k] for n in [0, panels() * 16) (zero past n()).
  const std::int32_t* row_sums() const { return sums_.data(); }
  /// W[n, k] read back from the packed layout.
  std::int8_t at(std::int64_t n, std::int64_t k) const {
    return panel(n / kNR)[(k / kKG) * kNR * kKG + (n % kNR) * kKG + k % kKG];
  }

 private:
  void pack(const std::int8_t* w, std::int64_t n, std::int64_t k, std::int64_t ldw) {
    require<ShapeError>(n > 0 && k > 0 && ldw >= k, "PackedWeightsU8S8: bad weight matrix ", n, "x",
                        k, " with row stride ", ldw);
    n_ = n;
    k_ = k;
    kp_ = (k + kKG - 1) / kKG * kKG;
    panels_ = (n + kNR - 1) / kNR;
    data_.reserve_discard(static_cast<std::size_t>(panels_ * kp_ * kNR));
    sums_.reserve_discard(static_cast<std::size_t>(panels_ * kNR));
    std::fill_n(data_.data(), panels_ * kp_ * kNR, std::int8_t{0});
    std::fill_n(sums_.data(), panels_ * kNR, 0);
    for (std::int64_t r = 0; r < n; ++r) {
      std::int8_t* dst = data_.data() + (r / kNR) * kp_ * kNR + (r % kNR) * kKG;
      std::int32_t sum = 0;
      for (std::int64_t c = 0; c < k; ++c) {
        const std::int32_t v = w[r * ldw + c];
        require(v >= Int8Traits::kWeightMin && v <= Int8Traits::kWeightMax,
                "PackedWeightsU8S8: weight [", r, ", ", c, "] = ", v, " is outside [",
                Int8Traits::kWeightMin, ", ", Int8Traits::kWeightMax,
                "], the range the u8s8 kernels compute exactly (see Int8Traits)");
        dst[(c / kKG) * kNR * kKG + c % kKG] = static_cast<std::int8_t>(v);
        sum += v;
      }
      sums_.data()[r] = sum;
    }
  }

  std::int64_t n_ = 0, k_ = 0, kp_ = 0, panels_ = 0;
  AlignedBuffer<std::int8_t> data_;
  AlignedBuffer<std::int32_t> sums_;
};

}  // namespace compressor::kernels
