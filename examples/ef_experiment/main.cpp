// ef_experiment: the EchoNet EF experiments end to end. Trains the EF
// regressor (a ResNet-18 trunk per frame, features pooled over time, a linear
// head) or reuses the one in --out, then
//   --mode pruning      unstructured global magnitude pruning at each
//                       --unstructured ratio and structured channel pruning at
//                       each --structured ratio, each fine-tuned with its
//                       masks kept;
//   --mode quantization PTQ and QAT int8;
//   --mode all          both, plus structured pruning -> PTQ and
//                       unstructured pruning -> PTQ.
// Every model is measured (test MAE, RMSE, R2 in EF points; parameters,
// sparsity before and after fine-tuning, MACs, file size, batch-1 latency per
// clip) beside the mean predictor, and written to results.json, results.csv
// and report.html in --out, stage by stage; --resume keeps finished stages
// and continues an interrupted training stage from its last finished epoch.
//
// The defaults are the quick configuration of the README demo (synthetic
// data, a quarter-width ResNet-18 on 16 frames of 64x64); --full is the
// full configuration (full width, 16 frames of 112x112, longer training).
//
// Under `mpirun -np N` (built with MPI) every training stage runs
// data-parallel: --batch-size is the global batch, each rank trains on its
// share with averaged gradients; rank 0 alone measures, prints and writes
// (examples/common/data_parallel.hpp, docs/distributed.md).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/data_parallel.hpp"
#include "common/echo.hpp"
#include "common/experiment.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/data/echonet.hpp"
#include "compressor/data/transform.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/io/safetensors.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/models/ef_regressor.hpp"
#include "compressor/prune.hpp"
#include "compressor/prune/finalize_int8.hpp"
#include "compressor/quant/choose_rule.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/int8_io.hpp"
#include "compressor/quant/observers.hpp"
#include "compressor/quant/qat.hpp"
#include "compressor/report/html.hpp"
#include "compressor/train.hpp"

namespace fs = std::filesystem;
using namespace compressor;
using report::Json;

