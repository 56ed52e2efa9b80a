#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <memory>
#include <set>

#include "compressor/data/augment.hpp"
#include "compressor/data/image_dataset.hpp"
#include "compressor/data/loader.hpp"
#include "data/data_test_util.hpp"

using namespace compressor;
using namespace compressor::data;
using Catch::Matchers::Contains;

namespace {

/// n images of 6x5x3 whose pixels encode the image index; labels = index % 4.
ImageSet indexed_images(std::int64_t n) {
  ImageSet s;
  s.classes = {"a", "b", "c", "d"};
  s.images.resize(Shape{n, 6, 5, 3});
  s.labels.resize(Shape{n});
  for (std::int64_t i = 0; i < n; ++i) {
    s.labels[i] = static_cast<std::int32_t>(i % 4);
    auto img = s.images.slice(i);
    for (std::int64_t k = 0; k < img.numel(); ++k) img[k] = std::uint8_t((i * 31 + k * 7) % 251);
  }
  return s;
}

/// A regression data set whose samples are filled with their index; samples
/// in `bad` throw IoError.
class FlakyDataset final : public Dataset {
 public:
  FlakyDataset(std::int64_t n, std::set<std::int64_t> bad) : n_(n), bad_(std::move(bad)) {}
  std::int64_t size() const override { return n_; }
  Shape sample_shape() const override { return Shape{2, 3}; }
  TargetKind target_kind() const override { return TargetKind::value; }
  Target get(std::int64_t i, TensorView<float> out, Rng& rng) const override {
    if (bad_.count(i)) throw IoError("clip_" + std::to_string(i) + ".avi: corrupt");
    out.fill(float(i));
    out[0] = float(rng.uniform());  // augmentation stand-in
    return Target{-1, float(i) * 0.5f};
  }

 private:
  std::int64_t n_;
  std::set<std::int64_t> bad_;
};

std::vector<Batch> whole_epoch(DataLoader& loader, std::uint64_t epoch) {
  loader.start_epoch(epoch);
  std::vector<Batch> out;
  Batch b;
  while (loader.next(b)) out.push_back(b);
  return out;
}

bool same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!(a[i].inputs.shape() == b[i].inputs.shape())) return false;
    if (!std::equal(a[i].inputs.flat().begin(), a[i].inputs.flat().end(),
                    b[i].inputs.flat().begin()))
      return false;
    if (!std::equal(a[i].labels.flat().begin(), a[i].labels.flat().end(),
                    b[i].labels.flat().begin()))
      return false;
  }
  return true;
}

}  // namespace

TEST_CASE("augment: without augmentation pixels are only normalised", "[data][augment]") {
  const ImageSet s = indexed_images(1);
  const Normalization norm{{0.5f, 0.4f, 0.3f}, {0.2f, 0.25f, 0.3f}};
  const PixelAffine px(norm, 3);
  Tensor<float> out(Shape{6, 5, 3});
  Rng rng(1);
  augment_image(s.images.slice(0), out, Augmentation::none(), px, rng);
  for (std::int64_t k = 0; k < out.numel(); ++k) {
    const auto c = static_cast<std::size_t>(k % 3);
    // v * scale + bias in float: terms near 2.5 cancel, so a relative bound
    // alone fails near 0 without FMA contraction (the no -m flags build).
    CHECK(out[k] ==
          Approx((s.images[k] / 255.0 - norm.mean[c]) / norm.std[c]).epsilon(1e-5).margin(1e-6));
  }
}

