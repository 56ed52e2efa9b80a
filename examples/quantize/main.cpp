// quantize: post-training quantization from the command line. A float
// checkpoint (with its channel plan in the metadata, as save_checkpoint()
// writes it) and calibration data in, an int8 model file out
// (quant::save_int8_model), with the conversion summary printed:
//
//   quantize --checkpoint cnn.safetensors --data cifar-10-batches-bin --out cnn.int8.safetensors
//
// Calibration data: for CifarCnn and ResNet18 a CIFAR-10 binary file
// (data_batch_1.bin), a CIFAR-10 binary folder (cifar-10-batches-bin: its
// five training files) or an image folder (root/<class>/<image>, or
// root/train/<class>/<image>), normalised with the CIFAR-10 mean and std as
// in training; for EfRegressor an EchoNet-layout root (FileList.csv,
// Videos/; its TRAIN split) or, with --synthetic N, a synthetic set
// generated there on first use. docs/quantization.md, "The quantize tool".
#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "compressor/core/threading.hpp"
#include "compressor/data/cifar10.hpp"
#include "compressor/data/image_dataset.hpp"
#include "compressor/data/image_folder.hpp"
#include "compressor/data/loader.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/models.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/int8_io.hpp"
#include "compressor/quant/observers.hpp"
#ifdef COMPRESSOR_QUANTIZE_VIDEO
#include "common/echo.hpp"
#include "compressor/data/echonet.hpp"
#endif

namespace fs = std::filesystem;
using namespace compressor;

