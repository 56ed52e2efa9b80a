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
// (int8_traits.hpp). vpmaddubsw sums the products of a quad's slots 0 and 1,
// and of 2 and 3, into an int16: exact when the pair cannot saturate for any
// activations in [0, 255] (pair_fits_int16). On the narrow grid [-64, 64]
// every pair fits, and a row's quads take its nonzeros in k order. On the
// full grid [-127, 127] a row's nonzeros are paired first (large positives
// with large negatives, then same-sign weights whose magnitudes add up to at
// most 128, the rest beside a zero-weight slot), the pairs in order of their
// first k: exact with the same instructions per quad as the narrow grid, at
// the cost of the padding slots (few when a row's signs are balanced).
//
// It also keeps each row's nonzeros by k-groups, one unit of the VNNI
// kernel for blocks of at most 16 pixels (quads are the other, at high
// sparsity: small_block_quads): the groups of 4 consecutive k
// (k / 4) that hold a nonzero of the row, each as a byte offset group * 64
// into that kernel's panel (16 pixels x 4 bytes per group) and the group's
// 4 weights (zeros included) in one int32. vpdpbusd sums a group's 4
// products exactly on either grid; the groups do not depend on the pairing.
// Where that kernel goes by quads and K > kSmallChunkMinK, a second list
// holds each row's quads per k-chunk of kSmallChunkK (k order, unpaired),
// chunk-major, so that the kernel's panel reads stay within the L1.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/kernels/int8_traits.hpp"

namespace compressor::kernels {

/// The uint8 activation rows the int8 sparse kernels read: row p at
/// x + p * ld, or at table[p] when there is a table (a conv's rows by pool
/// window, pointing into its unfolded conv rows), or, in the tap form, in
/// pieces of tap_bytes: bytes [t * tap_bytes, (t + 1) * tap_bytes) of row p
/// at taps[p * n_taps + t] (a conv's input pixels read in place, without an
/// unfolded copy; only the avx512_vnni kernels read this form, 64 bytes at a
/// time, so tap_bytes is a multiple of 64).
struct SparseRowsU8 {
  const std::uint8_t* x = nullptr;
  std::int64_t ld = 0;
  const std::uint8_t* const* table = nullptr;
  const std::uint8_t* const* taps = nullptr;
  std::int64_t n_taps = 0, tap_bytes = 0;