TEST_CASE("augment: crop+flip output is a padded shift or mirror of the input", "[data][augment]") {
  const ImageSet s = indexed_images(1);
  const PixelAffine px(Normalization::unit(), 3);
  const auto img = s.images.slice(0);
  const Augmentation aug{2, true};
  std::map<std::tuple<int, int, int>, int> seen;
  Tensor<float> out(Shape{6, 5, 3});
  for (int trial = 0; trial < 1000; ++trial) {
    Rng rng = Rng::derive(7, std::uint64_t(trial));
    augment_image(img, out, aug, px, rng);
    int matches = 0;
    for (int dy = -2; dy <= 2; ++dy)
      for (int dx = -2; dx <= 2; ++dx)
        for (int flip = 0; flip < 2; ++flip) {
          bool ok = true;
          for (int y = 0; y < 6 && ok; ++y)
            for (int x = 0; x < 5 && ok; ++x) {
              const int sy = y + dy, sx = (flip ? 4 - x : x) + dx;
              for (int c = 0; c < 3; ++c) {
                const float want =
                    (sy < 0 || sy >= 6 || sx < 0 || sx >= 5) ? 0.f : float(img(sy, sx, c)) / 255.f;
                if (std::abs(out(y, x, c) - want) > 1e-6f) ok = false;
              }
            }
          if (ok) {
            ++matches;
            seen[{dy, dx, flip}]++;
          }
        }
    REQUIRE(matches == 1);
  }
  CHECK(seen.size() == 50);  // every offset and flip occurs
  for (const auto& [key, count] : seen) CHECK(count > 5);
}

TEST_CASE("augment: reflect padding mirrors the image at its edge, as torch's 'reflect'",
          "[data][augment]") {
  // torch.nn.functional.pad(torch.arange(5.).view(1, 1, 5), (2, 2), mode="reflect")
  // is [2, 1, 0, 1, 2, 3, 4, 3, 2].
  const std::int64_t golden[] = {2, 1, 0, 1, 2, 3, 4, 3, 2};
  for (std::int64_t i = -2; i <= 6; ++i) CHECK(reflect_index(i, 5) == golden[i + 2]);
  const ImageSet s = indexed_images(1);
  const PixelAffine px(Normalization::unit(), 3);
  const auto img = s.images.slice(0);  // 6 x 5 x 3
  // The padded image built by its definition, then every crop and flip.
  const int pad = 2, H = 6 + 2 * pad, W = 5 + 2 * pad;
  const auto mirror = [](int p, int n) { return p < 0 ? -p : (p >= n ? 2 * (n - 1) - p : p); };
  Tensor<float> out(Shape{6, 5, 3});
  for (int dy = -pad; dy <= pad; ++dy)
    for (int dx = -pad; dx <= pad; ++dx)
      for (bool flip : {false, true}) {
        AugmentDraw d;
        d.dy = dy;
        d.dx = dx;
        d.flip = flip;
        d.pad_mode = PadMode::reflect;
        apply_augmentation(img, out, d, px);
        for (int y = 0; y < 6; ++y)
          for (int x = 0; x < 5; ++x) {
            const int py = y + dy + pad,
                      pxx = (flip ? 4 - x : x) + dx + pad;  // in the padded image
            REQUIRE(py >= 0);
            REQUIRE(py < H);
            REQUIRE(pxx < W);
            const int sy = mirror(py - pad, 6), sx = mirror(pxx - pad, 5);
            for (int c = 0; c < 3; ++c) {
              INFO("dy " << dy << " dx " << dx << " flip " << flip << " at " << y << "," << x);
              CHECK(out(y, x, c) == Approx(float(img(sy, sx, c)) / 255.f));
            }
          }
      }
  // Random draws keep the mode; a shift as large as the image is an error.
  Rng rng(3);
  CHECK(draw_augmentation(Augmentation::cifar10_train(PadMode::reflect), rng).pad_mode ==
        PadMode::reflect);
  AugmentDraw too_far;
  too_far.dy = 6;
  too_far.pad_mode = PadMode::reflect;
  CHECK_THROWS_AS(apply_augmentation(img, out, too_far, px), ShapeError);
}

