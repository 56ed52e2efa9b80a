// Compile-time facts of the int8 kernels that quantization must read: which
// ISA path is compiled in, the tile sizes, and the value ranges the kernels
// compute exactly (docs/quantization.md, "Saturation").
#pragma once

#include <cstdint>
#include <string_view>
#include <xsimd/xsimd.hpp>

namespace compressor::kernels {

// The path follows the compiler's target flags, as xsimd's default arch does:
// -mavx2 -mfma (the project's default) selects the AVX2 kernels; without them
// every public kernel runs its scalar reference.
#if XSIMD_WITH_AVX2 && XSIMD_WITH_FMA3_AVX2
#define COMPRESSOR_KERNELS_AVX2 1
inline constexpr bool kHaveSimdKernels = true;
#else
#define COMPRESSOR_KERNELS_AVX2 0
inline constexpr bool kHaveSimdKernels = false;
#endif

/// Ranges and tiles of the u8 x s8 -> s32 kernels.
///
/// vpmaddubsw adds two u8*s8 products into an int16 with saturation. With
/// activations in [0, 255] and weights in [-64, 64] a pair sum lies in
/// [-2*255*64, 2*255*64] = [-32640, 32640], inside int16, so no saturation
/// can happen and every kernel is exact; 65 would give 33150 > 32767. 8-bit weights ([-128, 127])
/// would reach 2*255*127 = 64770 and saturate. We narrow the weights, not the activations: weights
/// are per-output-channel, so a 7-bit grid per channel costs far less accuracy than a 7-bit
/// per-tensor activation grid. The same range holds on every path (also the scalar one), so a model
/// quantized on one machine runs bit-identically on every other.
struct Int8Traits {
  static constexpr std::int32_t kActivationMin = 0;
  static constexpr std::int32_t kActivationMax = 255;
  /// Weights the kernels accept (packing rejects anything else).
  static constexpr std::int32_t kWeightMin = -64;
  static constexpr std::int32_t kWeightMax = 64;
  /// Symmetric per-channel weight quantization uses q in [-kWeightQMax, kWeightQMax]
  /// with scale = max|w| / kWeightQMax.
  static constexpr std::int32_t kWeightQMax = 64;
  static_assert(2 * kActivationMax * kWeightMax <= INT16_MAX);
  static_assert(2 * kActivationMax * kWeightMin >= INT16_MIN);
};

/// Tile sizes of the AVX2 u8s8 GEMM micro-kernel.
struct GemmU8S8Tiles {
  /// Output channels per tile: 2 ymm of 8 int32 accumulators each.
  static constexpr int kNR = 16;
  /// Rows (pixels) per tile: 4 rows x 2 ymm = 8 accumulators, + 2 weight, 1
  /// broadcast, 1 product and 1 constant register = 13 of the 16 ymm (5 rows
  /// fit in 15 but measured no faster: the loop already runs at the multiply
  /// ports' rate, 1 vpmaddubsw + vpmaddwd pair per cycle).
  static constexpr int kMR = 4;
  /// k values per int32 lane: vpmaddubsw sums 2, vpmaddwd 2 of those.
  static constexpr int kKGroup = 4;
  /// Bytes of A rows per row block: the block stays in L2 (a quarter of
  /// Zen3's 512 KiB) while each weight panel, in L1, sweeps it.
  static constexpr std::int64_t kL2ActivationBytes = 128 * 1024;
  /// Rows of A per row block for rows of kp bytes (a multiple of kMR).
  static constexpr std::int64_t row_block(std::int64_t kp) {
    const std::int64_t rows = kL2ActivationBytes / (kp > 0 ? kp : 1) / kMR * kMR;
    return rows > kMR ? rows : kMR;
  }
};

}  // namespace compressor::kernels
