// ef_experiment end to end on a tiny synthetic set (24 clips of 2 frames of
// 32x32, a 1/8-width ResNet-18, one epoch per stage): every row of --mode all
// is present and sane, sparsity after fine-tuning equals the target, a run
// killed after its baseline resumes, a run killed mid-stage resumes at its
// next epoch with the very same result, --export-tensors writes the clips,
// and bad input stops naming the flag.
#include <algorithm>
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "compressor/io/checkpoint.hpp"
#include "compressor/io/safetensors.hpp"
#include "compressor/models/cifar_cnn.hpp"
#include "compressor/report/results.hpp"

namespace fs = std::filesystem;
using namespace compressor;

#ifndef EF_EXPERIMENT_BIN
#error "EF_EXPERIMENT_BIN must name the binary"
#endif

namespace {

struct Result {
  int status;
  std::string output;
};

const fs::path kScratch = fs::path(COMPRESSOR_TEST_BINARY_DIR) / "scratch";

Result shell(const std::string& cmd, const std::string& log_name) {
  fs::create_directories(kScratch);
  const fs::path log = kScratch / log_name;
  const int rc = std::system(
      ("cd '" + kScratch.string() + "' && " + cmd + " > '" + log.string() + "' 2>&1").c_str());
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ss.str()};
}

const std::string kBin = std::string("'") + EF_EXPERIMENT_BIN + "'";

/// Makes the synthetic set (24 clips of 2 frames of 32x32) in the scratch
/// folder, if it is not there, by a short run of its own (the first case
/// renames the set it makes).
Result generate_synthetic_set(const std::string& log_name) {
  return shell(kBin +
                   " --data-root '' --generate 24 --frames 2 --size 32 --width 0.125 "
                   "--epochs 1 --mode quantization --qat-epochs 0 "
                   "--calibration-batches 1 --batch-size 4 --threads 2 --out bad_gen_out",
               log_name);
}
const std::string kTiny =
    " --data-root tiny_echo --frames 2 --size 32 --width 0.125 --batch-size 4 --epochs 1 "
    "--finetune-epochs 1 --qat-epochs 1 --unstructured 0.5 0.9 --structured 0.5 "
    "--calibration-batches 2 --threads 2 --latency-rounds 2 --latency-seconds 0";

}  // namespace