TEST_CASE("augment: cutout zeroes a square clipped at the border, centred anywhere",
          "[data][augment]") {
  const ImageSet s = indexed_images(2);
  const PixelAffine px(Normalization::unit(), 3);
  const auto img = s.images.slice(1);  // 6 x 5 x 3, no zero pixel
  for (std::int64_t k = 0; k < img.numel(); ++k) REQUIRE(img[k] != 0);
  for (const int cut : {3, 4}) {
    const Augmentation aug{0, false, PadMode::zero, cut};
    REQUIRE(aug.enabled());
    std::set<std::pair<std::int64_t, std::int64_t>> centres;
    Tensor<float> out(Shape{6, 5, 3});
    for (int trial = 0; trial < 600; ++trial) {
      Rng rng = Rng::derive(11, std::uint64_t(trial));
      Rng replay = rng;
      const AugmentDraw d = draw_augmentation(aug, replay, 6, 5);
      augment_image(img, out, aug, px, rng);
      REQUIRE(d.cut == cut);
      centres.insert({d.cy, d.cx});
      // The square [c - cut/2, c - cut/2 + cut) in each direction, clipped.
      for (std::int64_t y = 0; y < 6; ++y)
        for (std::int64_t x = 0; x < 5; ++x) {
          const bool inside = y >= d.cy - cut / 2 && y < d.cy - cut / 2 + cut &&
                              x >= d.cx - cut / 2 && x < d.cx - cut / 2 + cut;
          for (std::int64_t c = 0; c < 3; ++c) {
            INFO("cut " << cut << " centre " << d.cy << "," << d.cx << " at " << y << "," << x);
            REQUIRE(out(y, x, c) == (inside ? 0.f : px(img(y, x, c), static_cast<std::size_t>(c))));
          }
        }
    }
    CHECK(centres.size() == 30);  // every pixel is a centre
  }
  // Cutout draws after the crop and flip, so those stay the same draws.
  const Augmentation plain = Augmentation::cifar10_train(PadMode::reflect);
  const Augmentation with_cut = Augmentation::cifar10_train(PadMode::reflect, 8);
  for (int trial = 0; trial < 50; ++trial) {
    Rng a = Rng::derive(5, std::uint64_t(trial)), b = a;
    const AugmentDraw da = draw_augmentation(plain, a), db = draw_augmentation(with_cut, b, 32, 32);
    CHECK((da.dy == db.dy && da.dx == db.dx && da.flip == db.flip && da.cut == 0 && db.cut == 8));
  }
  Rng rng(3);
  CHECK_THROWS_AS(draw_augmentation(with_cut, rng), ShapeError);  // no image size given
  CHECK_THROWS(draw_augmentation(Augmentation{0, false, PadMode::zero, -1}, rng, 6, 5));
}

TEST_CASE("loader: every sample once per epoch, partial last batch, drop_last", "[data][loader]") {
  auto ds = std::make_shared<ImageDataset>(indexed_images(23), Normalization::unit());
  for (int prefetch : {0, 2}) {
    LoaderOptions opt;
    opt.batch_size = 5;
    opt.prefetch = prefetch;
    DataLoader loader(ds, opt);
    CHECK(loader.num_batches() == 5);
    CHECK(loader.num_samples() == 23);
    const auto epoch = whole_epoch(loader, 0);
    REQUIRE(epoch.size() == 5);
    CHECK(epoch.back().size() == 3);
    std::multiset<int> labels_seen;
    std::int64_t total = 0;
    for (const auto& b : epoch) {
      CHECK(b.inputs.shape() == Shape{b.size(), 6, 5, 3});
      CHECK(b.targets.numel() == 0);
      total += b.size();
      for (std::int64_t k = 0; k < b.size(); ++k) labels_seen.insert(b.labels[k]);
    }
    CHECK(total == 23);
    CHECK(labels_seen.count(0) == 6);  // indices 0,4,...,20
    CHECK(labels_seen.count(3) == 5);

    opt.drop_last = true;
    DataLoader dropping(ds, opt);
    CHECK(dropping.num_batches() == 4);
    CHECK(dropping.num_samples() == 20);
    const auto e2 = whole_epoch(dropping, 0);
    CHECK(e2.size() == 4);
    for (const auto& b : e2) CHECK(b.size() == 5);
  }
}

TEST_CASE("loader: each batch holds the samples of the epoch order", "[data][loader]") {
  auto ds = std::make_shared<FlakyDataset>(17, std::set<std::int64_t>{});
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.seed = 3;
  DataLoader loader(ds, opt);
  const auto order = loader.epoch_order(2);
  const auto epoch = whole_epoch(loader, 2);
  std::size_t at = 0;
  for (const auto& b : epoch) {
    REQUIRE(b.targets.shape() == Shape{b.size(), 1});
    CHECK(b.labels.numel() == 0);
    for (std::int64_t k = 0; k < b.size(); ++k, ++at) {
      CHECK(b.inputs(k, 1, 2) == float(order[at]));
      CHECK(b.targets(k, 0) == float(order[at]) * 0.5f);
    }
  }
  CHECK(at == 17);
  std::vector<std::int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (std::int64_t i = 0; i < 17; ++i) CHECK(sorted[std::size_t(i)] == i);
}