namespace {

struct Config {
  std::string data_root;
  std::string mode = "all";
  bool full = false;
  std::int64_t generate = 1600, frames = 16, size = 64, batch_size = 8, max_clips = 0;
  double width = 0.25;
  std::string pool = "mean_max_min";
  int epochs = 12, finetune_epochs = 2, qat_epochs = 1;
  float lr = 2e-3f, finetune_lr = 5e-4f, qat_lr = 2e-5f, weight_decay = 0.05f;
  std::string qat_observer = "histogram_mse";
  bool qat_freeze_bn = true;
  std::vector<double> unstructured = {0.5, 0.8, 0.9}, structured = {0.3, 0.5, 0.7};
  std::int64_t round_to = 1;
  std::int64_t calibration_batches = 16;
  std::int64_t calibration_offset = 0;
  std::string observer = "auto";
  std::string weight_grid = "full";
  int threads = 0;
  std::uint64_t seed = 1;
  std::string out = "ef_experiment_out";
  bool train_baseline = true, resume = false;
  std::string export_tensors;  ///< empty: none
  examples::LatencyOptions latency;
  int ranks = 1;  ///< data-parallel ranks (mpirun), not an option
};

Config parse(int argc, char** argv) {
  Config c;
  c.threads = num_threads();
  CLI::App app{
      "ef_experiment: the EF regressor on EchoNet-layout clips, pruned and quantized, measured "
      "beside the baseline and the mean predictor (results.json, results.csv, report.html in "
      "--out)"};
  app.add_option("--data-root", c.data_root,
                 "EchoNet-Dynamic layout root (FileList.csv, Videos/); default: a synthetic set "
                 "in ./synthetic_echo, generated on first use");
  app.add_option("--mode", c.mode, "which experiments")
      ->capture_default_str()
      ->check(CLI::IsMember({"pruning", "quantization", "all"}));
  app.add_flag("--full", c.full,
               "the full configuration: ResNet-18 at full width on 16 frames of 112x112, 30 "
               "epochs, 4 fine-tuning epochs, batch 8 (the defaults of --width, --frames, "
               "--size, --epochs, --finetune-epochs, --batch-size; given on the command line, "
               "they still apply)");
  app.add_option("--generate", c.generate, "clips of the synthetic set")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{8}, int64_t{1000000}));
  app.add_option("--frames", c.frames, "frames sampled per clip")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1024}));
  app.add_option("--size", c.size, "frame height and width")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{32}, int64_t{1024}));
  app.add_option("--width", c.width, "ResNet-18 width multiplier")
      ->capture_default_str()
      ->check(examples::float_range(0.05, 4.0));
  app.add_option("--pool", c.pool, "pooling of frame features over time")
      ->capture_default_str()
      ->check(CLI::IsMember({"mean", "mean_max_min"}));
  app.add_option("--batch-size", c.batch_size, "clips per batch")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  app.add_option("--max-clips", c.max_clips, "at most N clips per split (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{100000000}));
  app.add_option("--epochs", c.epochs, "baseline training epochs")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("--finetune-epochs", c.finetune_epochs, "fine-tuning epochs after pruning")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  app.add_option("--qat-epochs", c.qat_epochs, "QAT fine-tuning epochs")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  app.add_option("--lr", c.lr, "peak learning rate of AdamW (cosine)")
      ->capture_default_str()
      ->check(examples::float_range(1e-7, 10.0));
  app.add_option("--finetune-lr", c.finetune_lr, "fine-tuning learning rate after pruning (cosine)")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 10.0));
  app.add_option("--qat-lr", c.qat_lr, "QAT learning rate (cosine)")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 10.0));
  app.add_option("--qat-observer", c.qat_observer,
                 "QAT activation observer (data-parallel runs: minmax or moving_average, whose "
                 "ranges merge over the ranks)")
      ->capture_default_str()
      ->check(CLI::IsMember(examples::observer_choices()));
  app.add_flag("--qat-freeze-bn,!--no-qat-freeze-bn", c.qat_freeze_bn,
               "keep the baseline's BatchNorm statistics during QAT")
      ->capture_default_str();
  app.add_option("--weight-decay", c.weight_decay, "AdamW weight decay of weights")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 10.0));
  app.add_option("--unstructured", c.unstructured, "unstructured sparsities, in [0, 1)")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 0.999999));
  app.add_option("--structured", c.structured, "channel pruning ratios, in [0, 1)")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 0.999999));
  app.add_option("--round-to", c.round_to, "kept channels rounded up to a multiple of this")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{512}));
  app.add_option("--calibration-batches", c.calibration_batches,
                 "PTQ calibration batches: training clips in file order from "
                 "--calibration-offset, augmented as in training")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  app.add_option("--calibration-offset", c.calibration_offset,
                 "index of the first PTQ calibration clip in the training split (another "
                 "offset calibrates on other clips, to measure PTQ's spread over "
                 "calibration sets)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{100000000}));
  auto ptq_observers = examples::observer_choices();
  ptq_observers.emplace_back("auto");
  app.add_option("--observer", c.observer,
                 "PTQ activation observer; auto: one histogram calibration, then the range rule "
                 "(mse, kl, minmax, percentile) whose int8 model has the lowest MAE on the "
                 "validation split")
      ->capture_default_str()
      ->check(CLI::IsMember(ptq_observers));
  app.add_option("--weight-grid", c.weight_grid,
                 "int8 weight grid of PTQ and QAT: full [-127, 127] or narrow [-64, 64] "
                 "(fastest on AVX2 / AVX-512 without VNNI)")
      ->capture_default_str()
      ->check(CLI::IsMember({"full", "narrow"}));
  app.add_option("--threads", c.threads, "threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--seed", c.seed, "seed of initialisation, shuffling and the synthetic set")
      ->capture_default_str();
  app.add_option("--out", c.out, "output folder")->capture_default_str();
  app.add_flag("--train-baseline,!--no-train-baseline", c.train_baseline,
               "train the baseline, or reuse --out/baseline.safetensors")
      ->capture_default_str();
  app.add_flag("--resume", c.resume, "continue an interrupted run in --out")->capture_default_str();
  c.latency.add_to(app);
  app.add_option("--export-tensors", c.export_tensors,
                 "also write the PTQ calibration clips and the test clips with their EF, as "
                 "the model sees them, to this safetensors file (for comparisons with other "
                 "frameworks: tools/compare_quant_pytorch_ef.py)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  if (c.full) {  // its values, except where the command line gives one
    const auto set = [&app](const char* flag, auto& field, auto value) {
      if (app.count(flag) == 0) field = value;
    };
    set("--width", c.width, 1.0);
    set("--frames", c.frames, std::int64_t{16});
    set("--size", c.size, std::int64_t{112});
    set("--epochs", c.epochs, 30);
    set("--finetune-epochs", c.finetune_epochs, 4);
    set("--batch-size", c.batch_size, std::int64_t{8});
  }
  return c;
}

Json config_json(const Config& c) {
  return {{"data_root", c.data_root},
          {"mode", c.mode},
          {"full", c.full},
          {"generate", c.generate},
          {"frames", c.frames},
          {"size", c.size},
          {"width", c.width},
          {"pool", c.pool},
          {"batch_size", c.batch_size},
          {"max_clips", c.max_clips},
          {"epochs", c.epochs},
          {"finetune_epochs", c.finetune_epochs},
          {"qat_epochs", c.qat_epochs},
          {"qat_lr", c.qat_lr},
          {"qat_observer", c.qat_observer},
          {"qat_freeze_bn", c.qat_freeze_bn},
          {"lr", c.lr},
          {"finetune_lr", c.finetune_lr},
          {"weight_decay", c.weight_decay},
          {"unstructured", c.unstructured},
          {"structured", c.structured},
          {"round_to", c.round_to},
          {"calibration_batches", c.calibration_batches},
          {"calibration_offset", c.calibration_offset},
          {"observer", c.observer},
          {"weight_grid", c.weight_grid},
          {"threads", c.threads},
          {"seed", c.seed},
          {"out", c.out},
          {"train_baseline", c.train_baseline},
          {"resume", c.resume},
          {"export_tensors", c.export_tensors},
          {"latency_rounds", c.latency.rounds},
          {"latency_seconds", c.latency.seconds},
          {"ranks", c.ranks}};
}