  /// Where byte k of every row is: its tap and its offset in the tap (the
  /// division once per column, not per row).
  struct Column {
    std::int64_t tap = 0, offset = 0;
  };
  Column column(std::int64_t k) const {
    return taps ? Column{k / tap_bytes, k % tap_bytes} : Column{0, k};
  }
  /// Byte `c` of row p; the bytes read from there must stay in its tap.
  const std::uint8_t* at(std::int64_t p, Column c) const {
    return taps ? taps[p * n_taps + c.tap] + c.offset : row(p) + c.offset;
  }
  /// Row p as one piece (not the tap form).
  const std::uint8_t* row(std::int64_t p) const { return table ? table[p] : x + p * ld; }
};

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
  /// 4 byte offsets k * kQuadStride per quad (a zero-weight slot repeats
  /// another slot's k, so every offset is inside the panel).
  const std::uint32_t* quad_offsets() const { return quad_off_.data(); }
  /// The 4 int8 weights of each quad (byte i: the weight of offset i).
  const std::int32_t* quad_weights() const { return quad_w_.data(); }
  /// Quads of the whole matrix (>= nnz / 4).
  std::int64_t quads() const { return static_cast<std::int64_t>(quad_w_.size()); }
  /// k-groups of row n are [group_begin(n), group_begin(n + 1)) (int8 only),
  /// ascending.
  std::int64_t group_begin(std::int64_t n) const { return group_ptr_[static_cast<std::size_t>(n)]; }
  /// Byte offset (k / 4) * kGroupStride of each k-group.
  const std::uint32_t* group_offsets() const { return group_off_.data(); }
  /// The 4 int8 weights of each k-group (byte i: k = 4 * group + i; 0 past K).
  const std::int32_t* group_weights() const { return group_w_.data(); }
  /// k-groups of the whole matrix (between nnz / 4 and nnz).
  std::int64_t groups() const { return static_cast<std::int64_t>(group_w_.size()); }
  /// Bytes per k-group of the small-block kernel's panel: 16 pixels x 4 k.
  static constexpr std::int64_t kGroupStride = 64;
  /// Whether the avx512_vnni kernel for blocks of at most 16 rows goes by
  /// quads (one vpdpbusd per 4 nonzeros, two shuffles to interleave them)
  /// rather than by k-groups (one vpdpbusd per group of 4 consecutive k
  /// with a nonzero, no shuffles): by quads when there are fewer than
  /// kSmallQuadsPerGroup quads per k-group. On the Zen 5 VM a quad cost
  /// about 2.7 groups' time, over K = 576-4608, at 50-95% random sparsity
  /// (docs/performance.md, "Quads for blocks of at most 16 pixels"): quads
  /// from about 80% sparsity on.
  bool small_block_quads() const { return small_block_quads_; }
  static constexpr double kSmallQuadsPerGroup = 0.35;
  /// The k-chunks the quads of blocks of at most 16 rows go by: 1, or, when
  /// small_block_quads() and K > kSmallChunkMinK, ceil(K / kSmallChunkK).
  /// Their 16-byte-per-k panel is then larger than the L1 (74 KB at K =
  /// 4608), and the kernel takes the quads of one k-chunk (16 KB of panel)
  /// for every channel before the next chunk's, keeping the partial sums
  /// between chunks: 1.36x faster at K = 4608 on a Zen 4 (the quad loop
  /// alone; docs/performance.md, "A Zen 4 machine"), no faster at K = 2304.
  std::int64_t small_chunks() const { return small_chunks_; }
  static constexpr std::int64_t kSmallChunkK = 1024;
  static constexpr std::int64_t kSmallChunkMinK = 2304;
  /// Quads of row n in k-chunk c (k in [c * kSmallChunkK, (c + 1) *
  /// kSmallChunkK)) are [chunk_quad_begin(c, n), chunk_quad_begin(c, n + 1)):
  /// the chunk's nonzeros in k order, 4 per quad, the last padded with zero
  /// weights (vpdpbusd sums 4 products exactly on either grid: no pairing),
  /// offsets and weights as quad_offsets() / quad_weights(). Chunk-major.
  /// Only when small_chunks() > 1.
  std::int64_t chunk_quad_begin(std::int64_t c, std::int64_t n) const {
    return chunk_quad_ptr_[static_cast<std::size_t>(c * n_ + n)];
  }
  const std::uint32_t* chunk_quad_offsets() const { return chunk_quad_off_.data(); }
  const std::int32_t* chunk_quad_weights() const { return chunk_quad_w_.data(); }
  /// Whether vpmaddubsw sums u * a0 + v * a1 into an int16 without saturating
  /// for every pair of activations a0, a1 in [0, 255].
  static constexpr bool pair_fits_int16(int u, int v) {
    const int pos = std::max(u, 0) + std::max(v, 0), neg = std::max(-u, 0) + std::max(-v, 0);
    return Int8Traits::kActivationMax * pos <= INT16_MAX &&
           -Int8Traits::kActivationMax * neg >= INT16_MIN;
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
  std::vector<std::int32_t> quad_w_;
  std::vector<std::int64_t> group_ptr_;
  std::vector<std::uint32_t> group_off_;
  std::vector<std::int32_t> group_w_;
  bool small_block_quads_ = false;
  std::int64_t small_chunks_ = 1;
  std::vector<std::int64_t> chunk_quad_ptr_;
  std::vector<std::uint32_t> chunk_quad_off_;
  std::vector<std::int32_t> chunk_quad_w_;

  /// Quad slots of one row: pairs of nonzero indices (-1: a zero-weight slot).
  using Pair = std::pair<std::int64_t, std::int64_t>;

  /// The nonzeros [b, e) in pairs that fit an int16 (pair_fits_int16), few
  /// of them beside a zero slot, ordered by their first k.
  std::vector<Pair> pair_row(std::int64_t b, std::int64_t e) const {
    auto val = [&](std::int64_t j) { return int(values_[static_cast<std::size_t>(j)]); };
    auto mag = [&](std::int64_t j) { return std::abs(val(j)); };
    std::vector<std::int64_t> pos, neg;
    for (std::int64_t j = b; j < e; ++j) (val(j) > 0 ? pos : neg).push_back(j);
    // Largest magnitudes first (ties: k order, as the indices are).
    auto by_mag = [&](std::int64_t x, std::int64_t y) { return mag(x) > mag(y); };
    std::stable_sort(pos.begin(), pos.end(), by_mag);
    std::stable_sort(neg.begin(), neg.end(), by_mag);
    std::vector<Pair> pairs;
    // Opposite signs always fit: the largest of each sign together.
    const std::size_t cross = std::min(pos.size(), neg.size());
    for (std::size_t i = 0; i < cross; ++i) pairs.emplace_back(pos[i], neg[i]);
    // The surplus sign's smallest weights: the largest that fits with the
    // smallest left, else alone (the most pairs of a sum bound).
    const auto& more = pos.size() > cross ? pos : neg;
    std::size_t lo = more.size() - 1, hi = cross;  // more[hi] largest, more[lo] smallest
    while (hi < more.size() && hi <= lo) {
      if (hi < lo && pair_fits_int16(val(more[hi]), val(more[lo]))) {
        pairs.emplace_back(more[hi], more[lo]);
        --lo;
      } else {
        pairs.emplace_back(more[hi], -1);
      }
      ++hi;
    }
    for (auto& p : pairs)
      if (p.second >= 0 && p.second < p.first) std::swap(p.first, p.second);
    std::sort(pairs.begin(), pairs.end());
    return pairs;
  }

  void build_quads() {
    require<ShapeError>(k_ * kQuadStride <= INT32_MAX, "SparseWeights: K = ", k_, " is too large");
    quad_ptr_.reserve(static_cast<std::size_t>(n_ + 1));
    quad_ptr_.push_back(0);
    std::vector<std::int64_t> slots;  // nonzero indices, -1 for a zero-weight slot
    for (std::int64_t r = 0; r < n_; ++r) {
      const std::int64_t b = row_begin(r), e = row_begin(r + 1);
      slots.clear();
      if (grid_ == WeightGrid::full) {
        for (const auto& [x, y] : pair_row(b, e)) {
          slots.push_back(x);
          slots.push_back(y);
        }
      } else {
        for (std::int64_t j = b; j < e; ++j) slots.push_back(j);
      }
      append_quads(slots, quad_off_, quad_w_);
      quad_ptr_.push_back(static_cast<std::int64_t>(quad_w_.size()));
    }
    build_groups();
  }

  /// Appends the quads of `slots` (nonzero indices, -1 for a zero-weight
  /// slot; padded here to a multiple of 4) to off and w.
  void append_quads(std::vector<std::int64_t>& slots, std::vector<std::uint32_t>& off,
                    std::vector<std::int32_t>& w) const {
    while (slots.size() % 4 != 0) slots.push_back(-1);
    for (std::size_t q = 0; q < slots.size(); q += 4) {
      std::int8_t v[4] = {0, 0, 0, 0};
      // A zero slot repeats the k of the quad's first nonzero slot.
      std::int64_t first = slots[q];
      for (std::size_t i = 0; i < 4 && first < 0; ++i) first = slots[q + i];
      for (std::size_t i = 0; i < 4; ++i) {
        const std::int64_t j = slots[q + i] >= 0 ? slots[q + i] : first;
        off.push_back(static_cast<std::uint32_t>(cols_[static_cast<std::size_t>(j)] * kQuadStride));
        if (slots[q + i] >= 0) v[i] = values_[static_cast<std::size_t>(j)];
      }
      std::int32_t packed;
      std::memcpy(&packed, v, 4);
      w.push_back(packed);
    }
  }

  void build_groups() {
    require<ShapeError>((k_ + 3) / 4 * kGroupStride <= INT32_MAX, "SparseWeights: K = ", k_,
                        " is too large");
    group_ptr_.reserve(static_cast<std::size_t>(n_ + 1));
    group_ptr_.push_back(0);
    for (std::int64_t r = 0; r < n_; ++r) {
      for (std::int64_t j = row_begin(r), e = row_begin(r + 1); j < e;) {
        const std::int64_t g = cols_[static_cast<std::size_t>(j)] / 4;
        std::int8_t w[4] = {0, 0, 0, 0};
        for (; j < e && cols_[static_cast<std::size_t>(j)] / 4 == g; ++j)
          w[cols_[static_cast<std::size_t>(j)] % 4] = values_[static_cast<std::size_t>(j)];
        std::int32_t packed;
        std::memcpy(&packed, w, 4);
        group_off_.push_back(static_cast<std::uint32_t>(g * kGroupStride));
        group_w_.push_back(packed);
      }
      group_ptr_.push_back(static_cast<std::int64_t>(group_w_.size()));
    }
    small_block_quads_ = double(quads()) < kSmallQuadsPerGroup * double(groups());
    if (small_block_quads_ && k_ > kSmallChunkMinK) build_chunk_quads();
  }

  void build_chunk_quads() {
    small_chunks_ = (k_ + kSmallChunkK - 1) / kSmallChunkK;
    chunk_quad_ptr_.reserve(static_cast<std::size_t>(small_chunks_ * n_ + 1));
    chunk_quad_ptr_.push_back(0);
    std::vector<std::int64_t> start(static_cast<std::size_t>(n_));  // each row's next nonzero
    for (std::int64_t r = 0; r < n_; ++r) start[static_cast<std::size_t>(r)] = row_begin(r);
    std::vector<std::int64_t> slots;
    for (std::int64_t c = 0; c < small_chunks_; ++c) {
      const std::int64_t k_end = (c + 1) * kSmallChunkK;
      for (std::int64_t r = 0; r < n_; ++r) {
        std::int64_t& j = start[static_cast<std::size_t>(r)];
        slots.clear();
        for (const std::int64_t e = row_begin(r + 1);
             j < e && cols_[static_cast<std::size_t>(j)] < k_end; ++j)
          slots.push_back(j);
        append_quads(slots, chunk_quad_off_, chunk_quad_w_);
        chunk_quad_ptr_.push_back(static_cast<std::int64_t>(chunk_quad_w_.size()));
      }
    }
  }
};

using SparseWeightsF32 = SparseWeights<float>;
using SparseWeightsS8 = SparseWeights<std::int8_t>;

}  // namespace compressor::kernels
