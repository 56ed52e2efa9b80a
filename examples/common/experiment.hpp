// Pieces the experiment binaries share: the default CIFAR-10 data (the JPEG
// archive in ../shared/data, unpacked once into a cache folder), latency
// measurement of a deploy model and of all of a run's models together, file
// sizes, and the output folder check.
#pragma once

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/cli.hpp"
#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/io/atomic_file.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/io/optimizer_state.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/prune/finalize.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/int8_io.hpp"
#include "compressor/quant/observers.hpp"
#include "compressor/report/html.hpp"
#include "compressor/train/schedule.hpp"
#include "compressor/train/weight_average.hpp"

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

/// A training stage's checkpoint, written (atomically) after every epoch, so
/// that --resume continues an interrupted stage at its next epoch with the
/// weights, optimizer state and schedule position it had (an exact resume:
/// the data order depends only on the seed and the epoch). Its metadata
/// names the stage and its epoch count: a file of another stage or another
/// --epochs is refused, naming the file, rather than continued on another
/// schedule. The stage deletes it once its own model file is saved.
///
/// Tests of --resume: the environment variable
/// COMPRESSOR_TEST_KILL_AFTER_EPOCH="STAGE:EPOCH" kills the process (SIGKILL,
/// as kill -9) right after that stage's checkpoint of that epoch is written.
class EpochCheckpoint {
 public:
  EpochCheckpoint(fs::path file, std::string stage, int epochs)
      : file_(std::move(file)), stage_(std::move(stage)), epochs_(epochs) {}
  const fs::path& file() const { return file_; }

  /// Restores m and opt from the file (which must exist) and returns the
  /// first epoch still to train, in [2, epochs + 1]. A file written before
  /// checkpoints held the optimizer state (CIFAR baselines of earlier
  /// versions) restores the weights alone; *exact tells which. With avg, a
  /// weight average saved in the file is restored into it too.
  int restore(compressor::nn::Module& m, compressor::train::Optimizer& opt, bool* exact,
              compressor::train::WeightAverage* avg = nullptr) const {
    compressor::io::SafetensorsFile f = compressor::io::SafetensorsFile::open(file_);
    const std::string* epoch = f.metadata_value(kEpoch);
    require<IoError>(epoch != nullptr, file_.string(), ": no ", kEpoch, " in its metadata");
    const int done = parse_int(*epoch, kEpoch);
    if (const std::string* stage = f.metadata_value(kStage))
      require<IoError>(*stage == stage_, file_.string(), ": a checkpoint of stage '", *stage,
                       "', not of '", stage_, "'");
    if (const std::string* epochs = f.metadata_value(kEpochs))
      require<IoError>(parse_int(*epochs, kEpochs) == epochs_, file_.string(), ": epoch ", done,
                       " of ", *epochs, ", but this run trains ", stage_, " for ", epochs_,
                       " epochs; run with the same options to resume it, or delete the file to "
                       "train the stage afresh");
    require<IoError>(done >= 1 && done <= epochs_, file_.string(), ": ", kEpoch, " ", done,
                     " is outside [1, ", epochs_, "]");
    compressor::io::LoadOptions lo;
    lo.ignore = {std::string(compressor::io::kOptimizerPrefix) + "*",
                 std::string(compressor::io::kWeightAveragePrefix) + "*"};
    compressor::io::load_checkpoint(m, f, lo);
    *exact = f.metadata_value("optimizer") != nullptr;
    if (*exact) compressor::io::load_optimizer_state(f, opt);
    if (avg != nullptr && f.metadata_value("weight_average.count") != nullptr)
      compressor::io::load_weight_average(f, *avg);
    return done + 1;
  }

  /// Saves m and opt (and avg, when given) as of the end of `epoch` (1-based).
  void save(compressor::nn::Module& m, compressor::train::Optimizer& opt, int epoch,
            const compressor::train::WeightAverage* avg = nullptr) const {
    compressor::io::SafetensorsWriter w = compressor::io::checkpoint_writer(
        m, {{kStage, stage_}, {kEpoch, std::to_string(epoch)}, {kEpochs, std::to_string(epochs_)}});
    compressor::io::add_optimizer_state(w, opt);
    if (avg != nullptr) compressor::io::add_weight_average(w, *avg);
    w.write(file_);
    if (const char* kill = std::getenv("COMPRESSOR_TEST_KILL_AFTER_EPOCH");
        kill != nullptr && stage_ + ":" + std::to_string(epoch) == kill) {
      std::printf("%s: killed after epoch %d (COMPRESSOR_TEST_KILL_AFTER_EPOCH)\n", stage_.c_str(),
                  epoch);
      std::fflush(stdout);
      std::raise(SIGKILL);
    }
  }

 private:
  static constexpr const char* kStage = "experiment.stage";
  static constexpr const char* kEpoch = "experiment.epoch";
  static constexpr const char* kEpochs = "experiment.epochs";

