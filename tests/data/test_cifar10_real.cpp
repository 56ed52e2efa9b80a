// The real CIFAR-10 (../shared/data/cifar10-jpeg.tar.gz), unpacked into the
// build tree by the data_cifar10_unpack fixture.
#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>

#include "compressor/data/image_dataset.hpp"
#include "compressor/data/image_folder.hpp"
#include "compressor/data/loader.hpp"

using namespace compressor;
using namespace compressor::data;

namespace {
const std::filesystem::path kRoot =
    std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "cifar10" / "cifar10-jpeg";
}

TEST_CASE("cifar10 jpeg: the test split has 10 classes of 1,000 32x32 images",
          "[data][cifar][shared]") {
  const ImageSet test = load_image_folder(kRoot / "test");
  CHECK(test.classes == std::vector<std::string>{"airplane", "automobile", "bird", "cat", "deer",
                                                 "dog", "frog", "horse", "ship", "truck"});
  REQUIRE(test.images.shape() == Shape{10000, 32, 32, 3});
  for (auto c : test.class_counts()) CHECK(c == 1000);
  CHECK(test.skipped == 0);

  // Per-channel mean and std over the test set are close to CIFAR-10's
  // standard statistics (JPEG at quality ~75 moves them a little).
  const auto norm = Normalization::cifar10();
  double sum[3] = {0, 0, 0}, sq[3] = {0, 0, 0};
  for (std::int64_t k = 0; k < test.images.numel(); ++k) {
    const double v = test.images[k] / 255.0;
    sum[k % 3] += v;
    sq[k % 3] += v * v;
  }
  const double n = double(test.images.numel() / 3);
  for (int c = 0; c < 3; ++c) {
    const double mean = sum[c] / n;
    CHECK(mean == Approx(norm.mean[std::size_t(c)]).margin(0.01));
    CHECK(std::sqrt(sq[c] / n - mean * mean) == Approx(norm.std[std::size_t(c)]).margin(0.01));
  }
}

TEST_CASE("cifar10 jpeg: a training loader over part of the train split", "[data][cifar][shared]") {
  ImageFolderOptions opt;
  opt.max_per_class = 500;
  auto train = std::make_shared<const ImageSet>(load_image_folder(kRoot / "train", opt));
  REQUIRE(train->size() == 5000);
  auto ds = std::make_shared<ImageDataset>(train, Normalization::cifar10(),
                                           Augmentation::cifar10_train());
  LoaderOptions lo;
  lo.batch_size = 128;
  lo.seed = 1;
  DataLoader loader(ds, lo);
  loader.start_epoch(0);
  Batch b;
  std::int64_t seen = 0, batches = 0;
  double sum = 0;
  std::vector<std::int64_t> per_class(10, 0);
  while (loader.next(b)) {
    ++batches;
    seen += b.size();
    REQUIRE(b.inputs.shape() == Shape{b.size(), 32, 32, 3});
    for (float v : b.inputs.flat()) sum += v;
    for (auto l : b.labels.flat()) per_class[std::size_t(l)]++;
  }
  CHECK(batches == 40);
  CHECK(seen == 5000);
  for (auto c : per_class) CHECK(c == 500);
  // Normalised data is centred near 0 (padding adds a little negative mass).
  CHECK(sum / double(seen * 32 * 32 * 3) < 0.0);
  CHECK(sum / double(seen * 32 * 32 * 3) > -0.5);
}
