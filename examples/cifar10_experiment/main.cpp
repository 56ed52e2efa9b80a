// cifar10_experiment: the CIFAR-10 PTQ / QAT experiment end to end. Trains the
// CifarCnn baseline (or reuses the one saved in --out), quantizes it after
// training (PTQ: calibration images and observer as options) and with
// quantization-aware fine-tuning (QAT), measures top-1, file size and batch-1
// latency of each deploy model, and prints and saves the comparison:
// results.json, results.csv and report.html in --out (docs/experiments.md).
//
// Stages write their results when they finish (atomically); --resume skips
// finished stages and continues the baseline's training from its last epoch.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>

#include "common/cli.hpp"
#include "common/data_parallel.hpp"
#include "common/experiment.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/data/cifar10.hpp"
#include "compressor/data/image_dataset.hpp"
#include "compressor/data/image_folder.hpp"
#include "compressor/data/loader.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/io/optimizer_state.hpp"
#include "compressor/kernels/isa.hpp"
#include "compressor/models/cifar_cnn.hpp"
#include "compressor/prune/report.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/int8_io.hpp"
#include "compressor/quant/observers.hpp"
#include "compressor/quant/qat.hpp"
#include "compressor/quant/sensitivity.hpp"
#include "compressor/report/html.hpp"
#include "compressor/train.hpp"

namespace fs = std::filesystem;
using namespace compressor;
using report::Json;

