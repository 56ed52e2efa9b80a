// make_synthetic_echo: writes a synthetic EchoNet-Dynamic-layout data set
// (FileList.csv + Videos/*.avi, MJPEG 112x112) of beating left-ventricle-like
// clips with known EF. See docs/synthetic_echo.md.
//
//   make_synthetic_echo --out DIR [--count 200] [--seed 1] [--threads N] ...
#include <CLI/CLI.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "common/cli.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/data/synthetic_echo.hpp"

namespace {

struct Args {
  std::filesystem::path out;
  compressor::data::SyntheticEchoOptions opt;
  bool if_absent = false, quiet = false;
};

Args parse(int argc, char** argv) {
  Args a;
  auto& o = a.opt;
  std::string out;
  CLI::App app{
      "make_synthetic_echo: writes a synthetic EchoNet-Dynamic-layout data set of "
      "beating left-ventricle-like clips with known EF (docs/synthetic_echo.md)"};
  app.add_option("--out", out, "folder to write (FileList.csv, Videos/, synthetic_echo.txt)")
      ->required();
  app.add_option("--count", o.count, "number of clips")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{100000000}));
  app.add_option("--seed", o.seed, "random seed; same seed, same files")->capture_default_str();
  app.add_option("--size", o.model.size, "frame height and width")
      ->capture_default_str()
      ->check(CLI::Range(16, 4096));
  app.add_option("--fps", o.model.fps, "frames per second")
      ->capture_default_str()
      ->check(examples::float_range(1.0, 1000.0));
  app.add_option("--val", o.val_fraction, "fraction of VAL clips")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 1.0));
  app.add_option("--test", o.test_fraction, "fraction of TEST clips")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 1.0));
  app.add_option("--quality", o.quality, "MJPEG quantiser scale, 1 (best) to 31")
      ->capture_default_str()
      ->check(CLI::Range(1, 31));
  app.add_option("--threads", o.threads, "OpenMP threads (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  app.add_flag("--if-absent", a.if_absent, "do nothing when --out already holds this data set");
  app.add_flag("--quiet", a.quiet, "no progress lines");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  a.out = out;
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  Args args = parse(argc, argv);
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
