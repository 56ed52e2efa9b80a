// Training augmentation of 8-bit NHWC images, fused with normalisation:
// random crop of the original size from the image padded by `pad` pixels on
// each side, then a horizontal flip with probability 1/2 (torchvision's
// RandomCrop(32, padding=4) + RandomHorizontalFlip for CIFAR-10). Padding is
// black (pixel value 0) before normalisation, as torchvision's default
// padding_mode="constant", or the image mirrored at its edge without
// repeating the edge pixel (padding_mode="reflect": column -1 is column 1).
// Optionally, cutout (DeVries & Taylor, 2017): a square of `cutout` pixels,
// its centre drawn uniformly over the output image and the square clipped at
// the border, set to 0 after normalisation (the dataset's mean colour).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "compressor/core/error.hpp"
#include "compressor/core/rng.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/data/normalize.hpp"

namespace compressor::data {

/// What a random crop sees outside the image.
enum class PadMode {
  zero,     ///< black pixels (torchvision padding_mode="constant", fill 0)
  reflect,  ///< the image mirrored at its edge (padding_mode="reflect")
};

struct Augmentation {
  int pad = 0;         ///< crop offset range [-pad, pad] in each direction
  bool hflip = false;  ///< mirror left-right with probability 1/2
  PadMode pad_mode = PadMode::zero;
  int cutout = 0;  ///< side of the cutout square in pixels (0: none)

  static Augmentation none() { return {}; }
  static Augmentation cifar10_train(PadMode mode = PadMode::zero, int cutout = 0) {
    return {4, true, mode, cutout};
  }
  bool enabled() const { return pad > 0 || hflip || cutout > 0; }
};

/// One draw of the augmentation: a crop offset, whether to mirror, and the
/// cutout square's centre (cut == 0: no cutout).
struct AugmentDraw {
  std::int64_t dy = 0, dx = 0;
  bool flip = false;
  PadMode pad_mode = PadMode::zero;
  std::int64_t cut = 0, cy = 0, cx = 0;
};

/// Index i of a row of n pixels padded by reflection (i in [-(n-1), 2n-2]).
inline std::int64_t reflect_index(std::int64_t i, std::int64_t n) {
  if (n == 1) return 0;
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

/// Draws the crop offset, the flip and the cutout centre from rng (in that
/// order; nothing is drawn for a disabled step). Cutout needs the image's
/// height h and width w.
inline AugmentDraw draw_augmentation(const Augmentation& aug, Rng& rng, std::int64_t h = 0,
                                     std::int64_t w = 0) {
  require(aug.pad >= 0, "augmentation: pad must be >= 0, got ", aug.pad);
  require(aug.cutout >= 0, "augmentation: cutout must be >= 0, got ", aug.cutout);
  AugmentDraw d;
  d.pad_mode = aug.pad_mode;
  if (aug.pad > 0) {
    const auto range = static_cast<std::uint64_t>(2 * aug.pad + 1);
    d.dy = static_cast<std::int64_t>(rng.below(range)) - aug.pad;
    d.dx = static_cast<std::int64_t>(rng.below(range)) - aug.pad;
  }
  d.flip = aug.hflip && rng.below(2) == 1;
  if (aug.cutout > 0) {
    require<ShapeError>(h > 0 && w > 0, "augmentation: cutout needs the image size, got ", h, "x",
                        w);
    d.cut = aug.cutout;
    d.cy = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(h)));
    d.cx = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(w)));
  }
  return d;
}

/// Sets out's pixels (H, W, C) inside d's cutout square to 0.
inline void apply_cutout(TensorView<float> out, const AugmentDraw& d) {
  if (d.cut <= 0) return;
  const std::int64_t h = out.dim(0), w = out.dim(1), c = out.dim(2);
  const std::int64_t y0 = std::max<std::int64_t>(0, d.cy - d.cut / 2);
  const std::int64_t y1 = std::min<std::int64_t>(h, d.cy - d.cut / 2 + d.cut);
  const std::int64_t x0 = std::max<std::int64_t>(0, d.cx - d.cut / 2);
  const std::int64_t x1 = std::min<std::int64_t>(w, d.cx - d.cut / 2 + d.cut);
  for (std::int64_t y = y0; y < y1; ++y)
    std::fill_n(out.data() + (y * w + x0) * c, (x1 - x0) * c, 0.f);
}

