#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <set>
#include <string>

#include "compressor/data/echonet.hpp"
#include "compressor/data/synthetic_echo.hpp"
#include "compressor/data/video_encode.hpp"
#include "data/data_test_util.hpp"
#include "data/quiet_ffmpeg.hpp"

using namespace compressor;
using namespace compressor::data;
using Catch::Matchers::Contains;

namespace {

/// A synthetic set of 12 clips, generated once per test run.
const std::filesystem::path& synthetic_set() {
  static const std::filesystem::path dir = [] {
    const auto d = testing::scratch_dir("echonet_synthetic");
    SyntheticEchoOptions opt;
    opt.count = 12;
    opt.seed = 5;
    opt.val_fraction = opt.test_fraction = 0.25;
    generate_synthetic_echo(d, opt);
    return d;
  }();
  return dir;
}

EchoNetOptions small_clips() {
  EchoNetOptions o;
  o.clip = ClipSpec{6, 32, 40};
  return o;
}

/// A data set folder with the given FileList.csv text and, in Videos/, copies
/// of synthetic clips under the given names.
std::filesystem::path custom_set(std::string_view name, std::string_view filelist,
                                 const std::vector<std::string>& videos) {
  const auto dir = testing::scratch_dir(name);
  testing::write_bytes(dir / "FileList.csv", filelist);
  std::filesystem::create_directories(dir / "Videos");
  for (std::size_t i = 0; i < videos.size(); ++i)
    std::filesystem::copy_file(
        synthetic_set() / "Videos" / synthetic_echo_name(std::int64_t(i)) += ".avi",
        dir / "Videos" / (videos[i] + ".avi"));
  return dir;
}

std::map<float, int> ef_counts(BatchSource& src, std::uint64_t epoch, const Shape& clip_shape) {
  std::map<float, int> seen;
  src.start_epoch(epoch);
  Batch b;
  while (src.next(b)) {
    REQUIRE(b.inputs.shape() == Shape{b.size(), clip_shape[0], clip_shape[1], clip_shape[2], 3});
    REQUIRE(b.targets.shape() == Shape{b.size(), 1});
    for (std::int64_t k = 0; k < b.size(); ++k) seen[b.targets[k]]++;
  }
  return seen;
}

}  // namespace

TEST_CASE("echonet: splits from FileList.csv, loaders give clips and EF", "[data][echonet]") {
  const EchoNet echo(synthetic_set(), small_clips());
  CHECK(echo.has_split_column());
  CHECK(echo.skipped() == 0);
  CHECK(echo.records(EchoSplit::train).size() == 6);
  CHECK(echo.records(EchoSplit::val).size() == 3);
  CHECK(echo.records(EchoSplit::test).size() == 3);

  LoaderOptions lo;
  lo.batch_size = 4;
  lo.seed = 1;
  auto train = echo.loader(EchoSplit::train, lo);
  CHECK(train->num_batches() == 2);
  CHECK(train->num_samples() == 6);
  std::map<float, int> want;
  for (const auto& r : echo.records(EchoSplit::train)) want[r.ef]++;
  CHECK(ef_counts(*train, 0, Shape{6, 32, 40}) == want);

  Batch b;
  train->start_epoch(0);
  REQUIRE(train->next(b));
  float lo_v = 1e9f, hi_v = -1e9f;
  for (float v : b.inputs.flat()) lo_v = std::min(lo_v, v), hi_v = std::max(hi_v, v);
  CHECK(lo_v >= 0.f);
  CHECK(hi_v <= 1.f);
  CHECK(hi_v > 0.5f);  // bright myocardium
}

TEST_CASE("echonet: normalisation, clip limit and cache", "[data][echonet]") {
  EchoNetOptions unit = small_clips();
  EchoNetOptions norm = unit;
  norm.normalization = Normalization{{0.1f, 0.2f, 0.3f}, {0.5f, 0.25f, 2.f}};
  norm.max_clips = 2;
  norm.cache_mb = 16;
  const EchoNet a(synthetic_set(), unit), b(synthetic_set(), norm);
  CHECK(b.records(EchoSplit::train).size() == 2);
  CHECK(b.records(EchoSplit::test).size() == 2);

  Tensor<float> x(a.dataset(EchoSplit::val)->sample_shape());
  Tensor<float> y(x.shape());
  Rng rng;
  const Target ta = a.dataset(EchoSplit::val)->get(1, x, rng);
  const Target tb = b.dataset(EchoSplit::val)->get(1, y, rng);
  CHECK(ta.value == tb.value);
  for (std::int64_t k = 0; k < x.numel(); k += 97) {
    const auto c = std::size_t(k % 3);
    CHECK(y[k] ==
          Approx((x[k] - norm.normalization.mean[c]) / norm.normalization.std[c]).margin(1e-5));
  }
  REQUIRE(b.cache() != nullptr);
  CHECK(b.cache()->misses() == 1);
  Tensor<float> z(x.shape());
  b.dataset(EchoSplit::val)->get(1, z, rng);  // from the cache, identical
  CHECK(b.cache()->hits() == 1);
  CHECK(std::equal(y.flat().begin(), y.flat().end(), z.flat().begin()));
  CHECK(b.cache()->used_bytes() == 6 * 32 * 40 * 3);
}