TEST_CASE("ef_experiment --mode all: a killed run resumes; every row sane", "[experiments]") {
  // The synthetic set, made once by the generator the binary uses by default.
  // It also exports the clips it calibrates and tests on (--export-tensors).
  fs::remove(kScratch / "gen_clips.safetensors");
  const Result gen = shell(kBin +
                               " --data-root '' --generate 24 --frames 2 --size 32 "
                               "--width 0.125 --epochs 1 --mode quantization --qat-epochs 0 "
                               "--calibration-batches 1 --batch-size 4 --threads 2 --out gen_out "
                               "--export-tensors gen_clips.safetensors",
                           "gen.log");
  INFO(gen.output);
  REQUIRE(gen.status == 0);
  {
    auto f = io::SafetensorsFile::open(kScratch / "gen_clips.safetensors");
    const Tensor<float> calib = f.read<float>("calibration.clips");
    const Tensor<float> test = f.read<float>("test.clips");
    const Tensor<float> ef = f.read<float>("test.ef");
    CHECK(calib.shape() == Shape{4, 2, 32, 32, 3});  // one batch of 4
    REQUIRE(test.rank() == 5);
    CHECK(test.dim(0) >= 1);
    CHECK(test.shape() == Shape{test.dim(0), 2, 32, 32, 3});
    CHECK(ef.shape() == Shape{test.dim(0), 1});
    for (const float v : ef.flat()) CHECK((v > 0.f && v < 100.f));
    double sum = 0;
    for (const float v : test.flat()) sum += std::abs(v);
    CHECK(std::isfinite(sum));
    CHECK(sum > 0);  // normalised pixels, not zeros
    CHECK_THAT(gen.output, Catch::Matchers::Contains(std::to_string(test.dim(0)) + " test"));
  }
  // --calibration-offset 4: other calibration clips (the finished stages are kept).
  const std::string again = kBin +
                            " --data-root synthetic_echo --frames 2 --size 32 --width 0.125 "
                            "--epochs 1 --mode quantization --qat-epochs 0 --calibration-batches 1 "
                            "--batch-size 4 --threads 2 --out gen_out --resume";
  const Result offset =
      shell(again + " --calibration-offset 4 --export-tensors gen_clips4.safetensors", "gen4.log");
  INFO(offset.output);
  REQUIRE(offset.status == 0);
  {
    const Tensor<float> calib0 = io::SafetensorsFile::open(kScratch / "gen_clips.safetensors")
                                     .read<float>("calibration.clips");
    const Tensor<float> calib4 = io::SafetensorsFile::open(kScratch / "gen_clips4.safetensors")
                                     .read<float>("calibration.clips");
    REQUIRE(calib4.shape() == calib0.shape());
    CHECK_FALSE(std::equal(calib0.flat().begin(), calib0.flat().end(), calib4.flat().begin()));
  }
  const Result beyond = shell(again + " --calibration-offset 24", "gen_beyond.log");
  INFO(beyond.output);
  CHECK(beyond.status != 0);
  CHECK_THAT(beyond.output,
             Catch::Matchers::Contains("--calibration-offset 24: the training split"));
  // --observer auto on the same baseline: the range rule with the lowest
  // validation MAE, every rule's MAE recorded.
  fs::remove_all(kScratch / "auto_out");
  fs::create_directories(kScratch / "auto_out");
  fs::copy_file(kScratch / "gen_out" / "baseline.safetensors",
                kScratch / "auto_out" / "baseline.safetensors");
  const Result chosen = shell(kBin +
                                  " --data-root synthetic_echo --frames 2 --size 32 --width 0.125 "
                                  "--mode quantization --qat-epochs 0 --calibration-batches 1 "
                                  "--batch-size 4 --threads 2 --out auto_out --no-train-baseline "
                                  "--observer auto",
                              "auto.log");
  INFO(chosen.output);
  REQUIRE(chosen.status == 0);
  CHECK_THAT(chosen.output, Catch::Matchers::Contains("validation MAE per range rule: mse "));
  {
    const auto r = report::read_results_json(kScratch / "auto_out" / "results.json");
    const auto& rule = r.extras.at("ptq_range_rule").at("PTQ int8");
    const auto& mae = rule.at("val_mae");
    REQUIRE(mae.size() == 4);
    double best = 1e300;
    for (const char* k : {"mse", "kl", "minmax", "percentile"}) {
      REQUIRE(mae.contains(k));
      best = std::min(best, mae.at(k).get<double>());
    }
    const std::string name = rule.at("chosen").get<std::string>();
    CHECK(mae.at(name).get<double>() == best);
    CHECK(r.find("PTQ int8") != nullptr);
  }
  fs::remove_all(kScratch / "tiny_echo");
  fs::rename(kScratch / "synthetic_echo", kScratch / "tiny_echo");

  const fs::path out = kScratch / "all_out";
  fs::remove_all(out);
  // Kill the run once its baseline is saved.
  const std::string killed = "bash -c \"" + kBin + kTiny +
                             " --mode all --out all_out & pid=\\$!; " +
                             "for i in \\$(seq 1200); do [ -f all_out/baseline.safetensors ] && " +
                             "break; sleep 0.1; done; kill -9 \\$pid; wait \\$pid\"";
  const Result first = shell(killed, "killed.log");
  INFO(first.output);
  REQUIRE(fs::exists(out / "baseline.safetensors"));
  const Result resumed = shell(kBin + kTiny + " --mode all --out all_out --resume", "resumed.log");
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK_THAT(resumed.output, Catch::Matchers::Contains("baseline: done in an earlier run"));

  const report::Results r = report::read_results_json(out / "results.json");
  for (const char* name :
       {"mean predictor", "fp32 baseline", "unstructured 0.5", "unstructured 0.9", "structured 0.5",
        "PTQ int8", "QAT int8", "structured+PTQ int8", "unstructured+PTQ int8"})
    CHECK(r.find(name) != nullptr);
  CHECK(r.rows.size() == 9);
  const report::Row* base = r.find("fp32 baseline");
  REQUIRE(base != nullptr);
  const report::Row* mean = r.find("mean predictor");
  REQUIRE(mean != nullptr);
  CHECK(mean->metric("mae").value_or(0) > 0);
  for (const report::Row& row : r.rows) {
    INFO(row.name);
    const double mae = row.metric("mae").value_or(-1);
    CHECK(std::isfinite(mae));
    CHECK(mae > 0);
    CHECK(row.metric("rmse").value_or(0) >= mae);
    if (row.method == "mean_predictor") continue;
    CHECK(row.params_total > 0);
    CHECK(row.params_nonzero > 0);
    CHECK(row.params_nonzero <= row.params_total);
    CHECK(row.macs > 0);
    CHECK(row.file_bytes > 0);
    REQUIRE_FALSE(row.file.empty());  // the file the row's size and latency are of
    CHECK(static_cast<std::int64_t>(fs::file_size(out / row.file)) == row.file_bytes);
    CHECK(row.latency_ms_median.value_or(0) > 0);
    CHECK(row.latency_ms_p90.value_or(0) >= *row.latency_ms_median);
    CHECK(row.threads == 2);
    if (row.precision == "int8") CHECK(row.file_bytes < base->file_bytes);
    if (row.method == "unstructured") {
      CHECK(row.sparsity_before_finetune.value() == Approx(*row.prune_ratio).margin(0.001));
      CHECK(row.sparsity_after_finetune.value() == Approx(*row.prune_ratio).margin(0.001));
    }
    if (row.method == "structured") CHECK(row.macs < base->macs);
    // Each pruned row, prune -> quantize too, says how much was pruned.
    if (row.method.find("structured") != std::string::npos) CHECK(row.prune_ratio.has_value());
  }
  CHECK(r.find("structured+PTQ int8")->prune_ratio == r.find("structured 0.5")->prune_ratio);
  CHECK(r.find("unstructured+PTQ int8")->prune_ratio == r.find("unstructured 0.5")->prune_ratio);
  CHECK(r.find("unstructured 0.9")->params_nonzero < base->params_nonzero / 2);
  CHECK(r.extras.at("layer_sparsity").size() == 2);
  // Every model's latency from the final pass over the reloaded files.
  CHECK(r.extras.at("latency").at("rounds") == 2);
  CHECK(r.extras.at("latency").at("models") == 8);
  CHECK_THAT(resumed.output, Catch::Matchers::Contains("latency: 8 models from their files"));
  CHECK(fs::file_size(out / "report.html") > 1000);
  std::ifstream csv(out / "results.csv");
  int lines = 0;
  for (std::string l; std::getline(csv, l);) ++lines;
  CHECK(lines == 10);
}

