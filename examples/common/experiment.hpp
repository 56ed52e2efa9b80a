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
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/io/atomic_file.hpp"

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

}  // namespace examples