/// Unstructured pruning keeps these dense (the stem and the head).
const std::vector<std::string> kDenseLayers = {"backbone.conv1", "head"};

/// The masks an unstructured-pruned model holds: its zero weights in the
/// layers pruning chose (all but kDenseLayers). Also right for a model
/// reloaded from its masked checkpoint (--resume).
prune::MaskSet zero_masks(nn::Module& m) {
  prune::MaskSet s;
  m.visit([&](const std::string& name, nn::Module& mod) {
    auto* w = nn::as<nn::WeightedLayer>(mod);
    if (w == nullptr || io::glob_match_any(kDenseLayers, name)) return;  // as the pruning's exclude
    const Tensor<float>& weight = w->weight();
    prune::LayerMask lm{name, weight.shape(), {}};
    lm.keep.resize(static_cast<std::size_t>(weight.numel()));
    for (std::int64_t i = 0; i < weight.numel(); ++i)
      lm.keep[static_cast<std::size_t>(i)] = weight[i] != 0.f ? 1 : 0;
    s.add(std::move(lm));
  });
  return s;
}

std::string ratio_name(double r) {
  std::ostringstream os;
  os << r;
  return os.str();
}

class Experiment {
 public:
  Experiment(Config c, const examples::DataParallel& dp)
      : c_(std::move(c)),
        dp_(dp),
        out_(c_.out),
        results_(out_, c_.resume, config_json(c_),
                 {.title = "EchoNet EF: pruning and int8 quantization of the EF regressor",
                  .metric = "mae",
                  .metric_label = "test MAE (EF points)",
                  .lower_is_better = true}) {}

  int run() {
    const auto t0 = std::chrono::steady_clock::now();
    load_data();
    if (!c_.export_tensors.empty() && dp_.lead()) export_tensors(c_.export_tensors);
    auto base = baseline();
    const bool pruning = c_.mode != "quantization", quant = c_.mode != "pruning";
    // The first ratio of each kind goes on to PTQ (prune -> quantize).
    std::unique_ptr<models::EfRegressor> structured_first, unstructured_first;
    double structured_ratio = 0, unstructured_ratio = 0;
    if (pruning) {
      for (double r : c_.unstructured) {
        auto m = unstructured(*base, r);
        if (m && !unstructured_first) {
          unstructured_first = std::move(m);
          unstructured_ratio = r;
        }
      }
      for (double r : c_.structured) {
        auto m = structured(*base, r);
        if (m && !structured_first) {
          structured_first = std::move(m);
          structured_ratio = r;
        }
      }
    }
    if (quant) {
      ptq(*base, "PTQ int8", "ptq");
      if (c_.qat_epochs > 0) qat(*base);
    }
    if (!dp_.lead()) return 0;  // the other ranks only train
    if (pruning && quant) {
      if (structured_first)
        ptq(*structured_first, "structured+PTQ int8", "structured+ptq", structured_ratio);
      if (unstructured_first)
        ptq(*unstructured_first, "unstructured+PTQ int8", "unstructured+ptq", unstructured_ratio,
            true);
    }
    const Tensor<float> clip(clip_shape(), 0.1f);
    results_.remeasure_latencies<models::EfRegressor>(clip, c_.latency);
    print_table();
    std::printf("total %.1f min; wrote %s, %s and %s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60,
                (out_ / "results.json").c_str(), (out_ / "results.csv").c_str(),
                (out_ / "report.html").c_str());
    return 0;
  }

 private:
  // ---- data ---------------------------------------------------------------------

