// PackedWeightsU8S8: int8 weights (N x K, e.g. OHWI conv weights flattened)
// packed once, at model conversion, into the layout of the u8s8 micro-kernel,
// with their per-row sums for the activation zero-point correction.
//
// Layout: panels of kNR = 16 output channels; in a panel, for each group of 4
// k values, 16 channels x 4 bytes (64 bytes: one zmm, or one ymm for channels
// 0-7 and one for 8-15). K is padded to a multiple of 4 and N to a multiple
// of 16 with zeros. The layout is the same on every path (a path is chosen at
// run time, after packing). The weights carry their grid (int8_traits.hpp):
// packing checks them against it, and records whether they all fit the
// narrow grid, which the vpmaddubsw kernels compute exactly.
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

  /// Packs W (n x k, row stride ldw) on weight grid `grid`. Throws
  /// ValueError for a weight outside [weight_min(grid), weight_max(grid)].
  PackedWeightsU8S8(const std::int8_t* w, std::int64_t n, std::int64_t k, std::int64_t ldw,
                    WeightGrid grid = WeightGrid::narrow) {
    pack(w, n, k, ldw, grid);
  }
  /// Packs a weight tensor of shape (N, ...), e.g. OHWI: k = numel / N.
  explicit PackedWeightsU8S8(TensorView<const std::int8_t> w,
                             WeightGrid grid = WeightGrid::narrow) {
    require<ShapeError>(w.rank() >= 2 && w.dim(0) > 0,
                        "PackedWeightsU8S8: weights must have shape (N, ...) with N > 0, got ",
                        w.shape());
    const std::int64_t n = w.dim(0);
    pack(w.data(), n, w.numel() / n, w.numel() / n, grid);
  }

  /// The grid the weights were packed on.
  WeightGrid grid() const { return grid_; }
  /// Every weight is within the narrow grid [-64, 64] (true for every narrow
  /// pack, and for a full-grid pack whose weights happen to be small): the
  /// vpmaddubsw kernels are exact on these weights.
  bool fits_narrow() const { return fits_narrow_; }

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
  void pack(const std::int8_t* w, std::int64_t n, std::int64_t k, std::int64_t ldw,
            WeightGrid grid) {
    require<ShapeError>(n > 0 && k > 0 && ldw >= k, "PackedWeightsU8S8: bad weight matrix ", n, "x",
                        k, " with row stride ", ldw);
    require(grid == WeightGrid::narrow || grid == WeightGrid::full,
            "PackedWeightsU8S8: unknown weight grid ", static_cast<int>(grid));
    const std::int32_t lo = weight_min(grid), hi = weight_max(grid);
    constexpr std::int32_t narrow = weight_max(WeightGrid::narrow);
    grid_ = grid;
    fits_narrow_ = true;
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
        require(v >= lo && v <= hi, "PackedWeightsU8S8: weight [", r, ", ", c, "] = ", v,
                " is outside the ", weight_grid_name(grid), " weight grid [", lo, ", ", hi,
                "] (see WeightGrid in kernels/int8_traits.hpp)");
        fits_narrow_ = fits_narrow_ && v >= -narrow && v <= narrow;
        dst[(c / kKG) * kNR * kKG + c % kKG] = static_cast<std::int8_t>(v);
        sum += v;
      }
      sums_.data()[r] = sum;
    }
  }

  std::int64_t n_ = 0, k_ = 0, kp_ = 0, panels_ = 0;
  WeightGrid grid_ = WeightGrid::narrow;
  bool fits_narrow_ = true;
  AlignedBuffer<std::int8_t> data_;
  AlignedBuffer<std::int32_t> sums_;
};

}  // namespace compressor::kernels
