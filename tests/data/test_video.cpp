#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "compressor/data/file_io.hpp"
#include "compressor/data/video_decode.hpp"
#include "compressor/data/video_encode.hpp"
#include "data/data_test_util.hpp"
#include "data/quiet_ffmpeg.hpp"

using namespace compressor;
using namespace compressor::data;
using Catch::Matchers::Contains;

namespace {

/// Frame f of a test clip: a horizontal ramp whose level encodes f (steps of 8).
std::vector<std::uint8_t> ramp_frame(int w, int h, int f) {
  std::vector<std::uint8_t> px(std::size_t(w * h));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) px[std::size_t(y * w + x)] = std::uint8_t(8 * (f % 30) + x % 8);
  return px;
}

std::filesystem::path write_ramp_clip(const std::filesystem::path& file, int frames, int w = 64,
                                      int h = 48, VideoWriterOptions opt = {}) {
  opt.width = w;
  opt.height = h;
  VideoWriter writer(file, opt);
  for (int f = 0; f < frames; ++f) writer.write_gray(ramp_frame(w, h, f));
  writer.finish();
  return file;
}

/// The frame index encoded in a decoded clip's frame t (mean level / 8).
int level_of(const Tensor<std::uint8_t>& clip, std::int64_t t) {
  const auto fr = clip.slice(t);
  double sum = 0;
  for (std::int64_t k = 0; k < fr.numel(); ++k) sum += fr[k];
  return int(std::lround((sum / double(fr.numel()) - 3.5) / 8.0));
}

}  // namespace

TEST_CASE("video: sample_indices spreads T samples uniformly, repeating when short",
          "[data][video]") {
  CHECK(sample_indices(10, 5) == std::vector<std::int64_t>{1, 3, 5, 7, 9});
  CHECK(sample_indices(4, 4) == std::vector<std::int64_t>{0, 1, 2, 3});
  CHECK(sample_indices(3, 6) == std::vector<std::int64_t>{0, 0, 1, 1, 2, 2});
  CHECK(sample_indices(1, 3) == std::vector<std::int64_t>{0, 0, 0});
  for (std::int64_t n : {1, 7, 31, 100, 999})
    for (std::int64_t t : {1, 2, 16, 32, 33}) {
      const auto idx = sample_indices(n, t);
      CHECK(std::is_sorted(idx.begin(), idx.end()));
      CHECK(idx.front() >= 0);
      CHECK(idx.back() < n);
    }
  CHECK_THROWS_AS(sample_indices(0, 4), ValueError);
}

TEST_CASE("video: sample_indices with a phase picks that point of each part", "[data][video]") {
  CHECK(sample_indices(10, 5, 0.0) == std::vector<std::int64_t>{0, 2, 4, 6, 8});
  CHECK(sample_indices(10, 5, 0.99) == std::vector<std::int64_t>{1, 3, 5, 7, 9});
  CHECK(sample_indices(100, 4, 0.25) == std::vector<std::int64_t>{6, 31, 56, 81});
  for (double phase : {0.0, 0.3, 0.7, 0.999})
    for (std::int64_t n : {1, 7, 31, 100})
      for (std::int64_t t : {1, 3, 16, 33}) {
        const auto idx = sample_indices(n, t, phase);
        CHECK(std::is_sorted(idx.begin(), idx.end()));
        CHECK(idx.front() >= 0);
        CHECK(idx.back() < n);
      }
  CHECK_THROWS_AS(sample_indices(10, 5, 1.0), ValueError);
  CHECK_THROWS_AS(sample_indices(10, 5, -0.1), ValueError);
}

TEST_CASE("video: written MJPEG AVI reads back with its size, rate and frames", "[data][video]") {
  const auto dir = testing::scratch_dir("video_roundtrip");
  const auto file = write_ramp_clip(dir / "c.avi", 25);
  CHECK_FALSE(std::filesystem::exists(dir / "c.avi.tmp"));
  const VideoInfo info = probe_video(file);
  CHECK(info.width == 64);
  CHECK(info.height == 48);
  CHECK(info.fps == Approx(50));
  CHECK(info.frames == 25);
  CHECK(info.codec == "mjpeg");
  CHECK(info.container == "avi");

  Tensor<std::uint8_t> clip;
  const VideoInfo all = decode_clip(file, ClipSpec{25, 48, 64}, clip);
  CHECK(all.frames == 25);
  REQUIRE(clip.shape() == Shape{25, 48, 64, 3});
  for (std::int64_t t = 0; t < 25; ++t) CHECK(level_of(clip, t) == t);
  // Grey in, grey out: R = G = B, and the ramp survives MJPEG closely.
  CHECK(std::abs(int(clip(3, 10, 13, 0)) - (8 * 3 + 13 % 8)) <= 3);
  CHECK(clip(3, 10, 13, 0) == clip(3, 10, 13, 2));

  // Uniform sampling and resizing in one pass.
  decode_clip(file, ClipSpec{5, 24, 32}, clip);
  REQUIRE(clip.shape() == Shape{5, 24, 32, 3});
  const auto idx = sample_indices(25, 5);
  for (std::int64_t t = 0; t < 5; ++t) CHECK(level_of(clip, t) == idx[std::size_t(t)]);

  // A clip shorter than T repeats frames.
  decode_clip(write_ramp_clip(dir / "short.avi", 3), ClipSpec{7, 48, 64}, clip);
  const auto rep = sample_indices(3, 7);
  for (std::int64_t t = 0; t < 7; ++t) CHECK(level_of(clip, t) == rep[std::size_t(t)]);
}