  void load_data() {
    fs::path root = c_.data_root;
    if (root.empty()) {
      root = "synthetic_echo";
      if (dp_.lead()) examples::ensure_synthetic_echo_set(root, c_.generate, c_.seed);
      dp_.barrier();  // the other ranks read the set rank 0 generated
    }
    data::EchoNetOptions eo;
    eo.clip = data::ClipSpec{c_.frames, c_.size, c_.size};
    eo.max_clips = c_.max_clips;
    eo.normalization = examples::echo_normalization();
    eo.train_temporal_jitter = true;
    eo.train_augmentation = data::Augmentation{static_cast<int>(c_.size / 14), true};
    ds_ = std::make_unique<data::EchoNet>(root, eo);
    const auto& train = ds_->records(data::EchoSplit::train);
    require(!train.empty() && !ds_->records(data::EchoSplit::val).empty() &&
                !ds_->records(data::EchoSplit::test).empty(),
            root.string(), ": need TRAIN, VAL and TEST clips, got ", train.size(), ", ",
            ds_->records(data::EchoSplit::val).size(), ", ",
            ds_->records(data::EchoSplit::test).size());
    require(c_.calibration_offset < std::ssize(train), "--calibration-offset ",
            c_.calibration_offset, ": the training split has ", train.size(),
            " clips (the offset must index one of them)");
    double mean = 0, var = 0;
    for (const auto& r : train) mean += r.ef;
    mean /= static_cast<double>(train.size());
    for (const auto& r : train) var += (r.ef - mean) * (r.ef - mean);
    mean_ef_ = static_cast<float>(mean);
    std_ef_ =
        static_cast<float>(std::max(1e-3, std::sqrt(var / static_cast<double>(train.size()))));
    std::printf(
        "data: %s: %zu train, %zu val, %zu test clips of %lld frames of %lldx%lld; train "
        "EF mean %.2f, std %.2f\n",
        root.c_str(), train.size(), ds_->records(data::EchoSplit::val).size(),
        ds_->records(data::EchoSplit::test).size(), static_cast<long long>(c_.frames),
        static_cast<long long>(c_.size), static_cast<long long>(c_.size), mean, std_ef_);
  }

  /// --export-tensors: "calibration.clips" (what ptq() calibrates on: the
  /// first --calibration-batches batches of calibration_loader(), augmented
  /// as in training, which the loader repeats exactly for a given seed),
  /// "test.clips" and "test.ef"; clips (N, T, H, W, 3), normalised.
  void export_tensors(const fs::path& file) const {
    auto gather = [](data::BatchSource& src, std::int64_t max_batches, bool targets) {
      std::vector<data::Batch> batches;
      src.start_epoch(0);
      for (data::Batch b; (max_batches == 0 || std::ssize(batches) < max_batches) && src.next(b);)
        batches.push_back(std::move(b));
      require(!batches.empty(), "--export-tensors: the loader gave no batch");
      std::int64_t n = 0;
      for (const auto& b : batches) n += b.size();
      std::vector<std::int64_t> dims(batches[0].inputs.shape().dims().begin(),
                                     batches[0].inputs.shape().dims().end());
      dims[0] = n;
      std::pair<Tensor<float>, Tensor<float>> out{Tensor<float>(Shape(dims)),
                                                  Tensor<float>(Shape{n, 1})};
      const std::int64_t per_clip = batches[0].inputs.numel() / batches[0].size();
      std::int64_t at = 0;
      for (const auto& b : batches) {
        std::copy_n(b.inputs.data(), b.inputs.numel(), out.first.data() + at * per_clip);
        if (targets) std::copy_n(b.targets.data(), b.size(), out.second.data() + at);
        at += b.size();
      }
      return out;
    };
    io::SafetensorsWriter w;
    auto calibration = calibration_loader();
    const auto calibration_clips = gather(*calibration, c_.calibration_batches, false).first;
    w.add("calibration.clips", calibration_clips);
    auto test = loader(data::EchoSplit::test, false);
    const auto [clips, ef] = gather(*test, 0, true);
    w.add("test.clips", clips);
    w.add("test.ef", ef);
    w.write(file);
    std::printf("wrote %s: %lld calibration clips, %lld test clips\n", file.c_str(),
                static_cast<long long>(calibration_clips.dim(0)),
                static_cast<long long>(clips.dim(0)));
  }

  /// With --resume: the stage's row and model file are there (rank 0's
  /// answer on every rank, so that all skip the stage's training or none).
  bool done(const std::string& row, const fs::path& file) const {
    return dp_.agree(results_.done(row, file));
  }

  /// A loader of split; with `sharded`, this rank's share of every batch.
  std::unique_ptr<data::BatchSource> loader(data::EchoSplit split, bool shuffle,
                                            bool sharded = false) const {
    data::LoaderOptions lo;
    lo.batch_size = c_.batch_size;
    lo.shuffle = shuffle;
    lo.seed = c_.seed;
    return ds_->loader(split, sharded ? dp_.shard(lo) : lo);
  }
  /// PTQ's calibration clips: the training split from --calibration-offset, in
  /// file order, augmented as in training (the same clips on every run).
  std::unique_ptr<data::BatchSource> calibration_loader() const {
    if (c_.calibration_offset == 0) return loader(data::EchoSplit::train, false);
    const auto train = ds_->dataset(data::EchoSplit::train);
    data::LoaderOptions lo;
    lo.batch_size = c_.batch_size;
    lo.shuffle = false;
    lo.seed = c_.seed;
    lo.errors = ds_->options().errors;
    return std::make_unique<data::DataLoader>(
        std::make_shared<data::Subset>(train, c_.calibration_offset,
                                       train->size() - c_.calibration_offset),
        lo);
  }
  Shape clip_shape() const { return Shape{1, c_.frames, c_.size, c_.size, 3}; }

  // ---- measuring ------------------------------------------------------------------

