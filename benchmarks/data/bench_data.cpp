// Data loading throughput, to set beside the training step time: a data
// loader that prepares batches faster than a training step consumes them
// never makes training wait.
//
//   BM_ClipDecode        decode + sample T frames + RGB + resize, one clip
//   BM_ClipLoader        EchoNet DataLoader (background thread), clips/s
//   BM_ImageLoader       CIFAR-10-shaped DataLoader with crop+flip, images/s
//   BM_SyntheticEchoClip render + MJPEG-encode one synthetic clip
//
// The clips are a synthetic EchoNet-layout set (112x112 MJPEG, ~100 frames)
// generated once into the temp folder. items_per_second is clips/s or images/s.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <memory>

#include "compressor/core/rng.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/data/cifar10.hpp"
#include "compressor/data/echonet.hpp"
#include "compressor/data/image_dataset.hpp"
#include "compressor/data/loader.hpp"
#include "compressor/data/synthetic_echo.hpp"
#include "compressor/data/video_decode.hpp"

namespace {

using namespace compressor;
using namespace compressor::data;

constexpr std::int64_t kClips = 24;

const std::filesystem::path& echo_dir() {
  static const std::filesystem::path dir = [] {
    const auto d = std::filesystem::temp_directory_path() / "compressor_bench_echo";
    SyntheticEchoOptions opt;
    opt.count = kClips;
    opt.seed = 11;
    ensure_synthetic_echo(d, opt);
    return d;
  }();
  return dir;
}

std::filesystem::path clip_path(std::int64_t i) {
  return echo_dir() / "Videos" / (synthetic_echo_name(i) + ".avi");
}

/// Pulls batches as fast as the loader makes them, one per iteration, after
/// a warm-up epoch (which allocates the batch buffers and fills any cache).
/// Returns the number of samples pulled while timing.
std::int64_t pull_batches(benchmark::State& state, BatchSource& loader) {
  Batch b;
  loader.start_epoch(0);
  while (loader.next(b)) {
  }
  std::uint64_t epoch = 1;
  std::int64_t samples = 0;
  loader.start_epoch(epoch);
  for (auto _ : state) {
    if (!loader.next(b)) {
      loader.start_epoch(++epoch);
      loader.next(b);
    }
    samples += b.size();
  }
  return samples;
}

// Args: frames T, output size.
void BM_ClipDecode(benchmark::State& state) {
  const ClipSpec spec{state.range(0), state.range(1), state.range(1)};
  Tensor<std::uint8_t> clip;
  std::int64_t i = 0, frames = 0;
  for (auto _ : state) {
    frames += decode_clip(clip_path(i++ % kClips), spec, clip).frames;
    benchmark::DoNotOptimize(clip.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["source_frames_per_clip"] = double(frames) / double(state.iterations());
}
BENCHMARK(BM_ClipDecode)
    ->ArgNames({"T", "size"})
    ->Args({32, 112})
    ->Args({16, 112})
    ->Args({64, 112})
    ->Args({32, 64})
    ->Args({1000, 112})  // more than any clip has: every frame decoded
    ->Unit(benchmark::kMillisecond);

// Args: loader threads, cache (0/1). Batches of 8 clips of 32x112x112x3 from
// the 18 TRAIN clips, pulled as fast as the loader makes them (prefetch 2).
void BM_ClipLoader(benchmark::State& state) {
  EchoNetOptions eo;
  eo.clip = ClipSpec{32, 112, 112};
  eo.cache_mb = state.range(1) ? 1024 : 0;
  const EchoNet echo(echo_dir(), eo);
  LoaderOptions lo;
  lo.batch_size = 8;
  lo.threads = static_cast<int>(state.range(0));
  auto loader = echo.loader(EchoSplit::train, lo);
  state.SetItemsProcessed(pull_batches(state, *loader));
}
BENCHMARK(BM_ClipLoader)
    ->ArgNames({"threads", "cache"})
    ->Args({1, 0})
    ->Args({2, 0})
    ->Args({1, 1})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0)
    ->UseRealTime();

// Args: loader threads. 10,000 random 32x32x3 images (CIFAR-10's test split
// size), CIFAR-10 normalisation, crop with 4-pixel padding and flip, batches
// of 128.
void BM_ImageLoader(benchmark::State& state) {
  ImageSet set;
  set.classes = cifar10_classes();
  set.images.resize(Shape{10000, 32, 32, 3});
  set.labels.resize(Shape{10000});
  Rng rng(3);
  for (auto& v : set.images.flat()) v = static_cast<std::uint8_t>(rng.below(256));
  for (auto& l : set.labels.flat()) l = static_cast<std::int32_t>(rng.below(10));
  auto ds = std::make_shared<ImageDataset>(std::move(set), Normalization::cifar10(),
                                           Augmentation::cifar10_train());
  LoaderOptions lo;
  lo.batch_size = 128;
  lo.threads = static_cast<int>(state.range(0));
  DataLoader loader(ds, lo);
  state.SetItemsProcessed(pull_batches(state, loader));
}
BENCHMARK(BM_ImageLoader)->ArgName("threads")->Arg(1)->Arg(2)->MinTime(1.0)->UseRealTime();

void BM_SyntheticEchoClip(benchmark::State& state) {
  const auto dir = std::filesystem::temp_directory_path() / "compressor_bench_echo_write";
  std::filesystem::create_directories(dir);
  SyntheticEchoOptions opt;
  std::int64_t i = 0, frames = 0;
  for (auto _ : state) {
    const auto p = synthetic_echo_params(opt, i++);
    frames += write_synthetic_echo_clip(dir / "clip.avi", p, opt.quality).frames;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["frames_per_clip"] = double(frames) / double(state.iterations());
}
BENCHMARK(BM_SyntheticEchoClip)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  av_log_set_level(AV_LOG_ERROR);
  echo_dir();  // generate the clips before any timing
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
