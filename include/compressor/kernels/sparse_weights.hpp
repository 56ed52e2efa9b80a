// Compressed weights of unstructured-pruned layers, built once at conversion:
// CSR over output channels (one row per output channel n, the nonzero k
// indices ascending with their values). W is N x K row-major, i.e. OHWI conv
// weights flattened, the same matrix the dense kernels take.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "compressor/core/error.hpp"

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
          sums_[static_cast<std::size_t>(r)] += v;
          // (uint16)w in the low half of an int32: one vpbroadcastd gives the
          // int16 pairs (w, 0) that vpmaddwd needs.
          wide_.push_back(static_cast<std::int32_t>(static_cast<std::uint16_t>(v)));
        }
      }
      row_ptr_.push_back(static_cast<std::int64_t>(cols_.size()));
    }
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
  /// Integer weights as (uint16)w per int32, for the SIMD int8 kernel.
  const std::int32_t* wide_values() const { return wide_.data(); }
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
  std::vector<std::int32_t> wide_;
};

using SparseWeightsF32 = SparseWeights<float>;
using SparseWeightsS8 = SparseWeights<std::int8_t>;

}  // namespace compressor::kernels
