// The one pass every observer makes over a tensor: its minimum, maximum and
// whether all of it is finite. The loop is an OpenMP `simd` reduction (min,
// max, and an OR of x != x), so the compiler vectorises it without
// -ffast-math; an infinity shows in the min or max, a NaN in the OR. It runs
// at the read rate of a plain vectorised sum (benchmarks/quant); summing
// x - x instead (NaN for NaN and inf alike) was 30% slower, one float-add
// dependency chain.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"

namespace compressor::quant {

/// Minimum and maximum of a tensor, and whether every element was finite.
/// For an empty tensor: min = +inf, max = -inf, finite.
struct MinMax {
  float min = std::numeric_limits<float>::infinity();
  float max = -std::numeric_limits<float>::infinity();
  bool finite = true;
};

// clang reports an `omp simd` loop it did not vectorise (at -O1, as in the
// sanitizer builds, or once inlined into a caller whose context defeats it)
// as a warning; the loop is still correct there, just scalar. The warning is
// reported where the loop ends up, so scan_min_max is never inlined (one
// call per tensor or weight channel): the region below then covers every use.
#if defined(__clang__)
#define COMPRESSOR_QUANT_SIMD_BEGIN \
  _Pragma("clang diagnostic push") _Pragma("clang diagnostic ignored \"-Wpass-failed\"")
#define COMPRESSOR_QUANT_SIMD_END _Pragma("clang diagnostic pop")
#else
#define COMPRESSOR_QUANT_SIMD_BEGIN
#define COMPRESSOR_QUANT_SIMD_END
#endif

COMPRESSOR_QUANT_SIMD_BEGIN
/// One vectorised pass over n floats.
[[gnu::noinline]] inline MinMax scan_min_max(const float* x, std::int64_t n) {
  float mn = std::numeric_limits<float>::infinity();
  float mx = -std::numeric_limits<float>::infinity();
  int nan = 0;
#pragma omp simd reduction(min : mn) reduction(max : mx) reduction(| : nan)
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
    nan |= v != v;
  }
  // An infinity ends up in mn or mx; a NaN only in `nan` (the min/max
  // comparisons skip it).
  return {mn, mx, nan == 0 && (n == 0 || (std::isfinite(mn) && std::isfinite(mx)))};
}

/// scan_min_max(x), throwing ValueError if x holds a NaN or an infinity
/// (`who` names the observer): a non-finite calibration value must not
/// become a scale.
inline MinMax finite_min_max(TensorView<const float> x, std::string_view who) {
  const MinMax r = scan_min_max(x.data(), x.numel());
  if (!r.finite)
    throw ValueError(compressor::detail::concat(
        who, " saw a non-finite value (NaN or inf) in a tensor of shape ", x.shape().str()));
  return r;
}
COMPRESSOR_QUANT_SIMD_END

}  // namespace compressor::quant