TEST_CASE("video: other codecs and containers, frame count unknown up front", "[data][video]") {
  const auto dir = testing::scratch_dir("video_mpeg4");
  VideoWriterOptions opt;
  opt.codec = "mpeg4";  // inter-frame codec: every frame is decoded
  opt.container = "matroska";
  const auto file = write_ramp_clip(dir / "c.mkv", 20, 64, 48, opt);
  Tensor<std::uint8_t> clip;
  const VideoInfo info = decode_clip(file, ClipSpec{4, 48, 64}, clip);
  CHECK(info.frames == 20);
  CHECK(info.codec == "mpeg4");
  const auto idx = sample_indices(20, 4);
  for (std::int64_t t = 0; t < 4; ++t) CHECK(level_of(clip, t) == idx[std::size_t(t)]);
}

TEST_CASE("video: bad files are errors naming the file and the problem", "[data][video]") {
  const auto dir = testing::scratch_dir("video_bad");
  Tensor<std::uint8_t> clip;
  const ClipSpec spec{8, 32, 32};

  CHECK_THROWS_WITH(decode_clip(dir / "absent.avi", spec, clip),
                    Contains("absent.avi") && Contains("not found"));

  testing::write_bytes(dir / "garbage.avi", "RIFF\x10\0\0\0AVI garbage, not a video at all");
  CHECK_THROWS_AS(decode_clip(dir / "garbage.avi", spec, clip), IoError);
  CHECK_THROWS_WITH(decode_clip(dir / "garbage.avi", spec, clip), Contains("garbage.avi"));

  write_ramp_clip(dir / "empty.avi", 0);
  CHECK_THROWS_WITH(decode_clip(dir / "empty.avi", spec, clip),
                    Contains("empty.avi") && Contains("no frames"));

  const std::string bytes = read_file(write_ramp_clip(dir / "good.avi", 40));
  testing::write_bytes(dir / "truncated.avi", bytes.substr(0, bytes.size() * 6 / 10));
  CHECK_THROWS_WITH(
      decode_clip(dir / "truncated.avi", spec, clip),
      Contains("truncated.avi") && Contains("truncated") && Contains("header states 40 frames"));

  std::string corrupt = bytes;  // overwrite frames in the middle
  for (std::size_t i = corrupt.size() / 2; i < corrupt.size() / 2 + corrupt.size() / 8; ++i)
    corrupt[i] = char(i * 7);
  testing::write_bytes(dir / "corrupt.avi", corrupt);
  CHECK_THROWS_WITH(decode_clip(dir / "corrupt.avi", ClipSpec{40, 48, 64}, clip),
                    Contains("corrupt.avi"));

  CHECK_THROWS_AS(decode_clip(dir / "good.avi", ClipSpec{0, 32, 32}, clip), ValueError);
  Tensor<std::uint8_t> ok;
  CHECK(decode_clip(dir / "good.avi", spec, ok).frames == 40);
}

TEST_CASE("video: writer rejects wrong frame sizes and removes unfinished files", "[data][video]") {
  const auto dir = testing::scratch_dir("video_writer");
  {
    VideoWriterOptions opt;
    opt.width = 16;
    opt.height = 16;
    VideoWriter w(dir / "x.avi", opt);
    CHECK_THROWS_AS(w.write_gray(std::vector<std::uint8_t>(10)), ShapeError);
    w.write_rgb(std::vector<std::uint8_t>(16 * 16 * 3, 100));
    CHECK(w.frames_written() == 1);
  }  // destroyed without finish()
  CHECK_FALSE(std::filesystem::exists(dir / "x.avi"));
  CHECK_FALSE(std::filesystem::exists(dir / "x.avi.tmp"));
  VideoWriterOptions bad;
  bad.codec = "no-such-codec";
  CHECK_THROWS_WITH(VideoWriter(dir / "y.avi", bad), Contains("no encoder"));
}
