// Facts of the int8 kernels that quantization must read: the value ranges the
// kernels compute exactly on every path (the weight grids), and the tile
// sizes (docs/quantization.md, "Saturation"). Which path runs is a run-time
// fact: kernels/isa.hpp.
#pragma once

#include <cstdint>
#include <string_view>

#include "compressor/kernels/isa.hpp"

namespace compressor::kernels {

/// The symmetric integer grid int8 weights are quantized to.
///
/// narrow [-64, 64]: vpmaddubsw (the AVX2 and AVX-512BW paths) adds two
/// u8*s8 products into an int16 with saturation; with activations in
/// [0, 255] a pair sum stays in [-2*255*64, 2*255*64] = [-32640, 32640], so no
/// saturation can happen (65 would give 33150 > 32767).
/// full [-127, 127]: the whole int8 range but -128 (symmetric). vpdpbusd (the
/// VNNI paths) adds the u8*s8 products straight into int32 and is exact; the
/// AVX2 / AVX-512BW paths run these weights through widening kernels (ymm and
/// zmm: sign-extend to int16, vpmaddwd), slower but exact.
/// Every path computes both grids bit-identically (the scalar one included),
/// so a model quantized once runs the same on every machine.
enum class WeightGrid : std::uint8_t { narrow, full };

constexpr std::int32_t weight_qmax(WeightGrid g) {
  return g == WeightGrid::full ? 127 : 64;
}
/// The weights PackedWeightsU8S8 accepts on grid g: [-weight_qmax, weight_qmax].
constexpr std::int32_t weight_min(WeightGrid g) {
  return -weight_qmax(g);
}
constexpr std::int32_t weight_max(WeightGrid g) {
  return weight_qmax(g);
}
/// "narrow" or "full".
constexpr std::string_view weight_grid_name(WeightGrid g) {
  return g == WeightGrid::full ? "full" : "narrow";
}

/// Ranges of the u8 x s8 -> s32 kernels. The weight constants are those of
/// the narrow grid (the default); the grid functions above give both.
struct Int8Traits {
  static constexpr std::int32_t kActivationMin = 0;
  static constexpr std::int32_t kActivationMax = 255;
  /// Weights of the narrow grid (any path may run them through vpmaddubsw).
  static constexpr std::int32_t kWeightMin = weight_min(WeightGrid::narrow);
  static constexpr std::int32_t kWeightMax = weight_max(WeightGrid::narrow);
  /// Symmetric per-channel weight quantization on the narrow grid uses q in
  /// [-kWeightQMax, kWeightQMax] with scale = max|w| / kWeightQMax.
  static constexpr std::int32_t kWeightQMax = weight_qmax(WeightGrid::narrow);
  static_assert(2 * kActivationMax * kWeightMax <= INT16_MAX);
  static_assert(2 * kActivationMax * kWeightMin >= INT16_MIN);
  static_assert(2 * kActivationMax * (kWeightMax + 1) > INT16_MAX, "the widest such grid");
};

/// Tile sizes of the u8s8 GEMM micro-kernels (simd/arch/*/gemm_u8s8.hpp).
struct GemmU8S8Tiles {
  /// Output channels per packed panel: 16 int32 accumulators, one zmm or two
  /// ymm; a k group of a panel is 16 x 4 bytes = one zmm load.
  static constexpr int kNR = 16;
  /// k values per int32 lane: vpdpbusd sums 4; vpmaddubsw 2, vpmaddwd 2 of those.
  static constexpr int kKGroup = 4;
  /// Rows (pixels) per tile of each kernel, with the register count:
  /// AVX2 vpmaddubsw: 4 rows x 2 ymm = 8 accumulators + 2 weight, 1
  /// broadcast, 1 product and 1 constant register = 13 of 16 ymm (5 rows fit
  /// but measured no faster: the loop runs at the multiply ports' rate).
  static constexpr int kMR = 4;
  /// AVX2 widening (full grid): 4 rows x 2 ymm = 8 accumulators + 4 widened
  /// weight, 2 widened activation registers and 1 constant = 15 of 16 ymm.
  static constexpr int kMRWiden = 4;
  /// AVX-VNNI: 6 rows x 2 ymm = 12 accumulators + 2 weight + 1 broadcast = 15.
  static constexpr int kMRAvxVnni = 6;
  /// AVX-512 (VNNI and BW): 2 panels (2 zmm of weights) x 12 rows = 24
  /// accumulators + 2 weight + 1 broadcast (+ 2 product and 1 constant
  /// registers without VNNI) <= 29 of 32 zmm; the broadcasts, one load each,
  /// are amortized over 2 vpdpbusd.
  static constexpr int kMRZmm = 12;
  static constexpr int kPanelsZmm = 2;
  /// AVX-512BW widening (full grid): 2 panels x 8 rows = 16 accumulators + 4
  /// widened weight, 3 activation (broadcast, even, odd), 1 constant and 2
  /// product registers = 26 of 32 zmm (12 rows would need 34).
  static constexpr int kMRZmmWiden = 8;
  /// Bytes of A rows per row block: the block stays in L2 (a quarter of
  /// Zen3's 512 KiB) while each weight panel, in L1, sweeps it.
  static constexpr std::int64_t kL2ActivationBytes = 128 * 1024;
  /// Rows of A per row block for rows of kp bytes (a multiple of mr).
  static constexpr std::int64_t row_block(std::int64_t kp, int mr = kMR) {
    const std::int64_t rows = kL2ActivationBytes / (kp > 0 ? kp : 1) / mr * mr;
    return rows > mr ? rows : mr;
  }
};

}  // namespace compressor::kernels
