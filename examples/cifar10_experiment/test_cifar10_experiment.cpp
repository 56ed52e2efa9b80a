// cifar10_experiment end to end on a few hundred real CIFAR-10 images: every
// output file is written and parses, every row's figures are present and
// sane, a run killed during training resumes, and bad input stops with an
// error naming the flag or file before any long work.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "compressor/report/results.hpp"

namespace fs = std::filesystem;
using namespace compressor;

#ifndef CIFAR10_EXPERIMENT_BIN
#error "CIFAR10_EXPERIMENT_BIN must name the binary"
#endif

namespace {

const fs::path kData = fs::path(COMPRESSOR_TEST_BINARY_DIR) / ".." / ".." / "tests" / "data" /
                       "cifar10" / "cifar10-jpeg";

struct Result {
  int status;
  std::string output;
};

/// Runs a shell command line, capturing stdout and stderr.
Result shell(const std::string& cmd, const fs::path& log) {
  const int rc = std::system((cmd + " > '" + log.string() + "' 2>&1").c_str());
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, ss.str()};
}

std::string bin() {
  return std::string("'") + CIFAR10_EXPERIMENT_BIN + "'";
}

std::string tiny_args(const fs::path& out) {
  return " --data-root '" + kData.string() +
         "' --train-size 300 --test-size 100 --calibration-size 32 --sensitivity-size 50 "
         "--batch-size 64 --cutout 8 --threads 2 --latency-rounds 3 --latency-seconds 0 --out '" +
         out.string() + "'";
}

fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::path(COMPRESSOR_TEST_BINARY_DIR) / "scratch" / name;
  fs::remove_all(d);
  fs::create_directories(d.parent_path());
  return d;
}

}  // namespace

TEST_CASE("cifar10_experiment: killed during training, resumed, every output sane",
          "[experiments]") {
  REQUIRE(fs::is_directory(kData / "train"));
  const fs::path out = fresh_dir("run");
  const fs::path partial = out / "baseline.partial.safetensors";
  // Start a 3-epoch run, kill it hard once the first epoch's checkpoint is there.
  const std::string killed = "bash -c \"" + bin() + tiny_args(out) +
                             " --epochs 3 --qat-epochs 1 & pid=\\$!; for i in \\$(seq 600); do "
                             "[ -f '" +
                             partial.string() +
                             "' ] && break; sleep 0.1; done; kill -9 \\$pid; wait \\$pid\"";
  const Result first = shell(killed, out.parent_path() / "killed.log");
  INFO(first.output);
  REQUIRE(fs::exists(partial));
  CHECK_FALSE(fs::exists(out / "baseline.safetensors"));

  const Result resumed = shell(bin() + tiny_args(out) + " --epochs 3 --qat-epochs 1 --resume",
                               out.parent_path() / "resumed.log");
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK_THAT(resumed.output, Catch::Matchers::Contains("resume: baseline training from epoch") &&
                                 Catch::Matchers::Contains("SGD state restored"));
  CHECK_FALSE(fs::exists(partial));

  const report::Results r = report::read_results_json(out / "results.json");
  REQUIRE(r.rows.size() == 3);
  const report::Row* base = r.find("fp32 baseline");
  REQUIRE(base != nullptr);
  for (const report::Row& row : r.rows) {
    INFO(row.name);
    CHECK(row.params_total == 1'557'066);
    CHECK(row.params_nonzero > 0);
    CHECK(row.macs == 58'397'696);
    CHECK(row.file_bytes > 0);
    REQUIRE_FALSE(row.file.empty());
    CHECK(static_cast<std::int64_t>(fs::file_size(out / row.file)) == row.file_bytes);
    CHECK(row.latency_ms_median.value_or(0) > 0);
    CHECK(row.latency_ms_p90.value_or(0) >= row.latency_ms_median.value_or(0));
    CHECK(row.threads == 2);
    CHECK_FALSE(row.kernel_path.empty());
    const double top1 = row.metric("top1").value_or(-1);
    CHECK(top1 >= 0);
    CHECK(top1 <= 100);
    if (row.precision == "int8") {
      CHECK(row.file_bytes < base->file_bytes * 26 / 100);
      // Fidelity to the fp32 baseline on the test images.
      const double agreement = row.metric("fp32_agreement").value_or(-1);
      CHECK(agreement >= 0);
      CHECK(agreement <= 100);
      CHECK(row.metric("kl_to_fp32").value_or(-1) >= 0);
    }
  }
  CHECK(r.find("PTQ int8")->method == "ptq");
  CHECK(r.find("QAT int8")->method == "qat");
  CHECK(r.config.at("epochs") == 3);
  CHECK(r.config.at("cutout") == 8);
  CHECK(r.machine.contains("cpu"));
  REQUIRE(r.extras.contains("sensitivity"));
  CHECK(r.extras.at("sensitivity").size() == 7);
  CHECK(r.extras.at("latency").at("rounds") == 3);  // the final pass over the reloaded files
  CHECK(r.extras.at("latency").at("models") == 3);
  std::ifstream csv(out / "results.csv");
  int lines = 0;
  for (std::string l; std::getline(csv, l);) ++lines;
  CHECK(lines == 4);
  CHECK(fs::file_size(out / "report.html") > 1000);

  // Finished stages are kept: a second --resume retrains nothing.
  const Result again = shell(bin() + tiny_args(out) + " --epochs 3 --qat-epochs 1 --resume",
                             out.parent_path() / "again.log");
  INFO(again.output);
  CHECK(again.status == 0);
  CHECK_THAT(again.output, Catch::Matchers::Contains("baseline: done in an earlier run") &&
                               Catch::Matchers::Contains("PTQ: done in an earlier run") &&
                               Catch::Matchers::Contains("QAT: done in an earlier run"));
}

