// ef_train: trains the EfRegressor (a ResNet-18 trunk per frame, features
// pooled over time, a linear head) to predict the ejection fraction of echo
// clips in the EchoNet-Dynamic layout, and reports test MAE, RMSE and R^2
// beside the error of always predicting the training mean. By default the
// pooling hands the head the mean, max and min over time of every feature
// (--pool mean is the reference design; docs/ef_model.md compares them).
//
// Without --data it uses a synthetic EchoNet-layout set, generated on first
// use (docs/synthetic_echo.md). The defaults are a quick configuration that
// finishes in about five minutes on two cores.
//
// Data-parallel (built with MPI, started by mpirun -np N; docs/distributed.md):
// every rank trains a replica on its share of each global batch of --batch
// clips (a multiple of N), gradients are averaged over ranks after every
// backward, BatchNorm keeps per-rank statistics. Every rank validates its
// share of the validation split (with rank 0's BatchNorm statistics), the
// epoch lines give the metrics over all ranks and the progress lines the
// global throughput with rank 0's loss. Rank 0 generates the synthetic set,
// tests, prints and writes --out.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <type_traits>

#include "common/cli.hpp"
#include "common/echo.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/data/echonet.hpp"
#include "compressor/data/synthetic_echo.hpp"
#include "compressor/data/transform.hpp"
#include "compressor/distributed/launch.hpp"
#include "compressor/io/atomic_file.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/models/ef_regressor.hpp"
#include "compressor/train.hpp"
#if COMPRESSOR_EF_TRAIN_MPI
#include "compressor/distributed/gradient_averager.hpp"
#include "compressor/distributed/metrics.hpp"
#include "compressor/distributed/mpi.hpp"
#include "compressor/distributed/replicate.hpp"
#include "compressor/distributed/sync_batchnorm.hpp"
#endif

namespace fs = std::filesystem;
using namespace compressor;

