// make_synthetic_echo: writes a synthetic EchoNet-Dynamic-layout data set
// (FileList.csv + Videos/*.avi, MJPEG 112x112) of beating left-ventricle-like
// clips with known EF. See docs/synthetic_echo.md.
//
//   make_synthetic_echo --out DIR [--count 200] [--seed 1] [--threads N] ...
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "compressor/core/threading.hpp"
#include "compressor/data/synthetic_echo.hpp"

namespace {

void usage(std::FILE* to) {
  std::fprintf(to,
               "usage: make_synthetic_echo --out DIR [options]\n"
               "  --out DIR         folder to write (FileList.csv, Videos/, synthetic_echo.txt)\n"
               "  --count N         number of clips (default 200)\n"
               "  --seed S          random seed (default 1); same seed, same files\n"
               "  --size PX         frame height and width (default 112)\n"
               "  --fps F           frames per second (default 50)\n"
               "  --val F           fraction of VAL clips (default 0.125)\n"
               "  --test F          fraction of TEST clips (default 0.125)\n"
               "  --quality Q       MJPEG quantiser scale, 1 (best) to 31 (default 3)\n"
               "  --threads N       OpenMP threads (default: all)\n"
               "  --if-absent       do nothing when DIR already holds this data set\n"
               "  --quiet           no progress lines\n");
}

struct Args {
  std::filesystem::path out;
  compressor::data::SyntheticEchoOptions opt;
  bool if_absent = false, quiet = false;
};

double number(std::string_view flag, const char* text) {
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !std::isfinite(v))
    throw compressor::ValueError(std::string(flag) + ": '" + text + "' is not a number");
  return v;
}

std::int64_t integer(std::string_view flag, const char* text) {
  const double v = number(flag, text);
  if (v != std::floor(v) || v < 0 || v > 1e12)
    throw compressor::ValueError(std::string(flag) + ": '" + text +
                                 "' is not a non-negative integer");
  return static_cast<std::int64_t>(v);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage(stdout);
      std::exit(0);
    }
    if (flag == "--if-absent") {
      a.if_absent = true;
      continue;
    }
    if (flag == "--quiet") {
      a.quiet = true;
      continue;
    }
    if (i + 1 >= argc) throw compressor::ValueError(std::string(flag) + " needs a value");
    const char* v = argv[++i];
    auto& o = a.opt;
    if (flag == "--out")
      a.out = v;
    else if (flag == "--count")
      o.count = integer(flag, v);
    else if (flag == "--seed")
      o.seed = static_cast<std::uint64_t>(integer(flag, v));
    else if (flag == "--size")
      o.model.size = static_cast<int>(integer(flag, v));
    else if (flag == "--fps")
      o.model.fps = number(flag, v);
    else if (flag == "--val")
      o.val_fraction = number(flag, v);
    else if (flag == "--test")
      o.test_fraction = number(flag, v);
    else if (flag == "--quality")
      o.quality = static_cast<int>(integer(flag, v));
    else if (flag == "--threads")
      o.threads = static_cast<int>(integer(flag, v));
    else
      throw compressor::ValueError("unknown option '" + std::string(flag) + "'");
  }
  if (a.out.empty()) throw compressor::ValueError("--out DIR is required");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  try {
    args = parse(argc, argv);
  } catch (const compressor::Error& e) {
    std::fprintf(stderr, "make_synthetic_echo: %s\n", e.what());
    usage(stderr);
    return 2;
  }
  try {
    using namespace compressor::data;
    if (args.if_absent && std::filesystem::exists(args.out / "synthetic_echo.txt") &&
        read_file(args.out / "synthetic_echo.txt") == args.opt.stamp()) {
      std::printf("%s already holds this data set; nothing to do\n", args.out.c_str());
      return 0;
    }
    const auto t0 = std::chrono::steady_clock::now();
    if (!args.quiet) {
      args.opt.progress = [t0, step = std::max<std::int64_t>(1, args.opt.count / 10)](
                              std::int64_t done, std::int64_t count) {
        if (done % step != 0 && done != count) return;
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("  %lld/%lld clips, %.1f s, ETA %.1f s\n", static_cast<long long>(done),
                    static_cast<long long>(count), s, s / double(done) * double(count - done));
        std::fflush(stdout);
      };
    }
    const int threads = args.opt.threads > 0 ? args.opt.threads : compressor::num_threads();
    std::printf("writing %lld clips (seed %llu, %dx%d, %g fps) to %s with %d threads\n",
                static_cast<long long>(args.opt.count),
                static_cast<unsigned long long>(args.opt.seed), args.opt.model.size,
                args.opt.model.size, args.opt.model.fps, args.out.c_str(), threads);
    const auto clips = generate_synthetic_echo(args.out, args.opt);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    double sum = 0, sq = 0, lo = 100, hi = 0;
    std::int64_t frames = 0, bytes = 0;
    std::map<std::string, int> splits;
    for (const auto& c : clips) {
      sum += c.ef, sq += c.ef * c.ef, lo = std::min(lo, c.ef), hi = std::max(hi, c.ef);
      frames += c.frames;
      splits[c.split]++;
      bytes += static_cast<std::int64_t>(
          std::filesystem::file_size(args.out / "Videos" / (c.name + ".avi")));
    }
    const double n = double(clips.size()), mean = sum / n;
    std::printf("done in %.2f s (wall clock): %lld clips, %lld frames, %.1f MB of video\n", seconds,
                static_cast<long long>(clips.size()), static_cast<long long>(frames),
                double(bytes) / 1e6);
    std::printf("EF: mean %.1f, std %.1f, min %.1f, max %.1f; TRAIN %d, VAL %d, TEST %d\n", mean,
                std::sqrt(std::max(0.0, sq / n - mean * mean)), lo, hi, splits["TRAIN"],
                splits["VAL"], splits["TEST"]);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_synthetic_echo: error: %s\n", e.what());
    return 1;
  }
}