  /// MAE, RMSE and R2 on the test split of a model predicting EF.
  train::Metrics test_metrics(train::FloatModel auto& m) {
    auto test = loader(data::EchoSplit::test, false);
    return train::evaluate(m, mse_, train::Task::regression, *test);
  }
  /// --observer auto: the range rule of p's histograms whose int8 model has
  /// the lowest validation MAE (the test split stays unseen); recorded in
  /// results.json's "ptq_range_rule".
  void choose_range_rule(quant::Prepared& p, const std::string& name) {
    auto val = loader(data::EchoSplit::val, false);
    const quant::RangeRuleChoice c = quant::choose_range_rule(p, [&](quant::Int8Model& int8) {
      return train::evaluate(int8, mse_, train::Task::regression, *val).mae;
    });
    Json trials = Json::object();
    std::printf("%s: validation MAE per range rule:", name.c_str());
    for (const auto& t : c.trials) {
      trials[std::string(quant::to_string(t.rule))] = t.score;
      std::printf(" %s %.3f", std::string(quant::to_string(t.rule)).c_str(), t.score);
    }
    std::printf(" -> %s\n", std::string(quant::to_string(c.best)).c_str());
    results_.extras()["ptq_range_rule"][name] = {{"chosen", std::string(quant::to_string(c.best))},
                                                 {"val_mae", trials}};
  }
  template <class F>
  examples::Latency latency(F&& forward) {
    const Tensor<float> x(clip_shape(), 0.1f);
    return examples::measure_latency([&] { (void)forward(x.view()); }, 10, 1.0, 2);
  }
  /// Fills a row's metric and latency fields.
  void finish_row(report::Row& r, const train::Metrics& m, const examples::Latency& lat) {
    r.metrics = {{"mae", m.mae}, {"rmse", m.rmse}, {"r2", m.r2}};
    r.latency_ms_median = lat.median_ms;
    r.latency_ms_p90 = lat.p90_ms;
    r.threads = c_.threads;
    r.kernel_path = std::string(kernels::path_name(kernels::kernel_path()));
    results_.put(r);
    results_.save();
    std::printf("%s: test MAE %.3f, RMSE %.3f, R2 %.3f; %.1f ms per clip; file %.2f MB\n",
                r.name.c_str(), m.mae, m.rmse, m.r2, lat.median_ms, r.file_bytes * 1e-6);
    std::fflush(stdout);
  }
  report::Row sized_row(const std::string& name, const std::string& method,
                        const std::string& precision, nn::Module& model, const fs::path& file) {
    report::Row r;
    r.name = name;
    r.method = method;
    r.precision = precision;
    const prune::ModelReport rep = prune::report(model, clip_shape());
    r.params_total = rep.parameters;
    r.params_nonzero = rep.nonzero_parameters;
    r.macs = rep.macs;
    r.file_bytes = examples::file_bytes(file);
    r.file = file.filename().string();
    return r;
  }

  // ---- training -------------------------------------------------------------------

  /// Trains model for `epochs` epochs of AdamW with a cosine schedule from
  /// lr, on standardised EF targets (the baseline from scratch: its head
  /// starts at the mean) or on EF itself (fine-tuning a model that predicts
  /// EF: Adam's steps do not depend on the loss scale); hook(trainer, opt)
  /// may attach pruning masks. With `resumable`, a checkpoint is written
  /// after every epoch (examples::EpochCheckpoint, partial_file(stage)) and
  /// --resume continues from it; the stage removes it once saved.
  /// Data-parallel (several ranks): every rank starts from rank 0's model,
  /// trains on its share of each batch and validates on its share of the
  /// validation set with rank 0's BatchNorm statistics (in eval mode, where
  /// QAT's observers do not observe); the epoch lines give every rank's
  /// metrics.
  void fit(nn::Module& model, int epochs, float lr, const std::string& stage, bool standardized,
           const std::function<void(train::Trainer&, train::Optimizer&)>& hook = {},
           bool resumable = true) {
    if (epochs <= 0) return;
    dp_.broadcast(model);
    auto train = loader(data::EchoSplit::train, true, /*sharded=*/true);
    auto val = loader(data::EchoSplit::val, false, /*sharded=*/true);
    const auto to_z = standardized ? data::standardize_targets(mean_ef_, std_ef_)
                                   : data::standardize_targets(0.f, 1.f);
    data::MappedSource train_z(*train, to_z), val_z(*val, to_z);
    train::AdamW opt(model, train::AdamOptions{.lr = lr,
                                               .weight_decay = c_.weight_decay,
                                               .decay_policy = train::DecayPolicy::weights_only});
    const std::int64_t steps = std::max<std::int64_t>(1, epochs * train->num_batches());
    train::CosineLr sched(lr, steps, std::min<std::int64_t>(steps / 10, train->num_batches()));
    train::Trainer trainer(model, mse_, opt, train::Task::regression, &sched);
    const auto averaging = dp_.average_gradients(trainer, model);  // before the masks' hooks
    if (hook) hook(trainer, opt);
    train::FitOptions fo;
    fo.epochs = epochs;
    fo.log = dp_.lead() ? &std::cout : nullptr;
    fo.progress_interval = 15;
    fo.ranks = dp_.size();
    dp_.distribute_metrics(model, fo);
    const examples::EpochCheckpoint partial(partial_file(stage), stage, epochs);
    if (resumable && dp_.agree(c_.resume && fs::exists(partial.file()))) {
      bool exact = false;  // every rank restores from the same file
      fo.first_epoch = partial.restore(model, opt, &exact);
      std::printf("resume: %s from epoch %d of %d (%s)\n", stage.c_str(), fo.first_epoch, epochs,
                  partial.file().c_str());
    }
    if (resumable && dp_.lead())
      fo.after_epoch = [&](const train::EpochReport& r) { partial.save(model, opt, r.epoch); };
    std::printf("%s: %d epoch(s) from lr %g\n", stage.c_str(), epochs, static_cast<double>(lr));
    trainer.fit(train_z, &val_z, fo);
  }
  /// The per-epoch checkpoint of a stage's training: "baseline.partial.safetensors",
  /// "structured_0.5.partial.safetensors".
  fs::path partial_file(const std::string& stage) const {
    std::string s = stage;
    std::replace(s.begin(), s.end(), ' ', '_');
    return out_ / (s + ".partial.safetensors");
  }