TEST_CASE("cifar10_experiment: --width scales the channels, a baseline of another width is refused",
          "[experiments]") {
  const fs::path out = fresh_dir("width");
  // Also calibrates on other images than the first: 32 from image 200 (of
  // 300), with both PTQ helpers.
  const Result r = shell(bin() + tiny_args(out) +
                             " --width 0.5 --epochs 1 --qat-epochs 0 --calibration-offset 200 "
                             "--cle --bias-correction",
                         out.parent_path() / "width.log");
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.output, Catch::Matchers::Contains("CifarCnn 32-64-128-256") &&
                           Catch::Matchers::Contains(
                               "training images [200, 232) in class-interleaved order"));
  const report::Results res = report::read_results_json(out / "results.json");
  CHECK(res.config.at("width") == 0.5);
  CHECK(res.config.at("calibration_offset") == 200);
  CHECK(res.config.at("cle") == true);
  CHECK(res.config.at("bias_correction") == true);
  const report::Row* base = res.find("fp32 baseline");
  REQUIRE(base != nullptr);
  // 3x3 convs 3-32-64-128-256, BatchNorm scale and shift, fc 256 -> 10 with bias.
  const std::int64_t convs = 9 * (3 * 32 + 32 * 64 + 64 * 128 + 128 * 256);
  CHECK(base->params_total == convs + 2 * (32 + 64 + 128 + 256) + 256 * 10 + 10);
  // Reusing it at the default width names the flag and both channel plans.
  const Result reuse = shell(bin() + tiny_args(out) + " --no-train-baseline --qat-epochs 0",
                             out.parent_path() / "width_reuse.log");
  INFO(reuse.output);
  CHECK(reuse.status != 0);
  CHECK_THAT(reuse.output, Catch::Matchers::Contains("--width") &&
                               Catch::Matchers::Contains("32-64-128-256") &&
                               Catch::Matchers::Contains("64-128-256-512"));
}

