// The synthetic echo generator: writes an EchoNet-Dynamic-layout data set
// (FileList.csv + Videos/<name>.avi, 112x112 MJPEG in AVI) of beating
// left-ventricle-like clips with known EDV, ESV and EF. Deterministic for a
// seed: clip i depends only on (seed, i). The model is in
// synthetic_echo_model.hpp and docs/synthetic_echo.md. Part of
// compressor::video.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/rng.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/data/echonet_filelist.hpp"
#include "compressor/data/file_io.hpp"
#include "compressor/data/synthetic_echo_model.hpp"
#include "compressor/data/video_encode.hpp"

namespace compressor::data {

struct SyntheticEchoOptions {
  std::int64_t count = 200;
  std::uint64_t seed = 1;
  EchoModelOptions model;       ///< frame size, fps, EF range, cycles, heart rate
  double val_fraction = 0.125;  ///< of the clips, rounded (EchoNet: ~13% VAL, ~13% TEST)
  double test_fraction = 0.125;
  int quality = 3;  ///< MJPEG quantiser scale (1 best .. 31)
  int threads = 0;  ///< OpenMP threads; 0 = num_threads()
  /// Called after each clip with (clips done, count); from one thread at a time.
  std::function<void(std::int64_t, std::int64_t)> progress;

  /// "key=value" lines of everything that shapes the output (not threads).
  std::string stamp() const {
    std::ostringstream s;
    s.precision(17);
    s << "generator=compressor synthetic echo v1\ncount=" << count << "\nseed=" << seed
      << "\nsize=" << model.size << "\nfps=" << model.fps << "\nef_min=" << model.ef_min
      << "\nef_max=" << model.ef_max << "\ncycles=" << model.min_cycles << "," << model.max_cycles
      << "\nbpm=" << model.min_bpm << "," << model.max_bpm << "\nval_fraction=" << val_fraction
      << "\ntest_fraction=" << test_fraction << "\nquality=" << quality << "\n";
    return s.str();
  }
};

/// One row of the generated FileList.csv.
struct SyntheticEchoClip {
  std::string name;  ///< FileName (no extension)
  double ef = 0, esv = 0, edv = 0;
  std::int64_t frames = 0;
  std::string split;  ///< TRAIN, VAL or TEST
};

/// The name of clip i: "SYN" and six digits.
inline std::string synthetic_echo_name(std::int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "SYN%06lld", static_cast<long long>(i));
  return buf;
}

/// The parameters and labels of clip i of a synthetic set (without writing it).
inline EchoClipParams synthetic_echo_params(const SyntheticEchoOptions& opt, std::int64_t i) {
  Rng rng = Rng::derive(opt.seed, static_cast<std::uint64_t>(i));
  return draw_echo_clip(rng, opt.model);
}

/// Writes one clip's video and returns its labels.
inline SyntheticEchoClip write_synthetic_echo_clip(const std::filesystem::path& file,
                                                   const EchoClipParams& params, int quality) {
  const EchoRenderer renderer(params);
  VideoWriterOptions vo;
  vo.width = vo.height = params.size;
  vo.fps = params.fps;
  vo.quality = quality;
  VideoWriter writer(file, vo);
  std::vector<std::uint8_t> frame(static_cast<std::size_t>(params.size) *
                                  static_cast<std::size_t>(params.size));
  for (std::int64_t f = 0; f < params.frames; ++f) {
    renderer.render(f, frame);
    writer.write_gray(frame);
  }
  writer.finish();
  const EchoTruth truth = echo_truth(params);
  return {file.stem().string(), truth.ef, truth.esv_ml, truth.edv_ml, params.frames, ""};
}

/// Generates the data set into dir (created if needed): Videos/*.avi, then
/// FileList.csv and synthetic_echo.txt (the options), each written
/// atomically, last. Returns the rows of FileList.csv.
inline std::vector<SyntheticEchoClip> generate_synthetic_echo(const std::filesystem::path& dir,
                                                              const SyntheticEchoOptions& opt) {
  require(opt.count >= 1, "generate_synthetic_echo: count must be >= 1, got ", opt.count);
  opt.model.check();
  require(opt.quality >= 1 && opt.quality <= 31, "generate_synthetic_echo: quality must be 1..31");
  const auto splits = seeded_splits(opt.count, opt.val_fraction, opt.test_fraction, opt.seed);
  const auto videos = dir / "Videos";
  std::error_code ec;
  std::filesystem::create_directories(videos, ec);
  require<IoError>(!ec, videos.string(), ": cannot create folder (", ec.message(), ")");

  std::vector<SyntheticEchoClip> clips(static_cast<std::size_t>(opt.count));
  std::vector<std::string> errors(clips.size());
  std::int64_t done = 0;
  std::mutex progress_mutex;
  const int saved_threads = num_threads();
  if (opt.threads > 0) set_num_threads(opt.threads);
  parallel_for(opt.count, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i) {
      const auto k = static_cast<std::size_t>(i);
      try {
        const std::string name = synthetic_echo_name(i);
        clips[k] = write_synthetic_echo_clip(videos / (name + ".avi"),
                                             synthetic_echo_params(opt, i), opt.quality);
        clips[k].split = std::string(split_name(splits[k]));
      } catch (const std::exception& e) {
        errors[k] = e.what();
      }
      if (opt.progress) {
        const std::lock_guard<std::mutex> lock(progress_mutex);
        opt.progress(++done, opt.count);
      }
    }
  });
  if (opt.threads > 0) set_num_threads(saved_threads);
  for (const auto& e : errors)
    if (!e.empty()) throw IoError(e);

  std::ostringstream csv;
  csv.precision(6);
  csv << "FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split\n";
  for (const auto& c : clips)
    csv << c.name << ',' << c.ef << ',' << c.esv << ',' << c.edv << ',' << opt.model.size << ','
        << opt.model.size << ',' << opt.model.fps << ',' << c.frames << ',' << c.split << '\n';
  write_file_atomic(dir / "FileList.csv", csv.str());
  write_file_atomic(dir / "synthetic_echo.txt", opt.stamp());
  return clips;
}

/// Generates the data set into dir unless it is already there. A folder with
/// a FileList.csv but no synthetic_echo.txt is taken to be someone's data
/// and left alone; one generated with other options is generated again.
/// Returns true when it generated.
inline bool ensure_synthetic_echo(const std::filesystem::path& dir,
                                  const SyntheticEchoOptions& opt = {}) {
  const auto list = dir / "FileList.csv", stamp = dir / "synthetic_echo.txt";
  if (std::filesystem::exists(list)) {
    if (!std::filesystem::exists(stamp)) return false;
    if (read_file(stamp) == opt.stamp()) return false;
  }
  generate_synthetic_echo(dir, opt);
  return true;
}

}  // namespace compressor::data