namespace {

/// Training in one process (no MPI): the single rank.
struct SingleProcess {
  int rank() const { return 0; }
  int size() const { return 1; }
};

struct Config {
  fs::path data, out = "ef_train_out";
  bool synthetic = false;
  std::int64_t generate = 1600, frames = 16, size = 64, batch = 8, max_clips = 0;
  int epochs = 12, threads = 1;
  double width = 0.25, cache_mb = 1024;
  float lr = 2e-3f;
  std::string loss = "mse";
  float weight_decay = 0.05f;
  bool augment = true, sync_bn = false;
  nn::TemporalPoolMode pool = nn::TemporalPoolMode::mean_max_min;
  std::uint64_t seed = 1;
};

Config parse(int argc, char** argv) {
  Config c;
  c.threads = num_threads();
  std::string data, pool = "mean_max_min", augment = "on", out = c.out.string();
  CLI::App app{
      "ef_train: trains the EF regressor on EchoNet-layout clips and reports test MAE, RMSE and "
      "R^2 beside always predicting the training mean"};
  app.add_option("--data", data,
                 "EchoNet-layout root (FileList.csv, Videos/); default: a synthetic set in "
                 "./synthetic_echo, generated on first use");
  app.add_option("--generate", c.generate, "clips of the synthetic set")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{8}, std::int64_t{1000000}));
  app.add_option("--frames", c.frames, "frames sampled per clip")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1024}));
  app.add_option("--size", c.size, "frame height and width after resizing")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{32}, std::int64_t{1024}));
  app.add_option("--width", c.width, "ResNet-18 width multiplier")
      ->capture_default_str()
      ->check(examples::float_range(0.05, 4.0));
  app.add_option("--pool", pool, "pooling of frame features over time")
      ->capture_default_str()
      ->check(CLI::IsMember({"mean", "mean_max_min"}));
  app.add_option("--batch", c.batch, "clips per batch")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{4096}));
  app.add_option("--epochs", c.epochs, "training epochs")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--lr", c.lr, "peak learning rate of AdamW")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 10.0));
  app.add_option("--loss", c.loss, "training loss")
      ->capture_default_str()
      ->check(CLI::IsMember({"mse", "l1"}));
  app.add_option("--weight-decay", c.weight_decay, "AdamW weight decay of conv/linear weights")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 10.0));
  app.add_option("--augment", augment, "TRAIN clips: random sampling phase, shift and mirror")
      ->capture_default_str()
      ->check(CLI::IsMember({"on", "off"}));
  app.add_option("--max-clips", c.max_clips, "use at most N clips per split (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{100000000}));
  app.add_option("--cache-mb", c.cache_mb, "decoded-clip cache in MB")
      ->capture_default_str()
      ->check(examples::float_range(0.0, 1e7));
  app.add_option("--threads", c.threads, "threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--seed", c.seed, "seed of initialisation, shuffling and the synthetic set")
      ->capture_default_str();
  app.add_option("--out", out, "where to write model.safetensors and results.json")
      ->capture_default_str();
  app.add_flag("--sync-bn", c.sync_bn,
               "data-parallel under mpirun: BatchNorm statistics over all ranks' clips "
               "(default: each rank's own)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  c.synthetic = data.empty();
  c.data = c.synthetic ? fs::path("synthetic_echo") : fs::path(data);
  c.pool = pool == "mean" ? nn::TemporalPoolMode::mean : nn::TemporalPoolMode::mean_max_min;
  c.augment = augment == "on";
  c.out = out;
  return c;
}

/// Error of always predicting `constant` on a split.
train::Metrics constant_predictor(const std::vector<data::EchoRecord>& recs, float constant) {
  train::MetricAccumulator acc(train::Task::regression);
  data::Batch b;
  const auto n = static_cast<std::int64_t>(recs.size());
  b.targets = Tensor<float>(Shape{n, 1});
  Tensor<float> pred(Shape{n, 1}, constant);
  for (std::int64_t i = 0; i < n; ++i) b.targets[i] = recs[static_cast<std::size_t>(i)].ef;
  acc.add(pred, b, 0.0);
  return acc.result();
}

nlohmann::ordered_json metrics_json(const train::Metrics& m) {
  return {{"samples", m.samples}, {"mae", m.mae}, {"rmse", m.rmse}, {"r2", m.r2}};
}

/// World: SingleProcess, or with MPI a distributed::Communicator.
template <class World>
int run(const Config& c, const World& world) {
  [[maybe_unused]] constexpr bool kMpi = !std::is_same_v<World, SingleProcess>;
  set_num_threads(c.threads);
  const auto t_start = std::chrono::steady_clock::now();
  const bool lead = world.rank() == 0;
  const int ranks = world.size();
  require(c.batch % ranks == 0, "--batch ", c.batch, " is the global batch: it must be a ",
          "multiple of the number of ranks, ", ranks);
  if (c.synthetic && lead) examples::ensure_synthetic_echo_set(c.data, c.generate, c.seed);
#if COMPRESSOR_EF_TRAIN_MPI
  if constexpr (kMpi) world.barrier();  // the other ranks read the set rank 0 generated
#endif
  data::EchoNetOptions eo;
  eo.clip = data::ClipSpec{c.frames, c.size, c.size};
  eo.max_clips = c.max_clips;
  eo.cache_mb = c.cache_mb;
  eo.normalization = examples::echo_normalization();
  if (c.augment) {
    eo.train_temporal_jitter = true;
    eo.train_augmentation = data::Augmentation{static_cast<int>(c.size / 14), true};  // 8 px at 112
  }
  const data::EchoNet ds(c.data, eo);
  const auto& train_recs = ds.records(data::EchoSplit::train);
  const auto& test_recs = ds.records(data::EchoSplit::test);
  require(!train_recs.empty() && !ds.records(data::EchoSplit::val).empty() && !test_recs.empty(),
          c.data.string(), ": need TRAIN, VAL and TEST clips, got ", train_recs.size(), ", ",
          ds.records(data::EchoSplit::val).size(), ", ", test_recs.size());
  double mean_ef = 0, var_ef = 0;
  for (const auto& r : train_recs) mean_ef += r.ef;
  mean_ef /= static_cast<double>(train_recs.size());
  for (const auto& r : train_recs) var_ef += (r.ef - mean_ef) * (r.ef - mean_ef);
  const double std_ef = std::max(1e-3, std::sqrt(var_ef / static_cast<double>(train_recs.size())));
  if (lead)
    std::printf(
        "data: %s: %zu train, %zu val, %zu test clips; %lld frames of %lldx%lld; train EF mean "
        "%.2f, std %.2f\n",
        c.data.c_str(), train_recs.size(), ds.records(data::EchoSplit::val).size(),
        test_recs.size(), static_cast<long long>(c.frames), static_cast<long long>(c.size),
        static_cast<long long>(c.size), mean_ef, std_ef);

  data::LoaderOptions lo;
  lo.batch_size = c.batch / ranks;  // this rank's share of each global batch
  lo.seed = c.seed;
  lo.rank = world.rank();
  lo.world_size = ranks;
  // Synchronised BatchNorm needs a sample on every rank in every step: a
  // short last batch that would leave a rank none is dropped.
  const auto short_batch = static_cast<std::int64_t>(train_recs.size()) % c.batch;
  lo.drop_last = c.sync_bn && short_batch > 0 && short_batch < ranks;
  if (lo.drop_last && lead)
    std::printf(
        "--sync-bn: the last training batch (%lld clips) would leave a rank without a "
        "clip; it is dropped every epoch\n",
        static_cast<long long>(short_batch));
  auto train_loader = ds.loader(data::EchoSplit::train, lo);
  lo.drop_last = false;
  lo.shuffle = false;
  auto val_loader = ds.loader(data::EchoSplit::val, lo);  // this rank's share
  lo.batch_size = c.batch;                                // rank 0 tests on the whole split
  lo.rank = 0;
  lo.world_size = 1;
  auto test_loader = ds.loader(data::EchoSplit::test, lo);

  nn::init::manual_seed(c.seed);
  models::EfRegressorOptions mo;
  mo.width = c.width;
  mo.pool = c.pool;
  models::EfRegressor model(mo);
#if COMPRESSOR_EF_TRAIN_MPI
  if constexpr (kMpi) {
    distributed::broadcast_module(world, model);  // identical replicas
    distributed::synchronize_batchnorm(world, model, c.sync_bn);
  }
#endif
  // Training predicts the standardised EF, z = (EF - mean) / std, so the head
  // starts at the mean predictor and its weights need no large scale; the
  // affine map is folded into the head afterwards, so the saved model
  // predicts EF in percent.
  model.set_output_bias(0.f);
  const auto to_z =
      data::standardize_targets(static_cast<float>(mean_ef), static_cast<float>(std_ef));
  data::MappedSource train_z(*train_loader, to_z), val_z(*val_loader, to_z);
  if (lead)
    std::printf(
        "model: EfRegressor (ResNet-18 width %.3g, %s over time), %lld parameters; %d rank(s) x "
        "%d threads%s\n",
        c.width, std::string(to_string(c.pool)).c_str(),
        static_cast<long long>(model.num_parameters()), ranks, c.threads,
        ranks > 1 ? (c.sync_bn ? ", synchronised BatchNorm" : ", per-rank BatchNorm") : "");

  std::unique_ptr<nn::Loss> loss;
  if (c.loss == "mse")
    loss = std::make_unique<nn::MSELoss>();
  else
    loss = std::make_unique<nn::L1Loss>();
  train::AdamW opt(model, train::AdamOptions{.lr = c.lr,
                                             .weight_decay = c.weight_decay,
                                             .decay_policy = train::DecayPolicy::weights_only});
  const std::int64_t steps = c.epochs * train_loader->num_batches();
  train::CosineLr sched(c.lr, steps,
                        std::min<std::int64_t>(steps / 10, train_loader->num_batches()));
  train::Trainer trainer(model, *loss, opt, train::Task::regression, &sched);
#if COMPRESSOR_EF_TRAIN_MPI
  std::optional<distributed::GradientAverager> averager;
  if constexpr (kMpi) {
    averager.emplace(world, model);
    averager->attach(trainer);
  }
#endif
  train::FitOptions fo;
  fo.epochs = c.epochs;
  fo.log = lead ? &std::cout : nullptr;
  fo.progress_interval = 15;
  fo.ranks = ranks;
#if COMPRESSOR_EF_TRAIN_MPI
  if constexpr (kMpi) distributed::distribute_metrics(world, model, fo);
#endif
  const auto reports = trainer.fit(train_z, &val_z, fo);
  if (!lead) return 0;
#if COMPRESSOR_EF_TRAIN_MPI
  if (averager) {
    double train_seconds = 0;
    for (const auto& r : reports) train_seconds += r.seconds;
    std::printf(
        "gradient averaging on rank 0: %.1f s of %.1f s of training steps (%.1f%%), %.1f s of it "
        "waiting for the allreduce (transfer and the other ranks' lag)\n",
        averager->seconds(), train_seconds, 100 * averager->seconds() / train_seconds,
        averager->wait_seconds());
  }
#endif
  model.fold_output_affine(static_cast<float>(std_ef), static_cast<float>(mean_ef));

  const train::Metrics test = trainer.evaluate(*test_loader);
  const train::Metrics baseline = constant_predictor(test_recs, static_cast<float>(mean_ef));
  const double minutes =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count() / 60;

  std::printf("\nTest set (%lld clips)              MAE     RMSE      R2\n",
              static_cast<long long>(test.samples));
  std::printf("  EfRegressor                  %8.3f %8.3f %7.3f\n", test.mae, test.rmse, test.r2);
  std::printf("  always the training mean     %8.3f %8.3f %7.3f\n", baseline.mae, baseline.rmse,
              baseline.r2);
  std::printf("MAE ratio model / mean predictor: %.3f; total time %.1f min\n",
              test.mae / baseline.mae, minutes);

  fs::create_directories(c.out);
  io::save_checkpoint(model, c.out / "model.safetensors");
  nlohmann::ordered_json val_mae = nlohmann::ordered_json::array();
  for (const auto& r : reports) val_mae.push_back(r.val->mae * std_ef);
  const nlohmann::ordered_json js = {{"data", c.data.string()},
                                     {"frames", c.frames},
                                     {"size", c.size},
                                     {"width", c.width},
                                     {"pool", std::string(to_string(c.pool))},
                                     {"epochs", c.epochs},
                                     {"ranks", ranks},
                                     {"sync_bn", c.sync_bn},
                                     {"threads", c.threads},
                                     {"train_mean_ef", mean_ef},
                                     {"test", metrics_json(test)},
                                     {"mean_predictor", metrics_json(baseline)},
                                     {"val_mae_per_epoch", val_mae},
                                     {"minutes", minutes}};
  io::write_file_atomic(c.out / "results.json", js.dump(2) + "\n");
  std::printf("wrote %s and %s\n", (c.out / "model.safetensors").c_str(),
              (c.out / "results.json").c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Config c = parse(argc, argv);
  try {
#if COMPRESSOR_EF_TRAIN_MPI
    // Started by a launcher as one of several ranks: data-parallel. An error
    // on any rank prints "rank N: ..." and ends every rank.
    if (compressor::distributed::launched_world_size().first > 1)
      return compressor::distributed::run(
          argc, argv,
          [&](const compressor::distributed::Communicator& world) { (void)run(c, world); });
#else
    // Built without MPI: N copies under mpirun would all write --out.
    compressor::distributed::require_single_process("ef_train");
#endif
    return run(c, SingleProcess{});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ef_train: error: %s\n", e.what());
    return 1;
  }
}
