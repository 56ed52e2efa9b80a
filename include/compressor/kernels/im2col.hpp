// im2col_u8: unfolds the taps of an NHWC uint8 convolution input into the
// rows of the int8 GEMM's A matrix (one row of K = KH*KW*C bytes per output
// pixel, (kh, kw, c) order, padding taps = the input zero point, i.e. real 0).
//
// Runs are short for the first layers (9 or 21 bytes for C = 3), so nothing
// calls memcpy per run: interior pixels copy each kh tap row as whole 16- or
// 32-byte moves whose overshoot the next tap row or pixel overwrites (it
// never leaves the output rows of the call nor the input images), borders
// copy exactly.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "compressor/kernels/conv_geometry.hpp"

namespace compressor::kernels {

namespace detail {

/// memcpy of n > 0 bytes as at most a few fixed-size (overlapping) moves, for
/// the short runs of im2col (a call per 9-byte run costs more than the copy).
inline void copy_run(std::uint8_t* dst, const std::uint8_t* src, std::size_t n) {
  if (n >= 32) {
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) std::memcpy(dst + i, src + i, 32);
    if (i < n) std::memcpy(dst + n - 32, src + n - 32, 32);
  } else if (n >= 16) {
    std::memcpy(dst, src, 16);
    std::memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    std::memcpy(dst, src, 8);
    std::memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(dst, src, 4);
    std::memcpy(dst + n - 4, src + n - 4, 4);
  } else {
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}

/// The bytes copy_run_wide moves for a run of n.
inline std::size_t wide_bytes(std::size_t n) {
  return n <= 16 ? 16 : (n + 31) / 32 * 32;
}

/// Copies n bytes as wide_bytes(n) bytes in 16- or 32-byte moves.
inline void copy_run_wide(std::uint8_t* dst, const std::uint8_t* src, std::size_t n) {
  if (n <= 16) {
    std::memcpy(dst, src, 16);
  } else {
    for (std::size_t i = 0; i < n; i += 32) std::memcpy(dst + i, src + i, 32);
  }
}

/// memset of n bytes to v, as copy_run does it.
inline void fill_run(std::uint8_t* dst, std::uint8_t v, std::size_t n) {
  alignas(32) std::uint8_t pattern[32];
  std::memset(pattern, v, sizeof(pattern));
  if (n >= 32) {
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) std::memcpy(dst + i, pattern, 32);
    if (i < n) std::memcpy(dst + n - 32, pattern, 32);
  } else {
    copy_run(dst, pattern, n);
  }
}

/// One kh tap row of `count` interior pixels: run bytes from src (stride
/// step) to dst (stride ld), as WIDE-byte moves (0: wide_bytes(run) at run
/// time) whose overshoot past run stays inside the pixel's row.
template <std::size_t WIDE>
inline void copy_tap_wide(const std::uint8_t* src, std::int64_t step, std::uint8_t* dst,
                          std::int64_t ld, std::int64_t count, std::size_t run) {
  for (std::int64_t i = 0; i < count; ++i, src += step, dst += ld) {
    if constexpr (WIDE > 0) {
      for (std::size_t j = 0; j < WIDE; j += 16) std::memcpy(dst + j, src + j, 16);
    } else {
      copy_run_wide(dst, src, run);
    }
  }
}

/// `count` interior pixels, each tap row kh (KH of them, or kh when KH is 0)
/// one 16-byte move from src[kh] (advancing by inc[kh]: 0 for a padding
/// row's zero-point pattern) to the pixel's row at kh * run; rows ld apart.
template <int KH>
inline void copy_taps_pixel_major(const std::uint8_t* const* src, const std::int64_t* inc,
                                  std::uint8_t* dst, std::int64_t ld, std::int64_t count,
                                  std::size_t run, std::int64_t kh_count) {
  if constexpr (KH > 0) {
    const std::uint8_t* s[KH];
    std::int64_t step[KH];
    for (int kh = 0; kh < KH; ++kh) {
      s[kh] = src[kh];
      step[kh] = inc[kh];
    }
    for (std::int64_t i = 0; i < count; ++i, dst += ld)
      for (int kh = 0; kh < KH; ++kh) {
        std::memcpy(dst + kh * run, s[kh], 16);
        s[kh] += step[kh];
      }
  } else {
    for (std::int64_t i = 0; i < count; ++i, dst += ld)
      for (std::int64_t kh = 0; kh < kh_count; ++kh)
        std::memcpy(dst + kh * static_cast<std::int64_t>(run), src[kh] + i * inc[kh], 16);
  }
}

}  // namespace detail

