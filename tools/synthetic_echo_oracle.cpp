// How much ejection-fraction information T frames of a synthetic clip keep.
//
// The synthetic EchoNet set (data/synthetic_echo_model.hpp) shows 1.2-3.8
// heart cycles per clip; the loaders sample T frames at the centres of T
// equal parts of the clip (data/video_decode.hpp, sample_indices). This
// program draws clips from the same model and reports the error of a perfect
// reader of the ventricle's volume that sees only those T frames and
// estimates EF as 100 * (1 - min / max) of their volumes: a floor, set by the
// frames alone, that a learned regressor can lower only by learning the
// curve's shape. No video is rendered.
//
//   g++ -std=c++20 -O2 -Iinclude tools/synthetic_echo_oracle.cpp -o /tmp/oracle
//   /tmp/oracle 8 16 32
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "compressor/data/synthetic_echo_model.hpp"

using namespace compressor;

int main(int argc, char** argv) {
  std::vector<long> counts;
  for (int i = 1; i < argc; ++i) {
    char* end = nullptr;
    const long t = std::strtol(argv[i], &end, 10);
    if (end == argv[i] || *end != '\0' || t < 1 || t > 4096) {
      std::fprintf(stderr, "synthetic_echo_oracle: '%s': expected a frame count in [1, 4096]\n",
                   argv[i]);
      return 1;
    }
    counts.push_back(t);
  }
  if (counts.empty()) counts = {8, 16, 32};
  const data::EchoModelOptions opt;
  constexpr int kClips = 20000;
  for (const long t : counts) {
    Rng rng(1);  // the same clips for every frame count
    double abs_err = 0, sq_err = 0;
    for (int i = 0; i < kClips; ++i) {
      const data::EchoClipParams p = data::draw_echo_clip(rng, opt);
      double lo = 1e300, hi = -1e300;
      for (long k = 0; k < t; ++k) {
        const std::int64_t frame = ((2 * k + 1) * p.frames) / (2 * t);  // sample_indices' centres
        const double v = data::volume_fraction(data::cycle_phase(p, frame), p.ef_target, p.systole);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
      const double err = 100.0 * (1.0 - lo / hi) - p.ef_target;
      abs_err += std::abs(err);
      sq_err += err * err;
    }
    std::printf("%4ld frames: MAE %.2f, RMSE %.2f EF points (%d clips)\n", t, abs_err / kClips,
                std::sqrt(sq_err / kClips), kClips);
  }
  return 0;
}