  static std::unique_ptr<models::EfRegressor> copy_of(const models::EfRegressor& m) {
    return std::unique_ptr<models::EfRegressor>(
        static_cast<models::EfRegressor*>(m.clone().release()));
  }

  // ---- stages -----------------------------------------------------------------------

  std::unique_ptr<models::EfRegressor> baseline() {
    const fs::path ckpt = out_ / "baseline.safetensors";
    std::unique_ptr<models::EfRegressor> m;
    if (!c_.train_baseline) {
      require<IoError>(fs::exists(ckpt), "--no-train-baseline: ", ckpt.string(),
                       " does not exist; run with --train-baseline first");
      m = io::load_model<models::EfRegressor>(ckpt);
    } else if (dp_.agree(c_.resume && fs::exists(ckpt))) {
      // Every rank loads it (under mpirun, --out must be on a shared file system).
      // Saved (atomically) once trained: a run killed after that point
      // measures it again if its row is missing.
      std::printf("baseline: done in an earlier run (%s)\n", ckpt.c_str());
      m = io::load_model<models::EfRegressor>(ckpt);
      if (results_.done("fp32 baseline", ckpt)) return m;
    } else {
      nn::init::manual_seed(c_.seed);
      models::EfRegressorOptions mo;
      mo.width = c_.width;
      mo.pool = c_.pool == "mean" ? nn::TemporalPoolMode::mean : nn::TemporalPoolMode::mean_max_min;
      m = std::make_unique<models::EfRegressor>(mo);
      m->set_output_bias(0.f);
      std::printf("baseline: EfRegressor (ResNet-18 width %.3g, %s), %lld parameters, %d threads\n",
                  c_.width, c_.pool.c_str(), static_cast<long long>(m->num_parameters()),
                  c_.threads);
      fit(*m, c_.epochs, c_.lr, "baseline", true);
      m->fold_output_affine(std_ef_, mean_ef_);  // predicts EF from here on
      if (dp_.lead()) {
        io::save_checkpoint(*m, ckpt);
        fs::remove(partial_file("baseline"));
      }
    }
    if (!dp_.lead()) return m;
    mean_predictor();
    const auto deploy = quant::fp32_deploy_model(*m);
    report::Row r = sized_row("fp32 baseline", "baseline", "fp32", *m, ckpt);
    finish_row(r, test_metrics(*m),
               latency([&](TensorView<const float> x) { return deploy->forward(x); }));
    return m;
  }

  void mean_predictor() {
    train::MetricAccumulator acc(train::Task::regression);
    const auto& recs = ds_->records(data::EchoSplit::test);
    const auto n = static_cast<std::int64_t>(recs.size());
    data::Batch b;
    b.targets = Tensor<float>(Shape{n, 1});
    for (std::int64_t i = 0; i < n; ++i) b.targets[i] = recs[static_cast<std::size_t>(i)].ef;
    acc.add(Tensor<float>(Shape{n, 1}, mean_ef_), b, 0.0);
    const train::Metrics m = acc.result();
    report::Row r;
    r.name = "mean predictor";
    r.method = "mean_predictor";
    r.precision = "fp32";
    r.metrics = {{"mae", m.mae}, {"rmse", m.rmse}, {"r2", m.r2}};
    results_.put(r);
  }