/// Writes img (H, W, C) into out (H, W, C) as floats normalised by px,
/// shifted and mirrored as d says; pixels from outside the image are black or
/// reflected (d.pad_mode); then d's cutout square is zeroed.
inline void apply_augmentation(TensorView<const std::uint8_t> img, TensorView<float> out,
                               const AugmentDraw& d, const PixelAffine& px) {
  check_same_shape(out.shape(), img.shape(), "augment_image output");
  require<ShapeError>(img.rank() == 3, "augment_image: expected an (H, W, C) image, got ",
                      img.shape());
  const std::int64_t h = img.dim(0), w = img.dim(1), c = img.dim(2);
  if (d.pad_mode == PadMode::reflect) {
    require<ShapeError>(std::abs(d.dy) < h && std::abs(d.dx) < w, "augment_image: reflect ",
                        "padding by (", d.dy, ", ", d.dx, ") needs an image larger than that, got ",
                        img.shape());
    for (std::int64_t y = 0; y < h; ++y) {
      const std::int64_t sy = reflect_index(y + d.dy, h);
      for (std::int64_t x = 0; x < w; ++x) {
        const std::int64_t sx = reflect_index((d.flip ? w - 1 - x : x) + d.dx, w);
        const std::uint8_t* s = img.data() + (sy * w + sx) * c;
        float* o = out.data() + (y * w + x) * c;
        for (std::int64_t k = 0; k < c; ++k) o[k] = px(s[k], static_cast<std::size_t>(k));
      }
    }
  } else {
    const std::uint8_t* src = img.data();
    float* dst = out.data();
    for (std::int64_t y = 0; y < h; ++y) {
      const std::int64_t sy = y + d.dy;
      for (std::int64_t x = 0; x < w; ++x) {
        const std::int64_t sx = (d.flip ? w - 1 - x : x) + d.dx;
        float* o = dst + (y * w + x) * c;
        if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
          for (std::int64_t k = 0; k < c; ++k) o[k] = px.bias[static_cast<std::size_t>(k)];
        } else {
          const std::uint8_t* s = src + (sy * w + sx) * c;
          for (std::int64_t k = 0; k < c; ++k) o[k] = px(s[k], static_cast<std::size_t>(k));
        }
      }
    }
  }
  apply_cutout(out, d);
}

/// Writes img (H, W, C) into out (H, W, C) as floats normalised by px, with
/// the crop offset, flip and cutout square drawn from rng.
inline void augment_image(TensorView<const std::uint8_t> img, TensorView<float> out,
                          const Augmentation& aug, const PixelAffine& px, Rng& rng) {
  require<ShapeError>(img.rank() == 3, "augment_image: expected an (H, W, C) image, got ",
                      img.shape());
  apply_augmentation(img, out, draw_augmentation(aug, rng, img.dim(0), img.dim(1)), px);
}

/// The same for a clip (T, H, W, C): one draw, applied to every frame.
inline void augment_clip(TensorView<const std::uint8_t> clip, TensorView<float> out,
                         const Augmentation& aug, const PixelAffine& px, Rng& rng) {
  check_same_shape(out.shape(), clip.shape(), "augment_clip output");
  require<ShapeError>(clip.rank() == 4, "augment_clip: expected a (T, H, W, C) clip, got ",
                      clip.shape());
  const AugmentDraw d = draw_augmentation(aug, rng, clip.dim(1), clip.dim(2));
  for (std::int64_t t = 0; t < clip.dim(0); ++t)
    apply_augmentation(clip.slice(t), out.slice(t), d, px);
}

/// Converts 8-bit pixels (any shape, channels last) to normalised floats.
inline void normalize_pixels(TensorView<const std::uint8_t> in, TensorView<float> out,
                             const PixelAffine& px) {
  check_same_shape(out.shape(), in.shape(), "normalize_pixels output");
  const std::int64_t c = in.dim(-1);
  const std::int64_t n = in.numel();
  const std::uint8_t* s = in.data();
  float* d = out.data();
  for (std::int64_t i = 0; i < n; i += c)
    for (std::int64_t k = 0; k < c; ++k) d[i + k] = px(s[i + k], static_cast<std::size_t>(k));
}

}  // namespace compressor::data