TEST_CASE("loader: same batches for any prefetch depth and thread count", "[data][loader]") {
  auto ds = std::make_shared<ImageDataset>(indexed_images(37), Normalization::cifar10(),
                                           Augmentation{2, true});
  auto run = [&](int prefetch, int threads, std::uint64_t seed, std::uint64_t epoch) {
    LoaderOptions opt;
    opt.batch_size = 8;
    opt.prefetch = prefetch;
    opt.threads = threads;
    opt.seed = seed;
    DataLoader loader(ds, opt);
    return whole_epoch(loader, epoch);
  };
  const auto ref = run(0, 1, 11, 1);
  CHECK(same_batches(ref, run(2, 1, 11, 1)));
  CHECK(same_batches(ref, run(3, 2, 11, 1)));
  CHECK(same_batches(ref, run(1, 4, 11, 1)));
  CHECK_FALSE(same_batches(ref, run(0, 1, 11, 2)));  // another epoch: another order
  CHECK_FALSE(same_batches(ref, run(0, 1, 12, 1)));  // another seed

  LoaderOptions plain;
  plain.shuffle = false;
  plain.batch_size = 37;
  DataLoader unshuffled(ds, plain);
  const auto e = whole_epoch(unshuffled, 5);
  for (std::int64_t k = 0; k < 37; ++k) CHECK(e[0].labels[k] == k % 4);
}

TEST_CASE("loader: restarting an epoch midway and destroying with batches queued",
          "[data][loader]") {
  auto ds = std::make_shared<FlakyDataset>(50, std::set<std::int64_t>{});
  LoaderOptions opt;
  opt.batch_size = 3;
  opt.prefetch = 4;
  DataLoader loader(ds, opt);
  Batch b;
  loader.start_epoch(0);
  REQUIRE(loader.next(b));
  REQUIRE(loader.next(b));
  const auto full = whole_epoch(loader, 0);  // restarts epoch 0 from its start
  CHECK(full.size() == 17);
  DataLoader fresh(ds, opt);
  CHECK(same_batches(full, whole_epoch(fresh, 0)));
  loader.start_epoch(1);
  REQUIRE(loader.next(b));
  // ~DataLoader stops the worker with batches still queued.
}

TEST_CASE("loader: a bad sample stops with its error by default", "[data][loader]") {
  auto ds = std::make_shared<FlakyDataset>(10, std::set<std::int64_t>{6});
  for (int prefetch : {0, 2}) {
    LoaderOptions opt;
    opt.batch_size = 4;
    opt.shuffle = false;
    opt.prefetch = prefetch;
    DataLoader loader(ds, opt);
    Batch b;
    loader.start_epoch(0);
    REQUIRE(loader.next(b));
    CHECK_THROWS_WITH(loader.next(b), Contains("clip_6.avi") && Contains("corrupt"));
    CHECK_FALSE(loader.next(b));  // the epoch ended with the error
  }
}

TEST_CASE("loader: skip drops bad samples with one warning each", "[data][loader]") {
  auto ds = std::make_shared<FlakyDataset>(10, std::set<std::int64_t>{1, 6, 7});
  testing::WarningLog log;
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.errors = log.skip_policy();
  opt.threads = 2;
  DataLoader loader(ds, opt);
  for (std::uint64_t epoch = 0; epoch < 3; ++epoch) {
    std::set<float> seen;
    for (const auto& b : whole_epoch(loader, epoch))
      for (std::int64_t k = 0; k < b.size(); ++k) seen.insert(b.targets[k] * 2.f);
    CHECK(seen == std::set<float>{0, 2, 3, 4, 5, 8, 9});
  }
  CHECK(loader.skipped() == 3);
  CHECK(loader.num_samples() == 7);
  REQUIRE(log.messages.size() == 3);
  CHECK(log.any_contains("clip_7.avi: corrupt (skipped)"));
}