namespace {

struct Config {
  std::string data_root;
  int epochs = 15;
  std::int64_t batch_size = 128;
  float lr = 0.1f;
  float weight_decay = 5e-4f;
  float label_smoothing = 0.1f;
  std::string pad_mode = "reflect";
  int cutout = 0;
  double width = 1.0;  ///< CifarCnn channel multiplier
  int swa_epochs = 0;
  float swa_lr = 0.02f;
  int qat_epochs = 1;
  float qat_lr = 1e-3f;
  int qat_freeze_bn_epoch = 2, qat_freeze_observer_epoch = 3;
  std::int64_t calibration_size = 512;
  std::int64_t calibration_offset = 0;
  std::string observer = "histogram_mse";
  bool cle = false, bias_correction = false;
  std::string weight_grid = "full";
  std::int64_t train_size = 0, test_size = 0;  // 0: all
  std::int64_t sensitivity_size = 1000;
  int threads = 0;
  std::uint64_t seed = 1;
  std::string out = "cifar10_experiment_out";
  bool train_baseline = true;
  bool resume = false;
  examples::LatencyOptions latency;
  int ranks = 1;  ///< data-parallel ranks (mpirun), not an option
};

Config parse(int argc, char** argv) {
  Config c;
  c.threads = num_threads();
  CLI::App app{
      "cifar10_experiment: CifarCnn on CIFAR-10, fp32 baseline, PTQ and QAT int8, measured "
      "side by side (results.json, results.csv, report.html in --out)"};
  app.add_option("--data-root", c.data_root,
                 "CIFAR-10 as cifar-10-batches-bin or an image folder (train/<class>/, "
                 "test/<class>/); default: the JPEG archive in ../shared/data, unpacked into "
                 "~/.cache/compressor on first use");
  app.add_option("--epochs", c.epochs, "baseline training epochs")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("--batch-size", c.batch_size, "images per training batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  app.add_option("--lr", c.lr, "peak learning rate of the one-cycle SGD schedule")
      ->capture_default_str()
      ->check(examples::float_range(1e-6, 10.0));
  app.add_option("--weight-decay", c.weight_decay, "SGD weight decay")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 1.0));
  app.add_option("--label-smoothing", c.label_smoothing,
                 "label smoothing of the training loss (evaluation uses none)")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 0.99));
  app.add_option("--pad-mode", c.pad_mode, "padding of the random crop")
      ->capture_default_str()
      ->check(CLI::IsMember({"reflect", "zero"}));
  app.add_option("--cutout", c.cutout,
                 "side in pixels of a square of each training image set to the mean "
                 "colour, centred anywhere (0: no cutout)")
      ->capture_default_str()
      ->check(CLI::Range(0, 32));
  app.add_option("--width", c.width,
                 "channel multiplier of the CifarCnn's 64-128-256-512 conv channels, each "
                 "rounded to a multiple of 16 (the int8 GEMM's panel)")
      ->capture_default_str()
      ->check(examples::float_range(0.25, 4.0));
  app.add_option("--swa-epochs", c.swa_epochs,
                 "stochastic weight averaging after the one-cycle epochs: this many more "
                 "epochs, each a cosine cycle from --swa-lr to 0, the baseline being the mean "
                 "of the weights at their ends with BatchNorm statistics re-estimated (0: none)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--swa-lr", c.swa_lr, "learning rate at the start of each SWA cycle")
      ->capture_default_str()
      ->check(examples::float_range(1e-6, 10.0));
  app.add_option("--qat-epochs", c.qat_epochs, "QAT fine-tuning epochs (0: no QAT)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--qat-lr", c.qat_lr, "QAT learning rate (cosine to 0)")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 10.0));
  app.add_option("--qat-freeze-bn-epoch", c.qat_freeze_bn_epoch,
                 "QAT epoch from which BatchNorm statistics are frozen")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--qat-freeze-observer-epoch", c.qat_freeze_observer_epoch,
                 "QAT epoch from which activation ranges are frozen (at least 2: the "
                 "first QAT epoch must observe them)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1000));
  app.add_option("--calibration-size", c.calibration_size,
                 "PTQ calibration images: N training images from --calibration-offset "
                 "(0 by default) in class-interleaved order (the first image of each class, "
                 "then the second, ...), no augmentation")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  app.add_option("--calibration-offset", c.calibration_offset,
                 "index of the first PTQ calibration image in the training set's "
                 "class-interleaved order (another "
                 "offset calibrates on other images, to measure PTQ's spread over "
                 "calibration sets)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000000));
  app.add_option("--observer", c.observer, "PTQ activation observer")
      ->capture_default_str()
      ->check(CLI::IsMember(examples::observer_choices()));
  app.add_flag("--cle", c.cle, "PTQ: cross-layer equalization after BN folding")
      ->capture_default_str();
  app.add_flag("--bias-correction", c.bias_correction,
               "PTQ: empirical bias correction on the calibration images")
      ->capture_default_str();
  app.add_option("--weight-grid", c.weight_grid,
                 "int8 weight grid of PTQ and QAT: full [-127, 127] or narrow [-64, 64] "
                 "(fastest on AVX2 / AVX-512 without VNNI)")
      ->capture_default_str()
      ->check(CLI::IsMember({"full", "narrow"}));
  app.add_option("--train-size", c.train_size, "use the first N training images (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000000));
  app.add_option("--test-size", c.test_size, "use the first N test images (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000000));
  app.add_option("--sensitivity-size", c.sensitivity_size,
                 "test images of the per-layer sensitivity report (0: no report)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100000000));
  app.add_option("--threads", c.threads, "threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--seed", c.seed, "seed of initialisation and shuffling")->capture_default_str();
  app.add_option("--out", c.out, "output folder")->capture_default_str();
  app.add_flag("--train-baseline,!--no-train-baseline", c.train_baseline,
               "train the baseline, or reuse --out/baseline.safetensors")
      ->capture_default_str();
  app.add_flag("--resume", c.resume,
               "continue an interrupted run in --out: finished stages are kept")
      ->capture_default_str();
  c.latency.add_to(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  return c;
}

Json config_json(const Config& c) {
  return {{"data_root", c.data_root},
          {"epochs", c.epochs},
          {"batch_size", c.batch_size},
          {"lr", c.lr},
          {"weight_decay", c.weight_decay},
          {"label_smoothing", c.label_smoothing},
          {"pad_mode", c.pad_mode},
          {"cutout", c.cutout},
          {"width", c.width},
          {"swa_epochs", c.swa_epochs},
          {"swa_lr", c.swa_lr},
          {"qat_epochs", c.qat_epochs},
          {"qat_lr", c.qat_lr},
          {"qat_freeze_bn_epoch", c.qat_freeze_bn_epoch},
          {"qat_freeze_observer_epoch", c.qat_freeze_observer_epoch},
          {"calibration_size", c.calibration_size},
          {"calibration_offset", c.calibration_offset},
          {"observer", c.observer},
          {"cle", c.cle},
          {"bias_correction", c.bias_correction},
          {"weight_grid", c.weight_grid},
          {"train_size", c.train_size},
          {"test_size", c.test_size},
          {"sensitivity_size", c.sensitivity_size},
          {"threads", c.threads},
          {"seed", c.seed},
          {"out", c.out},
          {"train_baseline", c.train_baseline},
          {"resume", c.resume},
          {"latency_rounds", c.latency.rounds},
          {"latency_seconds", c.latency.seconds},
          {"ranks", c.ranks}};
}

}  // namespace

namespace {

/// Images [offset, offset + n) of a set, cut at its end (n == 0: to the end).
data::ImageSet image_range(data::ImageSet s, std::int64_t n, std::int64_t offset = 0) {
  if (offset == 0 && (n <= 0 || n >= s.size())) return s;
  n = n <= 0 ? s.size() - offset : std::min(n, s.size() - offset);
  data::ImageSet out;
  out.classes = s.classes;
  out.images = Tensor<std::uint8_t>(s.images.shape().with_dim0(n));
  out.images.view().copy_from(s.images.narrow(offset, n));
  out.labels = Tensor<std::int32_t>(Shape{n});
  out.labels.view().copy_from(s.labels.narrow(offset, n));
  return out;
}

struct Cifar {
  std::shared_ptr<const data::ImageSet> train, test;
  std::string source;
};

/// --data-root, or the default archive unpacked into the cache (once: later
/// calls find it there).
fs::path data_root(const Config& c) {
  if (!c.data_root.empty()) return c.data_root;
  return examples::unpack_cifar10_jpeg(examples::shared_data_dir() / "cifar10-jpeg.tar.gz",
                                       examples::cache_dir());
}

Cifar load_data(const Config& c) {
  const fs::path root = data_root(c);
  require<IoError>(fs::is_directory(root), "--data-root ", root.string(),
                   ": not a folder (expected cifar-10-batches-bin or an image folder)");
  Cifar d;
  const bool binary = fs::exists(root / "test_batch.bin") ||
                      fs::exists(root / "cifar-10-batches-bin" / "test_batch.bin");
  if (binary) {
    d.train = std::make_shared<data::ImageSet>(
        image_range(data::load_cifar10(root, data::CifarSplit::train), c.train_size));
    d.test = std::make_shared<data::ImageSet>(
        image_range(data::load_cifar10(root, data::CifarSplit::test), c.test_size));
  } else {
    require<IoError>(fs::is_directory(root / "train") && fs::is_directory(root / "test"),
                     "--data-root ", root.string(),
                     ": neither CIFAR-10 binary files (test_batch.bin) nor an image folder "
                     "with train/ and test/");
    // Per class, so that a subset stays balanced: N / classes of each.
    data::ImageFolderOptions fo;
    fo.max_per_class = c.train_size > 0 ? std::max<std::int64_t>(1, c.train_size / 10) : 0;
    d.train = std::make_shared<data::ImageSet>(data::load_image_folder(root / "train", fo));
    fo.max_per_class = c.test_size > 0 ? std::max<std::int64_t>(1, c.test_size / 10) : 0;
    d.test = std::make_shared<data::ImageSet>(data::load_image_folder(root / "test", fo));
  }
  require<IoError>(d.train->size() > 0 && d.test->size() > 0, "--data-root ", root.string(),
                   ": no training or no test images");
  d.source = root.string();
  return d;
}

/// The CifarCnn of --width: each conv's channels times width, rounded to a
/// multiple of 16 (at least 16).
nn::ChannelPlan cifar_plan(double width) {
  nn::ChannelPlan p = models::CifarCnn::default_plan();
  for (auto& [name, c] : p.channels)
    if (name != "fc") c = std::max<std::int64_t>(16, std::llround(double(c) * width / 16.0) * 16);
  return p;
}

/// "64-128-256-512": the conv channels of a plan.
std::string conv_channels(const nn::ChannelPlan& p) {
  std::string s;
  for (const auto& [name, c] : p.channels)
    if (name != "fc") s += (s.empty() ? "" : "-") + std::to_string(c);
  return s;
}

/// Throws unless the network loaded from `path` has the conv channels of --width.
void check_width(models::CifarCnn& net, double width, const fs::path& path) {
  const std::string want = conv_channels(cifar_plan(width)),
                    got = conv_channels(net.channel_plan());
  require(got == want, path.string(), ": a CifarCnn with conv channels ", got, ", but --width ",
          width, " asks for ", want, "; pass the --width it was trained with");
}

/// Loading the weights of a training checkpoint skips its optimizer state.
io::LoadOptions skip_optimizer_state() {
  io::LoadOptions lo;
  lo.ignore = {std::string(io::kOptimizerPrefix) + "*"};
  return lo;
}

/// A CifarCnn checkpoint: built from its channel plan, or, for a file without
/// one (written by PyTorch, say), the default CifarCnn with strict loading.
/// Either must have the channels of --width.
std::unique_ptr<models::CifarCnn> load_cifar_cnn(const fs::path& path, double width) {
  std::unique_ptr<models::CifarCnn> net;
  if (io::SafetensorsFile::open(path).metadata_value(nn::ChannelPlan::kMetadataKey) != nullptr) {
    net = io::load_model<models::CifarCnn>(path, skip_optimizer_state());
  } else {
    net = std::make_unique<models::CifarCnn>(cifar_plan(width));
    io::load_checkpoint(*net, path, skip_optimizer_state());
  }
  check_width(*net, width, path);
  return net;
}

/// Counts the nonzero weights and biases of the model's weighted layers.
std::int64_t nonzero_parameters(nn::Module& m) {
  std::int64_t n = 0;
  for (const auto& p : m.named_parameters())
    for (float v : p.value->flat()) n += v != 0.f;
  return n;
}

report::Row row_for(const std::string& name, const std::string& method,
                    const std::string& precision, nn::Module& float_model, const fs::path& file,
                    const examples::Latency& lat, double top1, int threads) {
  report::Row r;
  r.name = name;
  r.method = method;
  r.precision = precision;
  r.params_total = float_model.num_parameters();
  r.params_nonzero = nonzero_parameters(float_model);
  r.macs = prune::report(float_model, Shape{1, 32, 32, 3}).macs;
  r.file_bytes = examples::file_bytes(file);
  r.file = file.filename().string();
  r.latency_ms_median = lat.median_ms;
  r.latency_ms_p90 = lat.p90_ms;
  r.threads = threads;
  r.kernel_path = std::string(kernels::path_name(kernels::kernel_path()));
  r.metrics = {{"top1", 100.0 * top1}};
  return r;
}

}  // namespace

namespace {

const data::Normalization kNorm = data::Normalization::cifar10();
constexpr const char* kBaseline = "fp32 baseline";
constexpr const char* kPtq = "PTQ int8";
constexpr const char* kQat = "QAT int8";

class Experiment {
 public:
  Experiment(Config c, Cifar d, const examples::DataParallel& dp)
      : c_(std::move(c)),
        d_(std::move(d)),
        dp_(dp),
        out_(c_.out),
        results_(out_, c_.resume, config_json(c_),
                 {.title = "CIFAR-10: CifarCnn fp32, PTQ int8 and QAT int8",
                  .metric = "top1",
                  .metric_label = "test top-1 (%)",
                  .lower_is_better = false}) {
    results_.config()["data_root"] = d_.source;
  }

  int run() {
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_ptr<models::CifarCnn> net = baseline();
    ptq(*net);
    if (c_.qat_epochs > 0) qat(*net);
    if (!dp_.lead()) return 0;  // the other ranks only train
    const Tensor<float> image(Shape{1, 32, 32, 3}, 0.1f);
    results_.remeasure_latencies<models::CifarCnn>(image, c_.latency);
    print_table();
    std::printf("total %.1f min; wrote %s, %s and %s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 60,
                (out_ / "results.json").c_str(), (out_ / "results.csv").c_str(),
                (out_ / "report.html").c_str());
    return 0;
  }

 private:
  /// With `sharded`, this rank's share of every batch (data-parallel training).
  std::unique_ptr<data::DataLoader> loader(std::shared_ptr<const data::ImageSet> set,
                                           data::Augmentation aug, bool shuffle,
                                           bool sharded = false) const {
    data::LoaderOptions lo;
    lo.batch_size = c_.batch_size;
    lo.shuffle = shuffle;
    lo.seed = c_.seed;
    return std::make_unique<data::DataLoader>(
        std::make_shared<data::ImageDataset>(std::move(set), kNorm, aug),
        sharded ? dp_.shard(lo) : lo);
  }
  data::Augmentation train_augmentation() const {
    return data::Augmentation::cifar10_train(
        c_.pad_mode == "reflect" ? data::PadMode::reflect : data::PadMode::zero, c_.cutout);
  }
  double top1(train::FloatModel auto& m) {
    auto test = loader(d_.test, data::Augmentation::none(), false);
    return train::evaluate(m, plain_, train::Task::classification, *test).accuracy;
  }
  /// Adds an int8 row's fidelity to the fp32 baseline on the test images:
  /// "fp32_agreement" (% of images whose top-1 class is the baseline's) and
  /// "kl_to_fp32" (mean KL divergence of the class probabilities, nats). The
  /// baseline's outputs are computed once.
  train::Fidelity add_fidelity(report::Row& row, models::CifarCnn& net, quant::Int8Model& int8) {
    auto test = loader(d_.test, data::Augmentation::none(), false);
    if (!test_reference_) test_reference_.emplace(net, *test);
    const train::Fidelity f = test_reference_->measure(int8, *test);
    row.metrics.emplace_back("fp32_agreement", 100 * f.agreement);
    row.metrics.emplace_back("kl_to_fp32", f.mean_kl);
    return f;
  }
  template <class F>
  examples::Latency latency(F&& forward) {
    const Tensor<float> x(Shape{1, 32, 32, 3}, 0.1f);
    return examples::measure_latency([&] { (void)forward(x.view()); });
  }
  void save() { results_.save(); }
  /// With --resume: the stage's row and model file are there (rank 0's
  /// answer on every rank, so that all skip the stage's training or none;
  /// under mpirun, --out must then be on a shared file system).
  bool done(const char* stage, const fs::path& file) const {
    return dp_.agree(results_.done(stage, file));
  }

  /// Trains (or loads) the baseline and records its row.
  std::unique_ptr<models::CifarCnn> baseline() {
    const fs::path ckpt = out_ / "baseline.safetensors";
    const fs::path partial = out_ / "baseline.partial.safetensors";
    std::unique_ptr<models::CifarCnn> net;
    if (!c_.train_baseline) {
      require<IoError>(fs::exists(ckpt), "--no-train-baseline: ", ckpt.string(),
                       " does not exist; run with --train-baseline first");
      net = load_cifar_cnn(ckpt, c_.width);
      std::printf("baseline: loaded %s\n", ckpt.c_str());
    } else if (done(kBaseline, ckpt)) {
      net = load_cifar_cnn(ckpt, c_.width);
      std::printf("baseline: done in an earlier run (%s)\n", ckpt.c_str());
      return net;
    } else {
      net = train_baseline(partial);
      if (dp_.lead()) {
        io::save_checkpoint(*net, ckpt);
        fs::remove(partial);
      }
    }
    if (!dp_.lead()) return net;
    const auto deploy = quant::fp32_deploy_model(*net);
    const double acc = top1(*net);
    const examples::Latency lat =
        latency([&](TensorView<const float> x) { return deploy->forward(x); });
    results_.put(row_for(kBaseline, "baseline", "fp32", *net, ckpt, lat, acc, c_.threads));
    if (c_.train_baseline && c_.swa_epochs > 0) {
      Json swa = {{"epochs", c_.swa_epochs}, {"lr", c_.swa_lr}, {"top1_average", 100 * acc}};
      if (last_epoch_top1_) {
        swa["top1_last_snapshot"] = 100 * *last_epoch_top1_;
        std::printf("baseline: SWA took test top-1 from %.2f%% (last snapshot) to %.2f%%\n",
                    100 * *last_epoch_top1_, 100 * acc);
      }
      results_.extras()["swa"] = swa;
    }
    save();
    std::printf("baseline: test top-1 %.2f%%, %.3f ms per image at batch 1\n", 100 * acc,
                lat.median_ms);
    return net;
  }

  std::unique_ptr<models::CifarCnn> train_baseline(const fs::path& partial) {
    nn::init::manual_seed(c_.seed);
    auto net = std::make_unique<models::CifarCnn>(cifar_plan(c_.width));
    dp_.broadcast(*net);  // identical replicas
    auto train = loader(d_.train, train_augmentation(), true, /*sharded=*/true);
    nn::SoftmaxCrossEntropy smoothed(c_.label_smoothing);
    train::Sgd sgd(*net, {.lr = c_.lr,
                          .momentum = 0.9f,
                          .nesterov = true,
                          .weight_decay = c_.weight_decay,
                          .decay_policy = train::DecayPolicy::weights_only});
    const int total = c_.epochs + c_.swa_epochs;
    const examples::EpochCheckpoint checkpoint(partial, "baseline", total);
    train::WeightAverage swa(*net);  // the SWA epochs' snapshots
    int first = 1;
    if (dp_.agree(c_.resume && fs::exists(partial))) {
      bool exact = false;  // every rank restores from the same file
      first = checkpoint.restore(*net, sgd, &exact, &swa);
      const int snapshots = std::max(0, first - 1 - c_.epochs);
      require<IoError>(swa.count() == snapshots, partial.string(), ": epoch ", first - 1,
                       " needs the weight average of ", snapshots, " SWA snapshots, the file has ",
                       swa.count());
      std::printf("resume: baseline training from epoch %d (%s; %s)\n", first, partial.c_str(),
                  exact ? "SGD state restored" : "no optimizer state in it: SGD momentum restarts");
    }
    const std::int64_t per_epoch = train->num_batches();
    // One cycle over the first --epochs, then one cosine cycle per SWA epoch.
    train::OneCycleLr one_cycle(c_.lr, std::max<std::int64_t>(2, c_.epochs * per_epoch));
    train::CosineRestartsLr cycles(c_.swa_lr, per_epoch);
    train::SequentialLr sched(one_cycle, cycles, c_.epochs * per_epoch);
    examples::OffsetSchedule resumed(sched, (first - 1) * per_epoch);
    train::Trainer trainer(*net, smoothed, sgd, train::Task::classification, &resumed);
    trainer.set_eval_loss(&plain_);
    const auto averaging = dp_.average_gradients(trainer, *net);
    train::FitOptions fo;
    fo.epochs = total;
    fo.log = dp_.lead() ? &std::cout : nullptr;
    fo.progress_interval = 10;
    fo.ranks = dp_.size();
    dp_.distribute_metrics(*net, fo);
    std::printf(
        "baseline: CifarCnn %s, %lld parameters, %lld training images, %d epochs%s, %d threads\n",
        conv_channels(net->channel_plan()).c_str(), static_cast<long long>(net->num_parameters()),
        static_cast<long long>(d_.train->size()), c_.epochs,
        c_.swa_epochs > 0 ? (" + " + std::to_string(c_.swa_epochs) + " of SWA").c_str() : "",
        c_.threads);
    for (int e = first; e <= total; ++e) {
      const bool swa_epoch = e > c_.epochs;
      if (swa_epoch) (void)sgd.set_momentum(0.9f);  // one-cycle ends at 0.95
      net->train();
      const train::EpochReport r = trainer.train_epoch(*train, e, fo);
      if (swa_epoch) swa.update(*net);
      // Every rank tests its share of the test set (rank 0's model, rank 0's statistics).
      auto test = loader(d_.test, data::Augmentation::none(), false, /*sharded=*/true);
      const train::Metrics t = dp_.evaluate(*net, plain_, train::Task::classification, *test);
      if (!dp_.lead()) continue;  // rank 0 prints and saves
      std::printf("epoch %d/%d%s: train %s | test %s | %.0f images/s\n", e, total,
                  swa_epoch ? " (SWA)" : "", train::format_metrics(r.train).c_str(),
                  train::format_metrics(t).c_str(), r.samples_per_second);
      std::fflush(stdout);
      last_epoch_top1_ = t.accuracy;
      checkpoint.save(*net, sgd, e, swa.count() > 0 ? &swa : nullptr);
    }
    if (c_.swa_epochs > 0) {
      swa.copy_to(*net);
      // Every rank re-estimates on all training images in the same order
      // (the same statistics), then takes rank 0's to be sure.
      auto all = loader(d_.train, train_augmentation(), true);
      const std::int64_t batches = train::recalibrate_batchnorm(*net, *all);
      dp_.broadcast(*net);
      std::printf(
          "SWA: baseline = mean of the weights after epochs %d-%d, BatchNorm statistics "
          "re-estimated on %lld training batches\n",
          c_.epochs + 1, total, static_cast<long long>(batches));
    }
    return net;
  }

  void ptq(models::CifarCnn& net) {
    if (!dp_.lead()) return;  // no training: rank 0 alone
    const fs::path file = out_ / "ptq.int8.safetensors";
    if (results_.done(kPtq, file)) {
      std::printf("PTQ: done in an earlier run (%s)\n", file.c_str());
      return;
    }
    // Images [offset, offset + N) of the training set with the classes in
    // turn: an image folder's file order is class by class.
    const std::vector<std::int64_t> order = data::class_interleaved_order(*d_.train);
    const std::int64_t first = c_.calibration_offset,
                       end = std::min<std::int64_t>(first + c_.calibration_size, std::ssize(order));
    auto images = std::make_shared<data::ImageSet>(data::select(
        *d_.train, std::vector<std::int64_t>(order.begin() + first, order.begin() + end)));
    auto calibration = loader(std::move(images), data::Augmentation::none(), false);
    quant::Prepared p =
        quant::prepare_ptq(net, {.observer = [this] { return quant::make_observer(c_.observer); },
                                 .grid = quant::weight_grid_from_string(c_.weight_grid),
                                 .cross_layer_equalization = c_.cle,
                                 .bias_correction = c_.bias_correction});
    const std::int64_t batches = quant::calibrate(p, *calibration);
    quant::Int8Model int8 = quant::convert(p);
    std::printf(
        "PTQ: calibrated on %lld batches of training images [%lld, %lld) in "
        "class-interleaved order (%s observer)\n%s",
        static_cast<long long>(batches), static_cast<long long>(first), static_cast<long long>(end),
        c_.observer.c_str(), int8.summary().str().c_str());
    quant::save_int8_model(int8, net.channel_plan(), file);
    const double acc = top1(int8);
    const examples::Latency lat =
        latency([&](TensorView<const float> x) { return int8.forward(x); });
    report::Row row = row_for(kPtq, "ptq", "int8", net, file, lat, acc, c_.threads);
    const train::Fidelity f = add_fidelity(row, net, int8);
    results_.put(std::move(row));
    if (c_.sensitivity_size > 0) {
      auto subset =
          loader(std::make_shared<data::ImageSet>(image_range(*d_.test, c_.sensitivity_size)),
                 data::Augmentation::none(), false);
      Json rows = Json::array();
      for (const auto& r :
           quant::sensitivity_report(net, p, *subset, train::Task::classification, plain_))
        rows.push_back({{"point", r.point}, {"sqnr_db", r.sqnr_db}, {"metric", 100 * r.metric}});
      results_.extras()["sensitivity"] = rows;
    }
    save();
    std::printf(
        "PTQ: test top-1 %.2f%% (the fp32 model's class on %.2f%% of test images, KL %.3g), "
        "%.3f ms per image at batch 1\n",
        100 * acc, 100 * f.agreement, f.mean_kl, lat.median_ms);
  }

  void qat(models::CifarCnn& net) {
    const fs::path file = out_ / "qat.int8.safetensors";
    if (done(kQat, file)) {
      std::printf("QAT: done in an earlier run (%s)\n", file.c_str());
      return;
    }
    quant::Prepared p =
        quant::prepare_qat(net, {.observer = [] { return quant::make_observer("moving_average"); },
                                 .grid = quant::weight_grid_from_string(c_.weight_grid)});
    dp_.broadcast(*p.model);
    dp_.synchronize_observers(*p.model);  // ranges over all ranks' images
    auto train = loader(d_.train, train_augmentation(), true, /*sharded=*/true);
    nn::SoftmaxCrossEntropy smoothed(c_.label_smoothing);
    train::Sgd sgd(*p.model, {.lr = c_.qat_lr,
                              .momentum = 0.9f,
                              .weight_decay = c_.weight_decay,
                              .decay_policy = train::DecayPolicy::weights_only});
    train::CosineLr sched(c_.qat_lr,
                          std::max<std::int64_t>(1, c_.qat_epochs * train->num_batches()));
    train::Trainer trainer(*p.model, smoothed, sgd, train::Task::classification, &sched);
    const auto averaging = dp_.average_gradients(trainer, *p.model);
    train::FitOptions fo;
    fo.epochs = c_.qat_epochs;
    fo.log = dp_.lead() ? &std::cout : nullptr;
    fo.progress_interval = 10;
    fo.ranks = dp_.size();
    dp_.distribute_metrics(*p.model, fo);
    for (int e = 1; e <= c_.qat_epochs; ++e) {
      if (e == c_.qat_freeze_bn_epoch) quant::freeze_batchnorm_stats(*p.model);
      if (e == c_.qat_freeze_observer_epoch) quant::freeze_observers(*p.model);
      p.model->train();
      const train::EpochReport r = trainer.train_epoch(*train, e, fo);
      std::printf("QAT epoch %d/%d: train %s\n", e, c_.qat_epochs,
                  train::format_metrics(r.train).c_str());
    }
    dp_.synchronize_observers(*p.model, false);  // rank 0 alone runs it from here
    if (!dp_.lead()) return;
    quant::Int8Model int8 = quant::convert_qat(p);
    quant::save_int8_model(int8, net.channel_plan(), file);
    const double acc = top1(int8);
    const examples::Latency lat =
        latency([&](TensorView<const float> x) { return int8.forward(x); });
    report::Row row = row_for(kQat, "qat", "int8", net, file, lat, acc, c_.threads);
    add_fidelity(row, net, int8);
    results_.put(std::move(row));
    save();
    std::printf("QAT: test top-1 %.2f%%, %.3f ms per image at batch 1\n", 100 * acc, lat.median_ms);
  }

  void print_table() const {
    std::printf("\n%-16s %-9s %8s %10s %9s %12s %12s\n", "model", "precision", "top-1 %", "file MB",
                "vs fp32", "ms (median)", "ms (p90)");
    const report::Row* base = results_.results().find(kBaseline);
    for (const auto& r : results_.results().rows)
      std::printf(
          "%-16s %-9s %8.2f %10.3f %8.1f%% %12.3f %12.3f\n", r.name.c_str(), r.precision.c_str(),
          r.metric("top1").value_or(NAN), r.file_bytes * 1e-6,
          base ? 100.0 * static_cast<double>(r.file_bytes) / static_cast<double>(base->file_bytes)
               : NAN,
          r.latency_ms_median.value_or(NAN), r.latency_ms_p90.value_or(NAN));
    std::printf(
        "batch-1 latency on %d thread(s), kernel path %s; median of %d interleaved rounds "
        "over the models reloaded from their files\n",
        c_.threads, std::string(kernels::path_name(kernels::kernel_path())).c_str(),
        c_.latency.rounds);
  }

  Config c_;
  Cifar d_;
  const examples::DataParallel& dp_;
  fs::path out_;
  examples::ResultsFile results_;
  nn::SoftmaxCrossEntropy plain_;
  std::optional<train::OutputFidelity> test_reference_;  ///< the baseline on the test images
  /// Test top-1 after the last epoch this process trained (with SWA: of
  /// the last snapshot, before averaging).
  std::optional<double> last_epoch_top1_;
};

}  // namespace

int main(int argc, char** argv) {
  Config c = parse(argc, argv);
  try {
    return examples::DataParallel::run(
        argc, argv, "cifar10_experiment", [&](examples::DataParallel& dp) {
          set_num_threads(c.threads);
          require(c.batch_size % dp.size() == 0, "--batch-size ", c.batch_size,
                  " is the global batch: it must be a multiple of the number of ranks, ",
                  dp.size());
          if (dp.lead()) {
            examples::require_writable_dir(c.out, "--out");
            (void)data_root(c);  // rank 0 alone unpacks the default archive, if needed
          }
          dp.barrier();
          Cifar d = load_data(c);
          require(c.calibration_offset < d.train->size(), "--calibration-offset ",
                  c.calibration_offset, ": the training set has ", d.train->size(),
                  " images (the offset must index one of them)");
          c.ranks = dp.size();
          std::printf("data: %s: %lld training, %lld test images; kernel path %s, %d threads\n",
                      d.source.c_str(), static_cast<long long>(d.train->size()),
                      static_cast<long long>(d.test->size()),
                      std::string(kernels::path_name(kernels::kernel_path())).c_str(), c.threads);
          if (dp.size() > 1)
            std::printf("data-parallel: %d ranks x %d threads; rank 0 measures and writes\n",
                        dp.size(), c.threads);
          return Experiment(c, std::move(d), dp).run();
        });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cifar10_experiment: error: %s\n", e.what());
    return 1;
  }
}
