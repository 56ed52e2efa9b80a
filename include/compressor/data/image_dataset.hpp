// ImageDataset: a Dataset over an in-memory ImageSet, with per-channel
// normalisation and optional training augmentation (crop + flip).
#pragma once

#include <cstdint>
#include <memory>
#include <utility>

#include "compressor/core/error.hpp"
#include "compressor/data/augment.hpp"
#include "compressor/data/dataset.hpp"
#include "compressor/data/image_set.hpp"
#include "compressor/data/normalize.hpp"

namespace compressor::data {

class ImageDataset final : public Dataset {
 public:
  ImageDataset(std::shared_ptr<const ImageSet> set, Normalization norm,
               Augmentation aug = Augmentation::none())
      : set_(std::move(set)), aug_(aug), px_(checked(set_, norm), set_->channels()) {}
  ImageDataset(ImageSet set, Normalization norm, Augmentation aug = Augmentation::none())
      : ImageDataset(std::make_shared<const ImageSet>(std::move(set)), std::move(norm), aug) {}

  std::int64_t size() const override { return set_->size(); }
  Shape sample_shape() const override {
    return Shape{set_->height(), set_->width(), set_->channels()};
  }
  TargetKind target_kind() const override { return TargetKind::label; }

  Target get(std::int64_t i, TensorView<float> out, Rng& rng) const override {
    require(i >= 0 && i < size(), "ImageDataset: index ", i, " out of range [0, ", size(), ")");
    const TensorView<const std::uint8_t> img = set_->images.slice(i);
    if (aug_.enabled())
      augment_image(img, out, aug_, px_, rng);
    else
      normalize_pixels(img, out, px_);
    return Target{set_->labels[i], 0.f};
  }

  const ImageSet& images() const { return *set_; }
  const Augmentation& augmentation() const { return aug_; }

 private:
  static const Normalization& checked(const std::shared_ptr<const ImageSet>& set,
                                      const Normalization& norm) {
    require(set != nullptr, "ImageDataset: null image set");
    require<ShapeError>(set->images.rank() == 4, "ImageDataset: images must be (N, H, W, C), got ",
                        set->images.shape());
    return norm;
  }

  std::shared_ptr<const ImageSet> set_;
  Augmentation aug_;
  PixelAffine px_;
};

}  // namespace compressor::data