TEST_CASE("ef_experiment: bad input names the flag or file", "[experiments]") {
  const auto expect = [&](const std::string& args, const std::string& needle) {
    const Result r = shell(kBin + args, "bad.log");
    INFO(args << "\n" << r.output);
    CHECK(r.status != 0);
    CHECK_THAT(r.output, Catch::Matchers::Contains(needle));
  };
  expect(" --mode everything", "--mode");
  expect(" --unstructured 1.5", "--unstructured");
  expect(" --structured -0.1", "--structured");
  expect(" --qat-observer everything", "--qat-observer");
  expect(" --qat-lr -1", "--qat-lr");
  for (const char* flag : {"--lr", "--width", "--finetune-lr", "--weight-decay", "--unstructured"})
    expect(std::string(" ") + flag + " nan --data-root /no/such/echo",
           std::string(flag) + ": Value nan is not a number");
  expect(" --data-root /no/such/echo --out bad_out", "/no/such/echo");
  expect(" --data-root /no/such/echo --out /proc/no_such_dir", "--out");
  const Result help = shell(kBin + " --help", "help.log");
  CHECK(help.status == 0);
  CHECK_THAT(help.output,
             Catch::Matchers::Contains("--finetune-epochs") && Catch::Matchers::Contains("--full"));
}

