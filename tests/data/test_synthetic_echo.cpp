#include <catch2/catch.hpp>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "compressor/data/csv.hpp"
#include "compressor/data/synthetic_echo.hpp"
#include "compressor/data/video_decode.hpp"
#include "data/data_test_util.hpp"

using namespace compressor;
using namespace compressor::data;
using Catch::Matchers::Contains;

namespace {

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) ma += a[i], mb += b[i];
  ma /= double(a.size());
  mb /= double(b.size());
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

/// Pixels of frame t whose 3x3 mean is dark but not black (black is outside
/// the ultrasound sector): blood.
int dark_area(const Tensor<std::uint8_t>& clip, std::int64_t t) {
  const auto h = clip.dim(1), w = clip.dim(2);
  int count = 0;
  for (std::int64_t y = 1; y + 1 < h; ++y)
    for (std::int64_t x = 1; x + 1 < w; ++x) {
      int s = 0;
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) s += clip(t, y + dy, x + dx, 0);
      if (s >= 3 * 9 && s <= 28 * 9) ++count;
    }
  return count;
}

}  // namespace

TEST_CASE("synthetic echo: the volume curve spans [1 - EF, 1] and starts at end-diastole",
          "[data][synthetic]") {
  for (double ef : {15.0, 55.0, 85.0}) {
    double lo = 2, hi = 0;
    for (int k = 0; k < 1000; ++k) {
      const double r = volume_fraction(k / 1000.0, ef);
      lo = std::min(lo, r);
      hi = std::max(hi, r);
    }
    CHECK(hi == Approx(1.0));
    CHECK(lo == Approx(1.0 - ef / 100).margin(1e-4));
    CHECK(volume_fraction(0.0, ef) == Approx(1.0));
    CHECK(volume_fraction(0.35, ef) == Approx(1.0 - ef / 100));
  }
  // The area-length volume of an ellipse is the prolate ellipsoid's.
  CHECK(area_length_volume_ml(2, 5, 1.0) == Approx(4.0 / 3.0 * std::numbers::pi * 4 * 5));
}

TEST_CASE("synthetic echo: EF distribution resembles EchoNet-Dynamic", "[data][synthetic]") {
  SyntheticEchoOptions opt;
  std::vector<double> ef;
  for (std::int64_t i = 0; i < 2000; ++i) {
    const auto p = synthetic_echo_params(opt, i);
    const auto truth = echo_truth(p);
    ef.push_back(truth.ef);
    CHECK(truth.ef == Approx(p.ef_target).margin(1.0));  // frames sample the curve densely
    const double cycles = double(p.frames) / p.fps * p.bpm / 60.0;
    CHECK(cycles >= 1.0);
    CHECK(cycles <= 4.0);
    CHECK(heart_in_sector(p));
  }
  double mean = 0, sq = 0, lo = 100, hi = 0;
  for (double e : ef) mean += e, sq += e * e, lo = std::min(lo, e), hi = std::max(hi, e);
  mean /= double(ef.size());
  const double sd = std::sqrt(sq / double(ef.size()) - mean * mean);
  CHECK(mean == Approx(55).margin(2.5));
  CHECK(sd == Approx(12).margin(2));
  CHECK(lo >= 9.0);
  CHECK(hi <= 91.0);
}

TEST_CASE("synthetic echo: generated set reads back; EF is recoverable from the pixels",
          "[data][synthetic][video]") {
  av_log_set_level(AV_LOG_FATAL);
  const auto dir = testing::scratch_dir("synthetic_echo");
  SyntheticEchoOptions opt;
  opt.count = 32;
  opt.seed = 7;
  // Shorter clips than the defaults (25 fps, at most 2 cycles): the
  // sanitizer build runs this too, and one whole cycle shows both ends.
  opt.model.fps = 25;
  opt.model.max_cycles = 2.0;
  const auto clips = generate_synthetic_echo(dir, opt);
  REQUIRE(clips.size() == 32);

  const CsvTable list = read_csv(dir / "FileList.csv");
  CHECK(list.header == std::vector<std::string>{"FileName", "EF", "ESV", "EDV", "FrameHeight",
                                                "FrameWidth", "FPS", "NumberOfFrames", "Split"});
  REQUIRE(list.rows.size() == 32);
  std::multiset<std::string> splits;
  std::vector<double> ef, area_ef;
  for (std::size_t i = 0; i < list.rows.size(); ++i) {
    const auto& row = list.rows[i];
    splits.insert(row[8]);
    const double e = std::stod(row[1]), esv = std::stod(row[2]), edv = std::stod(row[3]);
    CHECK(e == Approx((edv - esv) / edv * 100).margin(1e-3));
    CHECK(edv > esv);
    CHECK(row[4] == "112");
    CHECK(row[6] == "25");
    const auto frames = std::stoll(row[7]);
    const auto file = dir / "Videos" / (row[0] + ".avi");
    CHECK(probe_video(file).frames == frames);

    Tensor<std::uint8_t> clip;
    const VideoInfo info = decode_clip(file, ClipSpec{frames, 112, 112}, clip);
    CHECK(info.frames == frames);
    CHECK(info.width == 112);
    CHECK(info.height == 112);
    int lo = 1 << 30, hi = 0;
    for (std::int64_t t = 0; t < frames; ++t) {
      const int a = dark_area(clip, t);
      lo = std::min(lo, a);
      hi = std::max(hi, a);
    }
    ef.push_back(e);
    area_ef.push_back(double(hi - lo) / double(hi));
  }
  CHECK(splits.count("VAL") == 4);
  CHECK(splits.count("TEST") == 4);
  CHECK(splits.count("TRAIN") == 24);
  const double r = pearson(ef, area_ef);
  INFO("correlation of EF with the dark-area fraction: " << r);
  CHECK(r > 0.9);
}

TEST_CASE("synthetic echo: deterministic for a seed; ensure generates only when absent",
          "[data][synthetic][video]") {
  const auto a = testing::scratch_dir("synthetic_a"), b = testing::scratch_dir("synthetic_b");
  SyntheticEchoOptions opt;
  opt.count = 4;
  opt.seed = 3;
  opt.threads = 1;
  generate_synthetic_echo(a, opt);
  opt.threads = 2;
  CHECK(ensure_synthetic_echo(b, opt));
  CHECK(read_file(a / "FileList.csv") == read_file(b / "FileList.csv"));
  CHECK(read_file(a / "Videos/SYN000002.avi") == read_file(b / "Videos/SYN000002.avi"));
  CHECK_FALSE(ensure_synthetic_echo(b, opt));  // already there

  opt.seed = 4;  // other options: generated again
  CHECK(ensure_synthetic_echo(b, opt));
  CHECK(read_file(a / "FileList.csv") != read_file(b / "FileList.csv"));

  const auto foreign = testing::scratch_dir("synthetic_foreign");
  testing::write_bytes(foreign / "FileList.csv", "FileName,EF,Split\nreal,50,TRAIN\n");
  CHECK_FALSE(ensure_synthetic_echo(foreign, opt));  // someone's data: left alone
  CHECK_FALSE(std::filesystem::exists(foreign / "Videos"));

  opt.count = 0;
  CHECK_THROWS_AS(generate_synthetic_echo(a, opt), ValueError);
}