TEST_CASE("loader: a batch whose samples are all bad is passed over", "[data][loader]") {
  auto ds = std::make_shared<FlakyDataset>(6, std::set<std::int64_t>{2, 3});
  testing::WarningLog log;
  LoaderOptions opt;
  opt.batch_size = 2;
  opt.shuffle = false;
  opt.errors = log.skip_policy();
  DataLoader loader(ds, opt);
  const auto e = whole_epoch(loader, 0);
  REQUIRE(e.size() == 2);
  CHECK(e[1].targets[0] == 2.f);  // sample 4
}

TEST_CASE("loader: invalid options are rejected", "[data][loader]") {
  auto ds = std::make_shared<FlakyDataset>(3, std::set<std::int64_t>{});
  LoaderOptions opt;
  opt.batch_size = 0;
  CHECK_THROWS_AS(DataLoader(ds, opt), ValueError);
  opt.batch_size = 1;
  opt.threads = 0;
  CHECK_THROWS_AS(DataLoader(ds, opt), ValueError);
  CHECK_THROWS_AS(DataLoader(nullptr, LoaderOptions{}), ValueError);
}

TEST_CASE("augment: a clip gets one shift and flip for all its frames", "[data][augment]") {
  Tensor<std::uint8_t> clip(Shape{3, 5, 6, 1});
  for (std::int64_t i = 0; i < clip.numel(); ++i)
    clip[i] = static_cast<std::uint8_t>((i * 7) % 256);
  // Frame t+1 is frame t plus 1 everywhere, so the same transform keeps the offset.
  for (std::int64_t t = 1; t < 3; ++t)
    for (std::int64_t p = 0; p < 30; ++p)
      clip(t, p / 6, p % 6, 0) = static_cast<std::uint8_t>(clip(0, p / 6, p % 6, 0) + t);
  const PixelAffine px(Normalization::unit(), 1);
  Tensor<float> out(clip.shape());
  for (std::uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    augment_clip(clip.view(), out, Augmentation{2, true}, px, rng);
    for (std::int64_t t = 1; t < 3; ++t)
      for (std::int64_t p = 0; p < 30; ++p) {
        const float f0 = out(0, p / 6, p % 6, 0), ft = out(t, p / 6, p % 6, 0);
        if (f0 != 0.f) CHECK(ft == Approx(f0 + static_cast<float>(t) / 255.f));  // 0 = padding
      }
  }
}

TEST_CASE("subset: a loader over samples [begin, begin + count) of a data set", "[data][loader]") {
  auto base = std::make_shared<FlakyDataset>(20, std::set<std::int64_t>{3});
  auto sub = std::make_shared<Subset>(base, 12, 5);
  CHECK(sub->size() == 5);
  CHECK(sub->sample_shape() == base->sample_shape());
  CHECK(sub->target_kind() == TargetKind::value);
  LoaderOptions opt;
  opt.batch_size = 2;
  opt.shuffle = false;
  DataLoader loader(sub, opt);
  const auto epoch = whole_epoch(loader, 0);
  REQUIRE(epoch.size() == 3);
  std::vector<float> targets;
  for (const auto& b : epoch)
    for (std::int64_t k = 0; k < b.size(); ++k) {
      targets.push_back(b.targets[k]);
      CHECK(b.inputs.slice(k)[1] == b.targets[k] * 2);  // the base's sample, not another's
    }
  CHECK(targets == std::vector<float>{6.f, 6.5f, 7.f, 7.5f, 8.f});

  // Errors name the base's sample; out-of-range subsets are refused.
  Subset with_bad(base, 2, 3);
  Tensor<float> out(base->sample_shape());
  Rng rng(1);
  CHECK_THROWS_WITH(with_bad.get(1, out.view(), rng), Contains("clip_3.avi"));
  CHECK(with_bad.describe(1) == "sample 3");
  CHECK_THROWS_WITH(Subset(base, 18, 3), Contains("[18, 21)") && Contains("20"));
  CHECK_THROWS_WITH(Subset(base, -1, 2), Contains("Subset"));
  CHECK_THROWS_WITH(with_bad.get(3, out.view(), rng), Contains("sample 3 of 3"));
}