  std::unique_ptr<models::EfRegressor> unstructured(const models::EfRegressor& base, double ratio) {
    const std::string name = "unstructured " + ratio_name(ratio);
    const fs::path masked_file = out_ / ("unstructured_" + ratio_name(ratio) + ".safetensors");
    const fs::path sparse_file =
        out_ / ("unstructured_" + ratio_name(ratio) + ".sparse.safetensors");
    if (done(name, sparse_file) && dp_.agree(fs::exists(masked_file))) {
      std::printf("%s: done in an earlier run\n", name.c_str());
      if (!dp_.lead()) return nullptr;  // only rank 0 uses it further
      return io::load_model<models::EfRegressor>(masked_file);
    }
    auto m = copy_of(base);
    dp_.broadcast(*m);  // every rank prunes rank 0's model: the same masks
    prune::UnstructuredOptions o{.sparsity = ratio};
    o.layers.exclude = kDenseLayers;
    std::unique_ptr<prune::MaskedTraining> masked;
    prune::MaskSet masks = prune::prune_unstructured(*m, o);
    dp_.broadcast(masks);
    const double before = masks.sparsity();
    fit(*m, c_.finetune_epochs, c_.finetune_lr, name, false,
        [&](train::Trainer& t, train::Optimizer& opt) {
          masked = std::make_unique<prune::MaskedTraining>(*m, opt, masks);
          masked->attach(t);
        });
    masked.reset();
    if (!dp_.lead()) return m;
    const double after = prune::sparsity_over(prune::report(*m, clip_shape()), [&] {
      std::vector<std::string> l;
      for (const auto& lm : masks.layers()) l.push_back(lm.layer);
      return l;
    }());
    Json layers = Json::object();
    for (const auto& lm : masks.layers()) layers[lm.layer] = lm.sparsity();
    results_.extras()["layer_sparsity"][name] = layers;
    io::save_checkpoint(*m, masked_file);  // dense, masked: what QAT/PTQ start from
    fs::remove(partial_file(name));
    const train::Metrics metrics = test_metrics(*m);
    auto deploy = quant::fp32_deploy_model(*m);
    prune::finalize_sparse(*deploy, masks, clip_shape());
    prune::save_sparse_model(*deploy, sparse_file);
    report::Row r = sized_row(name, "unstructured", "fp32", *m, sparse_file);
    r.prune_ratio = ratio;
    r.sparsity_before_finetune = before;
    r.sparsity_after_finetune = after;
    finish_row(r, metrics, latency([&](TensorView<const float> x) { return deploy->forward(x); }));
    return m;
  }

  std::unique_ptr<models::EfRegressor> structured(const models::EfRegressor& base, double ratio) {
    const std::string name = "structured " + ratio_name(ratio);
    const fs::path file = out_ / ("structured_" + ratio_name(ratio) + ".safetensors");
    if (done(name, file)) {
      std::printf("%s: done in an earlier run\n", name.c_str());
      if (!dp_.lead()) return nullptr;  // only rank 0 uses it further
      return io::load_model<models::EfRegressor>(file);
    }
    auto m = copy_of(base);
    dp_.broadcast(*m);  // every rank prunes rank 0's model: the same channels
    prune::prune_channels(*m, {.ratio = ratio, .round_to = c_.round_to});
    fit(*m, c_.finetune_epochs, c_.finetune_lr, name, false);
    if (!dp_.lead()) return m;
    io::save_checkpoint(*m, file);
    fs::remove(partial_file(name));
    const auto deploy = quant::fp32_deploy_model(*m);
    report::Row r = sized_row(name, "structured", "fp32", *m, file);
    r.prune_ratio = ratio;
    finish_row(r, test_metrics(*m),
               latency([&](TensorView<const float> x) { return deploy->forward(x); }));
    return m;
  }

  /// PTQ of m, pruned at prune_ratio if set; with sparse_int8 (an
  /// unstructured-pruned m), its pruned layers go on the sparse int8 kernel
  /// where a timing probe finds it faster (prune::finalize_sparse), and the
  /// file stores those sparse.
  void ptq(models::EfRegressor& m, const std::string& name, const std::string& method,
           std::optional<double> prune_ratio = std::nullopt, bool sparse_int8 = false) {
    if (!dp_.lead()) return;  // no training: rank 0 alone
    const fs::path file = out_ / (method + ".int8.safetensors");
    if (results_.done(name, file)) {
      std::printf("%s: done in an earlier run\n", name.c_str());
      return;
    }
    auto calibration = calibration_loader();
    const bool choose = c_.observer == "auto";
    const std::string observer = choose ? "histogram_mse" : c_.observer;
    quant::Prepared p =
        quant::prepare_ptq(m, {.observer = [&observer] { return quant::make_observer(observer); },
                               .grid = quant::weight_grid_from_string(c_.weight_grid)});
    quant::calibrate(p, *calibration, c_.calibration_batches);
    if (choose) choose_range_rule(p, name);
    quant::Int8Model int8 = quant::convert(p);
    if (sparse_int8) {
      const auto decisions = prune::finalize_sparse(int8, zero_masks(m), clip_shape());
      Json d = Json::array();
      int sparse = 0;
      for (const auto& x : decisions) {
        sparse += x.sparse ? 1 : 0;
        d.push_back({{"layer", x.layer},
                     {"sparsity", x.sparsity},
                     {"sparse", x.sparse},
                     {"dense_ms", x.dense_ms},
                     {"sparse_ms", x.sparse_ms}});
      }
      results_.extras()["int8_sparse_decisions"][name] = d;
      std::printf("%s: %d of %zu pruned layers on the sparse int8 kernel (timed per layer)\n",
                  name.c_str(), sparse, decisions.size());
    }
    quant::save_int8_model(int8, m.channel_plan(), file);
    report::Row r = sized_row(name, method, "int8", m, file);
    r.prune_ratio = prune_ratio;
    finish_row(r, test_metrics(int8),
               latency([&](TensorView<const float> x) { return int8.forward(x); }));
  }