TEST_CASE("ef_experiment: an empty list, a missing split, another model's checkpoint",
          "[experiments]") {
  // A set of its own: the first case renames the generated one.
  const Result gen = generate_synthetic_set("bad_gen.log");
  INFO(gen.output);
  REQUIRE(gen.status == 0);
  const fs::path set = kScratch / "synthetic_echo";
  REQUIRE(fs::exists(set / "FileList.csv"));
  const auto expect = [&](const std::string& args, const std::vector<std::string>& needles) {
    const Result r = shell(kBin + args, "bad.log");
    INFO(args << "\n" << r.output);
    CHECK(r.status != 0);
    for (const auto& n : needles) CHECK_THAT(r.output, Catch::Matchers::Contains(n));
    CHECK_THAT(r.output, !Catch::Matchers::Contains("epoch 1/"));  // before any training
  };
  const std::string small =
      " --frames 2 --size 32 --width 0.125 --batch-size 4 --epochs 1 --threads 2";

  // FileList.csv with its header and no rows.
  const fs::path header_only = kScratch / "bad_header_only";
  fs::remove_all(header_only);
  fs::create_directories(header_only / "Videos");
  std::string header;
  {
    std::ifstream in(set / "FileList.csv");
    std::getline(in, header);
    std::ofstream(header_only / "FileList.csv") << header << "\n";
  }
  expect(" --data-root bad_header_only --out bad_out" + small,
         {"bad_header_only", "need TRAIN, VAL and TEST clips, got 0, 0, 0"});

  // No TEST clips: the list without its TEST rows, the same videos.
  const fs::path no_test = kScratch / "bad_no_test";
  fs::remove_all(no_test);
  fs::create_directories(no_test);
  fs::create_directory_symlink(fs::absolute(set / "Videos"), no_test / "Videos");
  {
    std::ifstream in(set / "FileList.csv");
    std::ofstream outf(no_test / "FileList.csv");
    for (std::string l; std::getline(in, l);)
      if (l.find(",TEST") == std::string::npos) outf << l << "\n";
  }
  expect(" --data-root bad_no_test --out bad_out" + small, {"bad_no_test", "TEST", ", 0"});

  // --no-train-baseline on a folder whose baseline is a CifarCnn's.
  const fs::path other = kScratch / "bad_other_model";
  fs::remove_all(other);
  fs::create_directories(other);
  models::CifarCnn cnn;
  io::save_checkpoint(cnn, other / "baseline.safetensors");
  expect(" --data-root synthetic_echo --no-train-baseline --out bad_other_model" + small,
         {"baseline.safetensors", "'CifarCnn', not 'EfRegressor'"});

  // --full sets the defaults; what the command line gives still applies.
  const Result full = shell(kBin +
                                " --data-root synthetic_echo --full --frames 2 --size 32 "
                                "--width 0.125 --batch-size 4 --epochs 1 --mode quantization "
                                "--qat-epochs 0 --calibration-batches 1 --threads 2 "
                                "--latency-rounds 1 --latency-seconds 0 --out full_override",
                            "full_override.log");
  INFO(full.output);
  REQUIRE(full.status == 0);
  const report::Results fr = report::read_results_json(kScratch / "full_override" / "results.json");
  CHECK(fr.config.at("full") == true);
  CHECK(fr.config.at("frames") == 2);
  CHECK(fr.config.at("size") == 32);
  CHECK(fr.config.at("width") == 0.125);
  CHECK(fr.config.at("epochs") == 1);
  CHECK(fr.config.at("finetune_epochs") == 4);  // not given: --full's
}

namespace {
/// Whether two model files hold the same tensors, byte for byte.
bool same_tensors(const fs::path& a, const fs::path& b) {
  io::SafetensorsFile fa = io::SafetensorsFile::open(a), fb = io::SafetensorsFile::open(b);
  if (fa.tensors().size() != fb.tensors().size()) return false;
  for (const io::TensorInfo& t : fa.tensors()) {
    const io::TensorInfo* u = fb.find(t.name);
    if (u == nullptr || u->dims != t.dims || u->dtype_name != t.dtype_name ||
        u->nbytes() != t.nbytes())
      return false;
    std::vector<char> x(t.nbytes()), y(t.nbytes());
    fa.read_bytes(t, x.data());
    fb.read_bytes(*u, y.data());
    if (x != y) return false;
  }
  return true;
}
}  // namespace