/// Unfolds output pixels [p0, p1) (flat over N*OH*OW) of an NHWC input into
/// rows of ld >= K bytes: row = (kh, kw, c) taps; taps in the padding get zp.
/// Bytes [K, ld) may be overwritten with anything (the packed weights are
/// zero there). Interior pixels with runs of at most 16 bytes are copied
/// pixel by pixel, one 16-byte move per tap row, when a pixel's overshoot
/// stays inside the next pixel's row (written after it); other interior
/// pixels tap row by tap row, each run as whole 16/32-byte moves when the
/// overshoot stays inside the pixel's ld bytes (the next tap row, copied
/// after, overwrites it). Either way only where the reads stay inside the
/// input; everything else exactly.
inline void im2col_u8(const ConvGeometry& g, std::int64_t H, std::int64_t W, const std::uint8_t* x,
                      std::uint8_t zp, std::int64_t p0, std::int64_t p1, std::uint8_t* out,
                      std::int64_t ld) {
  const std::int64_t OH = g.out_h(H), OW = g.out_w(W), C = g.in_c;
  const auto run = static_cast<std::size_t>(g.kw * C);  // bytes of one kh tap row
  const auto wide = static_cast<std::int64_t>(detail::wide_bytes(run));
  // The input holds the images of pixels [p0, p1); wide reads stay inside it.
  const std::int64_t x_bytes = ((p1 - 1) / (OH * OW) + 1) * H * W * C;
  // Output columns whose taps are all inside the input width.
  const std::int64_t ow_in0 = std::min(OW, (g.pad_w + g.stride_w - 1) / g.stride_w);
  const std::int64_t ow_in1 = std::max(ow_in0, std::min(OW, (W + g.pad_w - g.kw) / g.stride_w + 1));
  const std::int64_t step = g.stride_w * C;
  const std::int64_t col0 = g.pad_w * C;
  // Byte offset in x of each kh tap's input row (-1: padding).
  constexpr int kMaxTaps = 16;
  std::int64_t rows_small[kMaxTaps];
  std::vector<std::int64_t> rows_big;
  std::int64_t* rows = rows_small;
  if (g.kh > kMaxTaps) {
    rows_big.resize(static_cast<std::size_t>(g.kh));
    rows = rows_big.data();
  }
  const auto exact = [&](std::uint8_t* d, std::int64_t ow) {
    // Taps [lo, hi) of the kw are inside the input width, the rest padding.
    const std::int64_t iw0 = ow * g.stride_w - g.pad_w;
    const std::int64_t lo = std::clamp<std::int64_t>(-iw0, 0, g.kw);
    const std::int64_t hi = std::clamp<std::int64_t>(W - iw0, lo, g.kw);
    const auto left = static_cast<std::size_t>(lo * C),
               mid = static_cast<std::size_t>((hi - lo) * C);
    const std::size_t right = run - left - mid;
    for (std::int64_t kh = 0; kh < g.kh; ++kh, d += run) {
      if (rows[kh] < 0) {
        detail::fill_run(d, zp, run);
        continue;
      }
      if (left) detail::fill_run(d, zp, left);
      if (mid) detail::copy_run(d + left, x + rows[kh] + (iw0 + lo) * C, mid);
      if (right) detail::fill_run(d + left + mid, zp, right);
    }
  };
  // Interior columns [a, b) (rows from `first`), one tap row at a time.
  const auto interior_by_tap_rows = [&](std::uint8_t* first, std::int64_t a, std::int64_t b) {
    for (std::int64_t kh = 0; kh < g.kh; ++kh) {
      std::uint8_t* d = first + kh * static_cast<std::int64_t>(run);
      if (rows[kh] < 0) {
        for (std::int64_t ow = a; ow < b; ++ow, d += ld) detail::fill_run(d, zp, run);
        continue;
      }
      const std::int64_t off = rows[kh] + a * step - col0;  // of column a's run in x
      std::int64_t n_wide = 0;
      if (kh * static_cast<std::int64_t>(run) + wide <= ld && off + wide <= x_bytes)
        n_wide = std::min(b - a, (x_bytes - off - wide) / step + 1);
      const std::uint8_t* src = x + off;
      switch (wide) {
        case 16:
          detail::copy_tap_wide<16>(src, step, d, ld, n_wide, run);
          break;
        case 32:
          detail::copy_tap_wide<32>(src, step, d, ld, n_wide, run);
          break;
        default:
          detail::copy_tap_wide<0>(src, step, d, ld, n_wide, run);
      }
      for (std::int64_t i = n_wide; i < b - a; ++i)
        detail::copy_run(d + i * ld, src + i * step, run);
    }
  };
  // Runs of at most 16 bytes go pixel by pixel where a pixel's 16-byte
  // moves spill at most into the next pixel's row (CifarCnn's K = 27 first
  // layer: 3 passes over the rows, the last by exact 9-byte copies, before).
  const bool pixel_major =
      g.kh <= kMaxTaps && run <= 16 && (g.kh - 1) * static_cast<std::int64_t>(run) + 16 <= 2 * ld;
  alignas(16) std::uint8_t zp16[16];
  std::memset(zp16, zp, sizeof(zp16));
  std::uint8_t* dst = out;
  for (std::int64_t p = p0; p < p1;) {
    const std::int64_t n = p / (OH * OW), oh = (p / OW) % OH, ow0 = p % OW;
    const std::int64_t ow1 = std::min(OW, ow0 + (p1 - p));
    for (std::int64_t kh = 0; kh < g.kh; ++kh) {
      const std::int64_t ih = oh * g.stride_h - g.pad_h + kh;
      rows[kh] = ih < 0 || ih >= H ? -1 : (n * H + ih) * W * C;
    }
    const std::int64_t a = std::max(ow0, ow_in0), b = std::max(a, std::min(ow1, ow_in1));
    for (std::int64_t ow = ow0; ow < std::min(a, ow1); ++ow) exact(dst + (ow - ow0) * ld, ow);
    if (pixel_major) {
      // Interior columns [a, b), pixel by pixel, each tap row one 16-byte
      // move (padding rows: zp): the last move of a pixel spills into the
      // next pixel's row, written after it (the right border columns
      // below, or the next output row), so only the call's last pixel, and
      // any pixel whose reads would leave x, are copied exactly.
      std::int64_t rmax = -1;
      for (std::int64_t kh = 0; kh < g.kh; ++kh) rmax = std::max(rmax, rows[kh]);
      const std::int64_t off_a = a * step - col0;           // of column a's run in a tap row
      const bool last = b == ow1 && p + (ow1 - ow0) == p1;  // no pixel of the call follows
      std::int64_t n_fast = std::max<std::int64_t>(0, b - a - (last ? 1 : 0));
      if (rmax >= 0)  // pixel i reads up to rmax + off_a + i * step + 16 <= x_bytes
        n_fast = rmax + off_a + 16 > x_bytes
                     ? 0
                     : std::min(n_fast, (x_bytes - rmax - off_a - 16) / step + 1);
      const std::uint8_t* src[kMaxTaps];
      std::int64_t inc[kMaxTaps];
      for (std::int64_t kh = 0; kh < g.kh; ++kh) {
        src[kh] = rows[kh] < 0 ? zp16 : x + rows[kh] + off_a;
        inc[kh] = rows[kh] < 0 ? 0 : step;
      }
      std::uint8_t* d = dst + (a - ow0) * ld;
      if (g.kh == 3)
        detail::copy_taps_pixel_major<3>(src, inc, d, ld, n_fast, run, 3);
      else
        detail::copy_taps_pixel_major<0>(src, inc, d, ld, n_fast, run, g.kh);
      d += n_fast * ld;
      for (std::int64_t ow = a + n_fast; ow < b; ++ow, d += ld) exact(d, ow);
    } else {
      interior_by_tap_rows(dst + (a - ow0) * ld, a, b);
    }
    for (std::int64_t ow = b; ow < ow1; ++ow) exact(dst + (ow - ow0) * ld, ow);
    dst += (ow1 - ow0) * ld;
    p += ow1 - ow0;
  }
}

}  // namespace compressor::kernels