  void qat(models::EfRegressor& base) {
    const std::string name = "QAT int8";
    const fs::path file = out_ / "qat.int8.safetensors";
    if (done(name, file)) {
      std::printf("%s: done in an earlier run\n", name.c_str());
      return;
    }
    quant::Prepared p = quant::prepare_qat(
        base, {.observer = [this] { return quant::make_observer(c_.qat_observer); },
               .grid = quant::weight_grid_from_string(c_.weight_grid)});
    // The baseline's statistics, not one epoch's of small augmented batches.
    if (c_.qat_freeze_bn) quant::freeze_batchnorm_stats(*p.model);
    dp_.synchronize_observers(*p.model);  // ranges over all ranks' clips
    // Not resumable within the stage: the fake-quant modules' state is more
    // than a training checkpoint holds; a killed QAT stage starts again.
    fit(*p.model, c_.qat_epochs, c_.qat_lr, name, false, {}, /*resumable=*/false);
    dp_.synchronize_observers(*p.model, false);  // rank 0 alone runs it from here
    if (!dp_.lead()) return;
    quant::Int8Model int8 = quant::convert_qat(p);
    quant::save_int8_model(int8, base.channel_plan(), file);
    report::Row r = sized_row(name, "qat", "int8", base, file);
    finish_row(r, test_metrics(int8),
               latency([&](TensorView<const float> x) { return int8.forward(x); }));
  }

  void print_table() const {
    std::printf("\n%-24s %-9s %6s %8s %8s %7s %9s %10s %9s %8s\n", "model", "precision", "ratio",
                "MAE", "RMSE", "R2", "sparsity", "GMACs", "file MB", "ms/clip");
    auto fixed4 = [](const std::optional<double>& v) {
      if (!v) return std::string("-");
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.4f", *v);
      return std::string(buf);
    };
    for (const auto& r : results_.results().rows)
      std::printf("%-24s %-9s %6s %8.3f %8.3f %7.3f %9s %10.3f %9.2f %8.1f\n", r.name.c_str(),
                  r.precision.c_str(), r.prune_ratio ? ratio_name(*r.prune_ratio).c_str() : "-",
                  r.metric("mae").value_or(NAN), r.metric("rmse").value_or(NAN),
                  r.metric("r2").value_or(NAN), fixed4(r.sparsity_after_finetune).c_str(),
                  static_cast<double>(r.macs) * 1e-9, static_cast<double>(r.file_bytes) * 1e-6,
                  r.latency_ms_median.value_or(NAN));
    std::printf(
        "latency: batch of one clip, %d thread(s), kernel path %s; median of %d interleaved "
        "rounds over the models reloaded from their files\n",
        c_.threads, std::string(kernels::path_name(kernels::kernel_path())).c_str(),
        c_.latency.rounds);
  }

  Config c_;
  const examples::DataParallel& dp_;
  fs::path out_;
  examples::ResultsFile results_;
  std::unique_ptr<data::EchoNet> ds_;
  float mean_ef_ = 0, std_ef_ = 1;
  nn::MSELoss mse_;
};

}  // namespace

int main(int argc, char** argv) {
  Config c = parse(argc, argv);
  try {
    return examples::DataParallel::run(
        argc, argv, "ef_experiment", [&](examples::DataParallel& dp) {
          set_num_threads(c.threads);
          require(c.batch_size % dp.size() == 0, "--batch-size ", c.batch_size,
                  " is the global batch: it must be a multiple of the number of ranks, ",
                  dp.size());
          require(dp.size() == 1 || c.mode == "pruning" || c.qat_epochs == 0 ||
                      c.qat_observer == "minmax" || c.qat_observer == "moving_average",
                  "--qat-observer ", c.qat_observer, ": a histogram cannot be merged over ",
                  dp.size(), " ranks; use minmax or moving_average (or --qat-epochs 0)");
          if (dp.lead()) examples::require_writable_dir(c.out, "--out");
          dp.barrier();
          c.ranks = dp.size();
          if (dp.size() > 1)
            std::printf("data-parallel: %d ranks x %d threads; rank 0 measures and writes\n",
                        dp.size(), c.threads);
          return Experiment(c, dp).run();
        });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ef_experiment: error: %s\n", e.what());
    return 1;
  }
}