  int parse_int(const std::string& v, const char* key) const {
    std::size_t used = 0;
    int x = 0;
    try {
      x = std::stoi(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    require<IoError>(used == v.size() && used > 0, file_.string(), ": ", key, " '", v,
                     "' is not an integer");
    return x;
  }

  fs::path file_;
  std::string stage_;
  int epochs_;
};

inline std::int64_t file_bytes(const fs::path& p) {
  return static_cast<std::int64_t>(fs::file_size(p));
}

struct Latency {
  double median_ms = 0, p90_ms = 0;
  int repeats = 0;
};

namespace detail {
/// Median and 90th percentile of timed runs, in milliseconds.
inline Latency summarize(std::vector<double> ms) {
  require(!ms.empty(), "latency: no timed run");
  std::sort(ms.begin(), ms.end());
  const auto at = [&](double q) {
    return ms[std::min(ms.size() - 1,
                       static_cast<std::size_t>(q * static_cast<double>(ms.size())))];
  };
  return {at(0.5), at(0.9), static_cast<int>(ms.size())};
}
}  // namespace detail

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
  return detail::summarize(std::move(ms));
}

/// Latencies of several models measured together: `rounds` rounds, in each of
/// which every model in turn runs once untimed, then timed until it has
/// `min_runs` runs and `seconds` have passed; a model's median and 90th
/// percentile are over all its timed runs. Interleaved so, every model sees
/// the same share of a shared machine's slow and fast spells, and the ratios
/// between models hold when absolute times drift during a run (measured one
/// after another for a second each, a 2-core VM gave the same model 3.1 and
/// 4.5 ms a minute apart).
inline std::vector<Latency> measure_latencies(const std::vector<std::function<void()>>& fns,
                                              int rounds, double seconds, int min_runs = 3) {
  using clock = std::chrono::steady_clock;
  require(rounds >= 1 && seconds >= 0 && min_runs >= 1,
          "measure_latencies: rounds and min_runs must be positive, seconds non-negative");
  std::vector<std::vector<double>> ms(fns.size());
  for (int r = 0; r < rounds; ++r)
    for (std::size_t i = 0; i < fns.size(); ++i) {
      fns[i]();
      const auto start = clock::now();
      for (int n = 0;
           n < min_runs || std::chrono::duration<double>(clock::now() - start).count() < seconds;
           ++n) {
        const auto t0 = clock::now();
        fns[i]();
        ms[i].push_back(std::chrono::duration<double, std::milli>(clock::now() - t0).count());
      }
    }
  std::vector<Latency> out;
  for (auto& v : ms) out.push_back(detail::summarize(std::move(v)));
  return out;
}

/// The observer names make_observer() accepts, for a CLI::IsMember check.
inline std::vector<std::string> observer_choices() {
  return {std::begin(compressor::quant::kObserverNames),
          std::end(compressor::quant::kObserverNames)};
}

/// How the final latency pass measures (ResultsFile::remeasure_latencies).
struct LatencyOptions {
  int rounds = 10;
  double seconds = 0.15;  ///< per model and round (at least 3 runs)

  void add_to(CLI::App& app) {
    app.add_option("--latency-rounds", rounds,
                   "at the end, every model is reloaded from its file and timed again, all "
                   "interleaved: this many rounds")
        ->capture_default_str()
        ->check(CLI::Range(1, 100000));
    app.add_option("--latency-seconds", seconds,
                   "seconds (at least 3 runs) per model in each latency round")
        ->capture_default_str()
        ->check(examples::float_range(0.0, 3600.0));
  }
};

/// A batch-1 forward on x of a results row's deploy model, reloaded from its
/// file: an int8 model file (precision "int8"), a sparse fp32 file (one with
/// prune::save_sparse_model's layer list), else an M checkpoint, made the
/// fp32 deploy model (BatchNorms folded).
template <class M>
std::function<void()> deploy_forward(const fs::path& file, const std::string& precision,
                                     const compressor::Tensor<float>& x) {
  namespace c = compressor;
  if (precision == "int8") {
    auto m = std::make_shared<c::quant::Int8Model>(c::quant::load_int8_model(file));
    return [m, &x] { (void)m->forward(x.view()); };
  }
  const bool sparse =
      c::io::SafetensorsFile::open(file).metadata_value(c::prune::kSparseLayersKey) != nullptr;
  std::shared_ptr<c::nn::Module> m;
  if (sparse) {
    m = c::prune::load_sparse_model<M>(file);
    m->eval();
  } else {
    m = c::quant::fp32_deploy_model(*c::io::load_model<M>(file));
  }
  return [m, &x] { (void)m->forward(x.view()); };
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

  /// The latency of every row with a model file, measured again on the
  /// models reloaded from their files, all together (measure_latencies:
  /// o.rounds rounds of at least o.seconds per model) on input x, at the
  /// current thread count and kernel path; then saves. The other fields of
  /// the rows stay as their stages wrote them.
  template <class M>
  void remeasure_latencies(const compressor::Tensor<float>& x, const LatencyOptions& o) {
    const int rounds = o.rounds;
    const double seconds = o.seconds;
    std::vector<std::size_t> rows;
    std::vector<std::function<void()>> fns;
    for (std::size_t i = 0; i < r_.rows.size(); ++i) {
      const compressor::report::Row& row = r_.rows[i];
      if (row.file.empty()) continue;
      fns.push_back(deploy_forward<M>(dir_ / row.file, row.precision, x));
      rows.push_back(i);
    }
    if (fns.empty()) return;
    std::printf("latency: %zu models from their files, %d rounds of %.2f s each, interleaved\n",
                fns.size(), rounds, seconds);
    std::fflush(stdout);
    const std::vector<Latency> lat = measure_latencies(fns, rounds, seconds);
    for (std::size_t k = 0; k < rows.size(); ++k) {
      compressor::report::Row& row = r_.rows[rows[k]];
      row.latency_ms_median = lat[k].median_ms;
      row.latency_ms_p90 = lat[k].p90_ms;
      row.threads = compressor::num_threads();
      row.kernel_path =
          std::string(compressor::kernels::path_name(compressor::kernels::kernel_path()));
    }
    r_.extras["latency"] = {{"interleaved", true},
                            {"rounds", rounds},
                            {"seconds_per_round", seconds},
                            {"models", rows.size()}};
    save();
  }

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
