// Compressed weights of unstructured-pruned layers, built once at conversion:
// CSR over output channels (one row per output channel n, the nonzero k
// indices ascending with their values). W is N x K row-major, i.e. OHWI conv
// weights flattened, the same matrix the dense kernels take.
//
// The int8 version also keeps each row's nonzeros in quads, the unit of the
// AVX2 kernel: 4 nonzeros (k ascending, the last quad of a row padded with
// weight 0) as 4 byte offsets k * 32 into the kernel's activation panel and
// their 4 weights in one int32, so one vpbroadcastd and vpmaddubsw take them.
// int8 weights must lie on the weight grid given at construction
// (int8_traits.hpp). vpmaddubsw sums two products into an int16, exactly only
// for weights of the narrow grid [-64, 64]; a full-grid row [-127, 127] is
// kept as two narrow halves per quad, w = lo + hi with lo = floor(w / 2) in
// [-64, 63] and hi = w - lo in [-63, 64], which the kernel multiplies
// separately and adds in int32: exact, at twice the multiplies.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/kernels/int8_traits.hpp"

namespace compressor::kernels {

template <class T>
class SparseWeights {
 public:
  SparseWeights() = default;
  /// Keeps the nonzeros of W (n x k, row stride ldw); int8 weights must lie
  /// on `grid` (ignored for float).
  SparseWeights(const T* w, std::int64_t n, std::int64_t k, std::int64_t ldw,
                WeightGrid grid = WeightGrid::narrow)
      : n_(n), k_(k), grid_(grid) {
    require<ShapeError>(n > 0 && k > 0 && ldw >= k && k <= INT32_MAX,
                        "SparseWeights: bad weight matrix ", n, "x", k, " with row stride ", ldw);
    row_ptr_.reserve(static_cast<std::size_t>(n + 1));
    row_ptr_.push_back(0);
    sums_.assign(static_cast<std::size_t>(n), 0);
    for (std::int64_t r = 0; r < n; ++r) {
      for (std::int64_t c = 0; c < k; ++c) {
        const T v = w[r * ldw + c];
        if (v == T{0}) continue;
        cols_.push_back(static_cast<std::int32_t>(c));
        values_.push_back(v);
        if constexpr (std::is_integral_v<T>) {
          require(v >= weight_min(grid) && v <= weight_max(grid), "SparseWeights: weight [", r,
                  ", ", c, "] = ", int(v), " is outside the ", weight_grid_name(grid),
                  " weight grid [", weight_min(grid), ", ", weight_max(grid),
                  "] (see int8_traits.hpp)");
          sums_[static_cast<std::size_t>(r)] += v;
        }
      }
      row_ptr_.push_back(static_cast<std::int64_t>(cols_.size()));
    }
    if constexpr (std::is_integral_v<T>) build_quads();
  }

  std::int64_t n() const { return n_; }
  std::int64_t k() const { return k_; }
  std::int64_t nnz() const { return static_cast<std::int64_t>(values_.size()); }
  double density() const { return double(nnz()) / double(n_ * k_); }
  /// Nonzeros of row n are [row_begin(n), row_begin(n + 1)).
  std::int64_t row_begin(std::int64_t n) const { return row_ptr_[static_cast<std::size_t>(n)]; }
  const std::int32_t* cols() const { return cols_.data(); }
  const T* values() const { return values_.data(); }
  /// sum_k W[n, k] (integer weights only: the activation zero-point correction).
  const std::int32_t* row_sums() const { return sums_.data(); }
  /// Quads of row n are [quad_begin(n), quad_begin(n + 1)) (int8 only).
  std::int64_t quad_begin(std::int64_t n) const { return quad_ptr_[static_cast<std::size_t>(n)]; }
  /// 4 byte offsets k * kQuadStride per quad.
  const std::uint32_t* quad_offsets() const { return quad_off_.data(); }
  /// The 4 int8 weights of each quad, bytes in k order; on the full grid
  /// their low halves floor(w / 2).
  const std::int32_t* quad_weights() const { return quad_w_.data(); }
  /// The full grid's high halves w - floor(w / 2) per quad; null on the narrow grid.
  const std::int32_t* quad_weights_hi() const {
    return grid_ == WeightGrid::full ? quad_hi_.data() : nullptr;
  }
  /// The grid the int8 weights lie on.
  WeightGrid grid() const { return grid_; }
  /// Bytes per k row of the int8 kernel's activation panel (32 pixels).
  static constexpr std::int64_t kQuadStride = 32;
  /// Bytes of the compressed form (indices + values + row pointers).
  std::int64_t bytes() const {
    return nnz() * static_cast<std::int64_t>(sizeof(std::int32_t) + sizeof(T)) +
           static_cast<std::int64_t>(row_ptr_.size() * sizeof(std::int64_t));
  }

 private:
  std::int64_t n_ = 0, k_ = 0;
  WeightGrid grid_ = WeightGrid::narrow;
  std::vector<std::int64_t> row_ptr_;
  std::vector<std::int32_t> cols_;
  std::vector<T> values_;
  std::vector<std::int32_t> sums_;
  std::vector<std::int64_t> quad_ptr_;
  std::vector<std::uint32_t> quad_off_;
  std::vector<std::int32_t> quad_w_, quad_hi_;

  void build_quads() {
    require<ShapeError>(k_ * kQuadStride <= INT32_MAX, "SparseWeights: K = ", k_, " is too large");
    quad_ptr_.reserve(static_cast<std::size_t>(n_ + 1));
    quad_ptr_.push_back(0);
    for (std::int64_t r = 0; r < n_; ++r) {
      const std::int64_t b = row_begin(r), e = row_begin(r + 1);
      for (std::int64_t j = b; j < e; j += 4) {
        std::int8_t w[4] = {0, 0, 0, 0}, hi[4] = {0, 0, 0, 0};
        for (std::int64_t i = 0; i < 4; ++i) {
          // Padding slots repeat the quad's first k with weight 0.
          const std::int64_t src = j + i < e ? j + i : j;
          quad_off_.push_back(
              static_cast<std::uint32_t>(cols_[static_cast<std::size_t>(src)] * kQuadStride));
          if (j + i >= e) continue;
          const int v = values_[static_cast<std::size_t>(j + i)];
          if (grid_ == WeightGrid::full) {
            const int lo = v >= 0 ? v / 2 : -((-v + 1) / 2);  // floor(v / 2)
            w[i] = static_cast<std::int8_t>(lo);
            hi[i] = static_cast<std::int8_t>(v - lo);
          } else {
            w[i] = static_cast<std::int8_t>(v);
          }
        }
        std::int32_t packed;
        std::memcpy(&packed, w, 4);
        quad_w_.push_back(packed);
        if (grid_ == WeightGrid::full) {
          std::memcpy(&packed, hi, 4);
          quad_hi_.push_back(packed);
        }
      }
      quad_ptr_.push_back(static_cast<std::int64_t>(quad_w_.size()));
    }
  }
};

using SparseWeightsF32 = SparseWeights<float>;
using SparseWeightsS8 = SparseWeights<std::int8_t>;

}  // namespace compressor::kernels