TEST_CASE("echonet: FileList.csv variants: quotes, CRLF, BOM, column order, .avi suffix",
          "[data][echonet]") {
  const auto dir = custom_set("echonet_variants",
                              "\xEF\xBB\xBFSplit,\"Note, free text\",EF,FileName\r\n"
                              "train,\"a \"\"quoted\"\", note\",61.5,clip_a.avi\r\n"
                              "TEST,,40,clip_b\r\n"
                              "Val,x,\" 72 \",\"clip_c\"\r\n",
                              {"clip_a", "clip_b", "clip_c"});
  const EchoNet echo(dir, small_clips());
  REQUIRE(echo.records(EchoSplit::train).size() == 1);
  CHECK(echo.records(EchoSplit::train)[0].name == "clip_a");
  CHECK(echo.records(EchoSplit::train)[0].ef == 61.5f);
  CHECK(echo.records(EchoSplit::test)[0].name == "clip_b");
  CHECK(echo.records(EchoSplit::val)[0].ef == 72.f);
}

TEST_CASE("echonet: without a Split column the split is seeded by ratio", "[data][echonet]") {
  std::string csv = "FileName,EF\n";
  std::vector<std::string> names;
  for (int i = 0; i < 8; ++i) {
    names.push_back("v" + std::to_string(i));
    csv += names.back() + "," + std::to_string(40 + i) + "\n";
  }
  const auto dir = custom_set("echonet_nosplit", csv, names);
  EchoNetOptions opt = small_clips();
  opt.val_fraction = 0.25;
  opt.test_fraction = 0.25;
  opt.split_seed = 9;
  const EchoNet a(dir, opt), b(dir, opt);
  CHECK_FALSE(a.has_split_column());
  CHECK(a.records(EchoSplit::train).size() == 4);
  CHECK(a.records(EchoSplit::val).size() == 2);
  CHECK(a.records(EchoSplit::test).size() == 2);
  CHECK(a.records(EchoSplit::val)[0].name == b.records(EchoSplit::val)[0].name);
}

TEST_CASE("echonet: bad FileList.csv and videos are errors naming the file", "[data][echonet]") {
  const auto opt = small_clips();
  const auto empty = testing::scratch_dir("echonet_nofilelist");
  CHECK_THROWS_WITH(EchoNet(empty, opt), Contains("FileList.csv") && Contains("not found"));

  auto open = [&](std::string_view name, std::string_view csv) {
    return EchoNet(custom_set(name, csv, {"v0"}), opt);
  };
  CHECK_THROWS_WITH(open("echonet_nocol", "FileName,Split\nv0,TRAIN\n"),
                    Contains("FileList.csv") && Contains("missing column 'EF'"));
  CHECK_THROWS_WITH(open("echonet_text", "FileName,EF,Split\nv0,abc,TRAIN\n"),
                    Contains("FileList.csv:2") && Contains("EF 'abc' is not a number"));
  CHECK_THROWS_WITH(open("echonet_nan", "FileName,EF,Split\nv0,NaN,TRAIN\n"),
                    Contains("FileList.csv:2") && Contains("not a finite number"));
  CHECK_THROWS_WITH(open("echonet_range", "FileName,EF,Split\nv0,101.5,TRAIN\n"),
                    Contains("FileList.csv:2") && Contains("outside [0, 100]"));
  CHECK_THROWS_WITH(open("echonet_neg", "FileName,EF,Split\nv0,-3,TRAIN\n"),
                    Contains("outside [0, 100]"));
  CHECK_THROWS_WITH(open("echonet_split", "FileName,EF,Split\nv0,50,EXTERNAL\n"),
                    Contains("Split 'EXTERNAL'"));
  CHECK_THROWS_WITH(open("echonet_short", "FileName,EF,Split\nv0,50\n"),
                    Contains("FileList.csv:2") && Contains("fields"));
  CHECK_THROWS_WITH(open("echonet_path", "FileName,EF,Split\n../v0,50,TRAIN\n"),
                    Contains("not a plain file name"));
  CHECK_THROWS_WITH(open("echonet_novideo", "FileName,EF,Split\nv0,50,TRAIN\nv9,50,TRAIN\n"),
                    Contains("FileList.csv:3") && Contains("v9.avi") && Contains("not found"));

  const auto garbage = custom_set("echonet_garbage", "FileName,EF,Split\nv0,50,TRAIN\n", {});
  testing::write_bytes(garbage / "Videos" / "v0.avi", "not a video");
  CHECK_THROWS_WITH(EchoNet(garbage, opt), Contains("v0.avi") && Contains("cannot open video"));

  const auto zero = custom_set("echonet_zero", "FileName,EF,Split\nv0,50,TRAIN\n", {});
  VideoWriterOptions vo;
  VideoWriter(zero / "Videos" / "v0.avi", vo).finish();
  CHECK_THROWS_WITH(EchoNet(zero, opt), Contains("v0.avi") && Contains("no frames"));
}