namespace {

struct Options {
  fs::path checkpoint, data, out = "model.int8.safetensors";
  std::string model = "auto", observer = "histogram_mse", grid = "full";
  std::int64_t batches = 32, batch_size = 64, frames = 16, size = 112, synthetic = 0;
  bool cle = false, bias_correction = false;
  std::vector<std::string> islands;
  int threads = 0;
};

/// The model type of a command-line name, or of the plan when "auto".
std::string model_type(const Options& o, const nn::ChannelPlan& plan) {
  const std::string want = o.model == "cifar_cnn"      ? std::string(models::CifarCnn::kTypeName)
                           : o.model == "resnet18"     ? std::string(models::ResNet18::kTypeName)
                           : o.model == "ef_regressor" ? std::string(models::EfRegressor::kTypeName)
                                                       : plan.model;
  require(plan.model == want, "--model ", o.model, ": ", o.checkpoint.string(),
          " holds the channel plan of a ", plan.model, " model, not a ", want);
  return want;
}

std::unique_ptr<nn::Module> load_float_model(const Options& o) {
  io::SafetensorsFile file = io::SafetensorsFile::open(o.checkpoint);
  const nn::ChannelPlan plan = io::read_channel_plan(file);
  const std::string type = model_type(o, plan);
  std::unique_ptr<nn::Module> m;
  if (type == models::CifarCnn::kTypeName)
    m = std::make_unique<models::CifarCnn>(plan);
  else if (type == models::ResNet18::kTypeName)
    m = std::make_unique<models::ResNet18>(plan);
  else if (type == models::EfRegressor::kTypeName)
    m = std::make_unique<models::EfRegressor>(plan);
  else
    throw ValueError(compressor::detail::concat(o.checkpoint.string(), ": a ", type,
                                                " model; quantize knows CifarCnn, ResNet and "
                                                "EfRegressor"));
  io::load_checkpoint(*m, file);
  m->eval();
  return m;
}

/// Images for CifarCnn / ResNet18 (see the file comment).
std::unique_ptr<data::DataLoader> image_loader(const Options& o) {
  require(!o.data.empty(), "--data: calibration images are needed (a CIFAR-10 binary file or ",
          "folder, or an image folder)");
  data::ImageSet set;
  if (fs::is_regular_file(o.data)) {
    set = data::read_cifar10_binary(o.data);
  } else if (fs::exists(o.data / "data_batch_1.bin") ||
             fs::exists(o.data / "cifar-10-batches-bin" / "data_batch_1.bin")) {
    set = data::load_cifar10(o.data, data::CifarSplit::train);
  } else {
    const fs::path root = fs::is_directory(o.data / "train") ? o.data / "train" : o.data;
    set = data::load_image_folder(root);
  }
  auto ds = std::make_shared<data::ImageDataset>(std::move(set), data::Normalization::cifar10());
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.seed = 1;
  return std::make_unique<data::DataLoader>(ds, lo);
}

/// Clips for EfRegressor (see the file comment).
std::unique_ptr<data::DataLoader> clip_loader([[maybe_unused]] const Options& o) {
#ifdef COMPRESSOR_QUANTIZE_VIDEO
  require(!o.data.empty(), "--data: an EchoNet-layout root is needed for EfRegressor");
  if (o.synthetic > 0) examples::ensure_synthetic_echo_set(o.data, o.synthetic, 1);
  data::EchoNetOptions eo;
  eo.clip = data::ClipSpec{o.frames, o.size, o.size};
  eo.max_clips = o.batches * o.batch_size;
  eo.normalization = examples::echo_normalization();  // ef_train's
  static std::unique_ptr<data::EchoNet> ds;           // outlives the loader
  ds = std::make_unique<data::EchoNet>(o.data, eo);
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.seed = 1;
  return ds->loader(data::EchoSplit::train, lo);
#else
  throw ValueError("quantize was built without FFmpeg (compressor::video): no EchoNet clips");
#endif
}

int run(const Options& o) {
  if (o.threads > 0) set_num_threads(o.threads);
  auto model = load_float_model(o);
  const bool clips = model->type_name() == models::EfRegressor::kTypeName;
  auto loader = clips ? clip_loader(o) : image_loader(o);
  std::printf("%s: %s, %lld parameters; calibration: %lld batches of %lld from %s; %d threads\n",
              o.checkpoint.c_str(), std::string(model->type_name()).c_str(),
              static_cast<long long>(model->num_parameters()), static_cast<long long>(o.batches),
              static_cast<long long>(o.batch_size), o.data.c_str(), num_threads());

  quant::PtqConfig cfg;
  cfg.observer = [name = o.observer] { return quant::make_observer(name); };
  cfg.grid = quant::weight_grid_from_string(o.grid);
  cfg.cross_layer_equalization = o.cle;
  cfg.bias_correction = o.bias_correction;
  cfg.float_islands = o.islands;
  quant::Prepared p = quant::prepare_ptq(*model, cfg);
  const std::int64_t used = quant::calibrate(p, *loader, o.batches);
  quant::Int8Model int8 = quant::convert(p);
  std::printf("calibrated on %lld batches\n%s", static_cast<long long>(used),
              int8.summary().str().c_str());
  auto& planned = nn::require_capability<nn::PlannedModel>(*model, "a model with a channel plan",
                                                           o.checkpoint.string());
  quant::save_int8_model(int8, planned.channel_plan(), o.out);
  const auto in_bytes = fs::file_size(o.checkpoint), out_bytes = fs::file_size(o.out);
  std::printf("wrote %s: %lld bytes, %.1f%% of the float checkpoint's %lld bytes\n", o.out.c_str(),
              static_cast<long long>(out_bytes), 100.0 * double(out_bytes) / double(in_bytes),
              static_cast<long long>(in_bytes));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "quantize: post-training int8 quantization of a float checkpoint (CifarCnn, ResNet18, "
      "EfRegressor) with calibration data; writes an int8 model file and prints the conversion "
      "summary"};
  app.option_defaults()->always_capture_default();
  app.get_formatter()->column_width(34);
  app.add_option("--checkpoint", o.checkpoint,
                 "float checkpoint (.safetensors) with its channel plan in the metadata")
      ->required();
  app.add_option("--model", o.model, "model type; auto: the one of the checkpoint's channel plan")
      ->check(CLI::IsMember({"auto", "cifar_cnn", "resnet18", "ef_regressor"}));
  app.add_option("--data", o.data,
                 "calibration data: CIFAR-10 binary file or folder, or image folder (CNNs); "
                 "EchoNet-layout root (EfRegressor)");
  app.add_option("--synthetic", o.synthetic,
                 "EfRegressor: generate a synthetic EchoNet-layout set of N clips in --data "
                 "first (0: use --data as it is)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1000000}));
  app.add_option("--frames", o.frames, "EfRegressor: frames sampled per clip")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1024}));
  app.add_option("--size", o.size, "EfRegressor: frame height and width after resizing")
      ->check(CLI::Range(std::int64_t{32}, std::int64_t{1024}));
  std::vector<std::string> observers(std::begin(quant::kObserverNames),
                                     std::end(quant::kObserverNames));
  app.add_option("--observer", o.observer, "activation observer")->check(CLI::IsMember(observers));
  app.add_option("--weight-grid", o.grid,
                 "int8 weight grid: full [-127, 127] or narrow [-64, 64] (fastest "
                 "on AVX2 / AVX-512 without VNNI)")
      ->check(CLI::IsMember({std::string(quant::to_string(quant::WeightGrid::full)),
                             std::string(quant::to_string(quant::WeightGrid::narrow))}));
  app.add_option("--calibration-batches", o.batches, "calibration batches")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1000000}));
  app.add_option("--calibration-size", o.batch_size, "images (or clips) per calibration batch")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{65536}));
  app.add_flag("--cle", o.cle, "cross-layer equalization after BN folding (default: off)");
  app.add_flag("--bias-correction", o.bias_correction,
               "empirical bias correction on the calibration batches (default: off)");
  app.add_option("--float-island", o.islands,
                 "keep this layer with weights in float inside the int8 model (repeatable; its "
                 "folded BN and ReLU come with it; the file stores its float values)")
      ->allow_extra_args(false);
  app.add_option("--threads", o.threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
  app.add_option("--out", o.out, "the int8 model file to write (atomically)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quantize: error: %s\n", e.what());
    return 1;
  }
}