TEST_CASE("ef_experiment: a run killed mid-stage resumes at its next epoch, exactly",
          "[experiments]") {
  const Result gen = generate_synthetic_set("resume_gen.log");
  INFO(gen.output);
  REQUIRE(gen.status == 0);
  const std::string run = kBin +
                          " --data-root synthetic_echo --frames 2 --size 32 --width 0.125 "
                          "--batch-size 4 --finetune-epochs 2 --mode pruning --unstructured 0.5 "
                          "--structured 0.5 --threads 2 --latency-rounds 1 --latency-seconds 0";
  const fs::path ref = kScratch / "epoch_ref", out = kScratch / "epoch_resumed";
  fs::remove_all(ref);
  fs::remove_all(out);
  const Result whole = shell(run + " --epochs 3 --out epoch_ref", "epoch_ref.log");
  INFO(whole.output);
  REQUIRE(whole.status == 0);

  const auto killed_after = [&](const std::string& point, const std::string& args) {
    return shell("COMPRESSOR_TEST_KILL_AFTER_EPOCH='" + point + "' " + run + args,
                 "epoch_killed.log");
  };
  const Result k1 = killed_after("baseline:1", " --epochs 3 --out epoch_resumed");
  INFO(k1.output);
  CHECK(k1.status != 0);
  REQUIRE(fs::exists(out / "baseline.partial.safetensors"));
  CHECK_FALSE(fs::exists(out / "baseline.safetensors"));

  // Another --epochs: refused, naming the file, before any training.
  const Result other = shell(run + " --epochs 4 --out epoch_resumed --resume", "epoch_other.log");
  INFO(other.output);
  CHECK(other.status != 0);
  CHECK_THAT(other.output,
             Catch::Matchers::Contains("baseline.partial.safetensors: epoch 1 of 3, but this "
                                       "run trains baseline for 4 epochs"));
  CHECK_THAT(other.output, !Catch::Matchers::Contains("epoch 2/4"));

  const Result k2 = killed_after("unstructured 0.5:1", " --epochs 3 --out epoch_resumed --resume");
  INFO(k2.output);
  CHECK(k2.status != 0);
  CHECK_THAT(k2.output, Catch::Matchers::Contains("resume: baseline from epoch 2 of 3"));
  CHECK_THAT(k2.output, !Catch::Matchers::Contains("epoch 1/3"));
  CHECK_FALSE(fs::exists(out / "baseline.partial.safetensors"));
  REQUIRE(fs::exists(out / "unstructured_0.5.partial.safetensors"));

  const Result last = shell(run + " --epochs 3 --out epoch_resumed --resume", "epoch_last.log");
  INFO(last.output);
  REQUIRE(last.status == 0);
  CHECK_THAT(last.output, Catch::Matchers::Contains("baseline: done in an earlier run"));
  CHECK_THAT(last.output, Catch::Matchers::Contains("resume: unstructured 0.5 from epoch 2 of 2"));
  // The interrupted run trained the very same models as the uninterrupted one.
  for (const char* f :
       {"baseline.safetensors", "unstructured_0.5.safetensors", "structured_0.5.safetensors"}) {
    INFO(f);
    CHECK(same_tensors(ref / f, out / f));
  }
  const report::Results a = report::read_results_json(ref / "results.json");
  const report::Results b = report::read_results_json(out / "results.json");
  for (const char* name : {"fp32 baseline", "unstructured 0.5", "structured 0.5"}) {
    INFO(name);
    REQUIRE(a.find(name) != nullptr);
    REQUIRE(b.find(name) != nullptr);
    CHECK(a.find(name)->metric("mae") == b.find(name)->metric("mae"));
  }
  for (const auto& e : fs::directory_iterator(out))
    CHECK(e.path().filename().string().find(".partial.") == std::string::npos);
}