TEST_CASE("echonet: skip drops bad rows and videos with one warning each", "[data][echonet]") {
  const auto dir = custom_set("echonet_skip",
                              "FileName,EF,Split\n"
                              "v0,50,TRAIN\nv1,abc,TRAIN\nv2,nan,TRAIN\nv3,55,TRAIN\n"
                              "v4,200,TRAIN\nmissing,60,TRAIN\nv6,45,TRAIN\nv7,58,TRAIN\n",
                              {"v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7"});
  // v6 is truncated: its header reads, its frames do not (found while loading).
  const std::string bytes = read_file(dir / "Videos" / "v6.avi");
  testing::write_bytes(dir / "Videos" / "v6.avi", bytes.substr(0, bytes.size() / 2));

  EchoNetOptions strict = small_clips();
  CHECK_THROWS_AS(EchoNet(dir, strict), ValueError);

  testing::WarningLog log;
  EchoNetOptions opt = small_clips();
  opt.errors = log.skip_policy();
  const EchoNet echo(dir, opt);
  CHECK(echo.skipped() == 4);
  CHECK(log.messages.size() == 4);
  CHECK(log.any_contains("FileList.csv:3"));
  CHECK(log.any_contains("missing.avi"));
  REQUIRE(echo.records(EchoSplit::train).size() == 4);

  LoaderOptions lo;
  lo.batch_size = 3;
  auto loader = echo.loader(EchoSplit::train, lo);
  const auto seen = ef_counts(*loader, 0, Shape{6, 32, 40});
  CHECK(seen == std::map<float, int>{{50.f, 1}, {55.f, 1}, {58.f, 1}});
  CHECK(loader->skipped() == 1);
  CHECK(log.messages.size() == 5);
  CHECK(log.any_contains("v6.avi"));

  // The same truncated clip stops a loader made without skip.
  EchoNetOptions lenient_open = small_clips();
  lenient_open.errors = log.skip_policy();
  const EchoNet again(dir, lenient_open);
  auto strict_loader = DataLoader(again.dataset(EchoSplit::train), lo);
  strict_loader.start_epoch(0);
  Batch b;
  CHECK_THROWS_WITH(
      [&] {
        while (strict_loader.next(b)) {
        }
      }(),
      Contains("v6.avi") && Contains("truncated"));
}

TEST_CASE("echonet: train-split jitter and augmentation; other splits untouched",
          "[data][echonet]") {
  EchoNetOptions o = small_clips();
  o.train_temporal_jitter = true;
  o.train_augmentation = Augmentation{3, true};
  const EchoNet plain(synthetic_set(), small_clips());
  const EchoNet echo(synthetic_set(), o);
  Tensor<float> a(echo.dataset(EchoSplit::train)->sample_shape());
  Tensor<float> b(a.shape()), c(a.shape()), centre(a.shape());
  Rng r1(1), r2(1), r3(2), r0(0);
  (void)echo.dataset(EchoSplit::train)->get(0, a, r1);
  (void)echo.dataset(EchoSplit::train)->get(0, b, r2);
  (void)echo.dataset(EchoSplit::train)->get(0, c, r3);
  (void)plain.dataset(EchoSplit::train)->get(0, centre, r0);
  CHECK(std::equal(a.flat().begin(), a.flat().end(), b.flat().begin()));  // same draw, same clip
  CHECK_FALSE(std::equal(a.flat().begin(), a.flat().end(), c.flat().begin()));
  CHECK_FALSE(std::equal(a.flat().begin(), a.flat().end(), centre.flat().begin()));
  // VAL and TEST clips are the plain centre samples whatever the generator.
  for (auto split : {EchoSplit::val, EchoSplit::test}) {
    Tensor<float> x(a.shape()), y(a.shape());
    Rng g1(1), g2(2);
    (void)echo.dataset(split)->get(0, x, g1);
    (void)plain.dataset(split)->get(0, y, g2);
    CHECK(std::equal(x.flat().begin(), x.flat().end(), y.flat().begin()));
  }
}
