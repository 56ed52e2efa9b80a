// Pieces the experiment binaries share: the default CIFAR-10 data (the JPEG
// archive in ../shared/data, unpacked once into a cache folder), latency
// measurement of a deploy model, file sizes, and the output folder check.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/io/atomic_file.hpp"
#include "compressor/report/html.hpp"
#include "compressor/train/schedule.hpp"

namespace examples {

namespace fs = std::filesystem;
using compressor::IoError;
using compressor::require;

/// The folder the CIFAR-10 JPEG archive lives in: $COMPRESSOR_SHARED_DIR/data,
/// else the ../shared/data beside the source tree this binary was built from.
inline fs::path shared_data_dir() {
  if (const char* env = std::getenv("COMPRESSOR_SHARED_DIR"); env && *env)
    return fs::path(env) / "data";
#ifdef COMPRESSOR_SHARED_DIR
  return fs::path(COMPRESSOR_SHARED_DIR) / "data";
#else
  return fs::path("../shared/data");
#endif
}

/// Where downloaded or unpacked data is kept: $XDG_CACHE_HOME/compressor or
/// ~/.cache/compressor.
inline fs::path cache_dir() {
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return fs::path(x) / "compressor";
  if (const char* h = std::getenv("HOME"); h && *h) return fs::path(h) / ".cache" / "compressor";
  return fs::current_path() / ".compressor-cache";
}

/// The image folder of the CIFAR-10 JPEG archive (train/<class>/, test/<class>/),
/// unpacked from `archive` into `cache` on first use (into a temporary folder
/// renamed when complete, so an interrupted unpack is redone, never half used).
inline fs::path unpack_cifar10_jpeg(const fs::path& archive, const fs::path& cache) {
  const fs::path root = cache / "cifar10-jpeg";
  if (fs::is_directory(root / "train") && fs::is_directory(root / "test")) return root;
  require<IoError>(fs::is_regular_file(archive), "CIFAR-10 not found: no --data-root given and ",
                   archive.string(),
                   " does not exist. Pass --data-root with CIFAR-10's binary version "
                   "(cifar-10-batches-bin from https://www.cs.toronto.edu/~kriz/cifar.html) or "
                   "an image folder (train/<class>/*.png|jpg, test/<class>/...)");
  const fs::path tmp = cache / "cifar10-jpeg.unpacking";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  std::printf("unpacking %s into %s (once)\n", archive.c_str(), root.c_str());
  std::fflush(stdout);
  const std::string cmd =
      "tar -xzf '" + archive.string() + "' -C '" + tmp.string() + "' --no-same-owner";
  require<IoError>(std::system(cmd.c_str()) == 0, "unpacking ", archive.string(), " into ",
                   tmp.string(), " failed (is it a .tar.gz? is there room?)");
  fs::path inner = tmp / "cifar10-jpeg";
  if (!fs::is_directory(inner)) inner = tmp;
  require<IoError>(fs::is_directory(inner / "train") && fs::is_directory(inner / "test"),
                   archive.string(), ": expected train/ and test/ folders inside");
  fs::remove_all(root);
  fs::rename(inner, root);
  fs::remove_all(tmp);
  return root;
}

/// Fails early, naming the folder, when `dir` cannot be created or written.
inline void require_writable_dir(const fs::path& dir, const char* flag) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  require<IoError>(!ec && fs::is_directory(dir), flag, " ", dir.string(),
                   ": cannot create the folder (", ec.message(), ")");
  const fs::path probe = dir / ".write_test";
  {
    std::ofstream f(probe);
    require<IoError>(static_cast<bool>(f << "ok"), flag, " ", dir.string(),
                     ": the folder is not writable");
  }
  fs::remove(probe, ec);
}

inline std::int64_t file_bytes(const fs::path& p) {
  return static_cast<std::int64_t>(fs::file_size(p));
}

struct Latency {
  double median_ms = 0, p90_ms = 0;
  int repeats = 0;
};

/// Runs fn `warmup` times, then times it until `repeats` runs and at least
/// `min_seconds` have passed; median and 90th percentile in milliseconds.
template <class Fn>
Latency measure_latency(Fn&& fn, int repeats = 20, double min_seconds = 0.5, int warmup = 3) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> ms;
  const auto start = clock::now();
  while (static_cast<int>(ms.size()) < repeats ||
         std::chrono::duration<double>(clock::now() - start).count() < min_seconds) {
    const auto t0 = clock::now();
    fn();
    ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
    if (ms.size() >= 10000) break;
  }
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) {
    return ms[std::min(ms.size() - 1,
                       static_cast<std::size_t>(q * static_cast<double>(ms.size())))];
  };
  return {at(0.5), at(0.9), static_cast<int>(ms.size())};
}

/// The results of a run in its output folder: read back with --resume,
/// written (results.json, results.csv, report.html, each atomically) after
/// every stage.
class ResultsFile {
 public:
  ResultsFile(fs::path dir, bool resume, compressor::report::Json config,
              compressor::report::ReportSpec spec)
      : dir_(std::move(dir)), resume_(resume), spec_(std::move(spec)) {
    if (resume_ && fs::exists(dir_ / "results.json")) {
      r_ = compressor::report::read_results_json(dir_ / "results.json");
      std::printf("resume: %zu finished stage(s) in %s\n", r_.rows.size(),
                  (dir_ / "results.json").c_str());
    }
    r_.config = std::move(config);
    r_.machine = compressor::report::machine_info();
  }
  /// With --resume: the stage's row and its model file are there.
  bool done(const std::string& row, const fs::path& file) const {
    return resume_ && r_.find(row) != nullptr && fs::exists(file);
  }
  void put(compressor::report::Row row) { r_.put(std::move(row)); }
  compressor::report::Json& extras() { return r_.extras; }
  compressor::report::Json& config() { return r_.config; }
  const compressor::report::Results& results() const { return r_; }
  void save() const { compressor::report::write_all(dir_, r_, spec_); }

 private:
  fs::path dir_;
  bool resume_;
  compressor::report::ReportSpec spec_;
  compressor::report::Results r_;
};

/// A learning-rate (and momentum) schedule resumed `offset` steps in.
class OffsetSchedule : public compressor::train::LrSchedule {
 public:
  OffsetSchedule(const compressor::train::LrSchedule& s, std::int64_t offset)
      : s_(s), offset_(offset) {}
  float lr_at(std::int64_t step) const override { return s_.lr_at(step + offset_); }
  std::optional<float> momentum_at(std::int64_t step) const override {
    return s_.momentum_at(step + offset_);
  }

 private:
  const compressor::train::LrSchedule& s_;
  std::int64_t offset_;
};

}  // namespace examples
