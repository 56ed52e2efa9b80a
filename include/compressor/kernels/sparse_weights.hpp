// Compressed weights of unstructured-pruned layers, built once at conversion:
// CSR over output channels (one row per output channel n, the nonzero k
// indices ascending with their values). W is N x K row-major, i.e. OHWI conv
// weights flattened, the same matrix the dense kernels take.
//
// The int8 version also keeps each row's nonzeros in quads, the unit of the
// AVX2 kernel: 4 nonzeros (k ascending, the last quad of a row padded with
// weight 0) as 4 byte offsets k * 32 into the kernel's activation panel and
// their 4 weights in one int32, so one vpbroadcastd and vpmaddubsw take them.
// int8 weights must lie in Int8Traits' range (vpmaddubsw sums two products
// into an int16 and must not saturate, as in the dense kernel).
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
  /// Keeps the nonzeros of W (n x k, row stride ldw).
  SparseWeights(const T* w, std::int64_t n, std::int64_t k, std::int64_t ldw) : n_(n), k_(k) {
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
          require(v >= Int8Traits::kWeightMin && v <= Int8Traits::kWeightMax,
                  "SparseWeights: weight [", r, ", ", c, "] = ", int(v), " is outside [",
                  Int8Traits::kWeightMin, ", ", Int8Traits::kWeightMax,
                  "], the range the u8s8 kernels compute exactly (see Int8Traits)");
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
  /// The 4 int8 weights of each quad, bytes in k order.
  const std::int32_t* quad_weights() const { return quad_w_.data(); }
  /// Bytes per k row of the int8 kernel's activation panel (32 pixels).
  static constexpr std::int64_t kQuadStride = 32;
  /// Bytes of the compressed form (indices + values + row pointers).
  std::int64_t bytes() const {
    return nnz() * static_cast<std::int64_t>(sizeof(std::int32_t) + sizeof(T)) +
           static_cast<std::int64_t>(row_ptr_.size() * sizeof(std::int64_t));
  }

 private:
  std::int64_t n_ = 0, k_ = 0;
  std::vector<std::int64_t> row_ptr_;
  std::vector<std::int32_t> cols_;
  std::vector<T> values_;
  std::vector<std::int32_t> sums_;
  std::vector<std::int64_t> quad_ptr_;
  std::vector<std::uint32_t> quad_off_;
  std::vector<std::int32_t> quad_w_;

  void build_quads() {
    require<ShapeError>(k_ * kQuadStride <= INT32_MAX, "SparseWeights: K = ", k_, " is too large");
    quad_ptr_.reserve(static_cast<std::size_t>(n_ + 1));
    quad_ptr_.push_back(0);
    for (std::int64_t r = 0; r < n_; ++r) {
      const std::int64_t b = row_begin(r), e = row_begin(r + 1);
      for (std::int64_t j = b; j < e; j += 4) {
        std::int8_t w[4] = {0, 0, 0, 0};
        for (std::int64_t i = 0; i < 4; ++i) {
          // Padding slots repeat the quad's first k with weight 0.
          const std::int64_t src = j + i < e ? j + i : j;
          quad_off_.push_back(
              static_cast<std::uint32_t>(cols_[static_cast<std::size_t>(src)] * kQuadStride));
          if (j + i < e) w[i] = static_cast<std::int8_t>(values_[static_cast<std::size_t>(j + i)]);
        }
        std::int32_t packed;
        std::memcpy(&packed, w, 4);
        quad_w_.push_back(packed);
      }
      quad_ptr_.push_back(static_cast<std::int64_t>(quad_w_.size()));
    }
  }
};

using SparseWeightsF32 = SparseWeights<float>;
using SparseWeightsS8 = SparseWeights<std::int8_t>;

}  // namespace compressor::kernels