TEST_CASE("cifar10_experiment: --swa-epochs averages the last epochs' weights, and resumes",
          "[experiments]") {
  const fs::path out = fresh_dir("swa");
  const std::string args = tiny_args(out) + " --width 0.5 --epochs 2 --qat-epochs 0";
  // Killed right after the first SWA epoch's checkpoint (epoch 3 of 4).
  const Result killed =
      shell("COMPRESSOR_TEST_KILL_AFTER_EPOCH=baseline:3 " + bin() + args + " --swa-epochs 2",
            out.parent_path() / "swa_killed.log");
  INFO(killed.output);
  REQUIRE(killed.status != 0);
  CHECK_THAT(killed.output, Catch::Matchers::Contains("epoch 3/4 (SWA)"));
  // Resuming it with another number of SWA epochs is refused.
  const Result other =
      shell(bin() + args + " --swa-epochs 3 --resume", out.parent_path() / "swa_other.log");
  INFO(other.output);
  CHECK(other.status != 0);
  CHECK_THAT(other.output, Catch::Matchers::Contains("baseline.partial.safetensors") &&
                               Catch::Matchers::Contains("trains baseline for 5 epochs"));
  const Result resumed =
      shell(bin() + args + " --swa-epochs 2 --resume", out.parent_path() / "swa_resumed.log");
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK_THAT(resumed.output,
             Catch::Matchers::Contains("resume: baseline training from epoch 4") &&
                 Catch::Matchers::Contains("epoch 4/4 (SWA)") &&
                 Catch::Matchers::Contains("mean of the weights after epochs 3-4") &&
                 Catch::Matchers::Contains("SWA took test top-1 from"));
  const report::Results r = report::read_results_json(out / "results.json");
  CHECK(r.config.at("swa_epochs") == 2);
  REQUIRE(r.extras.contains("swa"));
  CHECK(r.extras.at("swa").at("epochs") == 2);
  const double top1 = r.find("fp32 baseline")->metric("top1").value_or(-1);
  CHECK(r.extras.at("swa").at("top1_average") == Approx(top1));
  CHECK(r.extras.at("swa").contains("top1_last_snapshot"));
}

TEST_CASE("cifar10_experiment: bad input names the flag or file", "[experiments]") {
  const fs::path out = fresh_dir("bad");
  const auto expect = [&](const std::string& args, const std::string& needle) {
    const Result r = shell(bin() + args, out.parent_path() / "bad.log");
    INFO(args << "\n" << r.output);
    CHECK(r.status != 0);
    CHECK_THAT(r.output, Catch::Matchers::Contains(needle));
  };
  expect(" --epochs 0", "--epochs");
  expect(" --observer median", "--observer");
  expect(" --cutout 33", "--cutout");
  expect(" --width 0.1", "--width");
  expect(" --threads x", "--threads");
  // NaN passes CLI11's own range check; without ours these would reach the
  // data root (and, with a real one, train: --width nan built 16-16-16-16).
  for (const char* flag : {"--lr", "--width", "--weight-decay", "--label-smoothing", "--qat-lr"})
    expect(std::string(" ") + flag + " nan --data-root /no/such/cifar",
           std::string(flag) + ": Value nan is not a number");
  expect(" --data-root /no/such/cifar --out '" + out.string() + "'", "/no/such/cifar");
  expect(" --data-root '" + kData.string() + "' --out /proc/no_such_dir", "--out");
  expect(" --data-root '" + kData.string() + "' --train-size 300 --calibration-offset 300 --out '" +
             out.string() + "'",
         "--calibration-offset 300: the training set has 300 images");
  expect(" --data-root '" + kData.string() + "' --no-train-baseline --out '" + out.string() + "'",
         "baseline.safetensors");
  const Result help = shell(bin() + " --help", out.parent_path() / "help.log");
  CHECK(help.status == 0);
  CHECK_THAT(help.output,
             Catch::Matchers::Contains("--calibration-size") && Catch::Matchers::Contains("512"));
}
