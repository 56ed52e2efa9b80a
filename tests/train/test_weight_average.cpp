// Stochastic weight averaging: train::WeightAverage (equal-weight mean and
// exponential average of parameter snapshots), its place in training
// checkpoints (io/optimizer_state.hpp), and the schedules of its cyclical
// form (CosineRestartsLr, SequentialLr).
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "compressor/io/optimizer_state.hpp"
#include "compressor/nn.hpp"
#include "compressor/train.hpp"
#include "small_net.hpp"

using namespace compressor;
using namespace compressor::train;
using Catch::Matchers::Contains;

namespace weight_average_test {

std::unique_ptr<nn::Sequential> swa_test_net(std::int64_t classes = 3) {
  return train_test::small_net(3, classes);
}

/// Sets parameter element k of parameter i to f(i, k).
template <class F>
void swa_set_params(nn::Module& m, F f) {
  int i = 0;
  for (auto& p : m.named_parameters()) {
    for (std::int64_t k = 0; k < p.value->numel(); ++k) (*p.value)[k] = f(i, k);
    ++i;
  }
}

/// Largest |param - f(i, k)| over every parameter element.
template <class F>
double swa_max_diff(nn::Module& m, F f) {
  double d = 0;
  int i = 0;
  for (auto& p : m.named_parameters()) {
    for (std::int64_t k = 0; k < p.value->numel(); ++k)
      d = std::max(d, std::abs(double((*p.value)[k]) - double(f(i, k))));
    ++i;
  }
  return d;
}

float swa_snapshot(int s, int i, std::int64_t k) {
  return static_cast<float>(std::sin(0.37 * double(k) + 1.3 * i + 0.9 * s));
}

std::filesystem::path swa_test_dir(const std::string& name) {
  const auto dir = std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "weight_average" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace weight_average_test

using namespace weight_average_test;

TEST_CASE("WeightAverage: the mean of the snapshots, or their exponential average",
          "[train][swa]") {
  auto net = swa_test_net();
  WeightAverage mean(*net);
  WeightAverage ema = WeightAverage::exponential(*net, 0.75f);
  CHECK(mean.count() == 0);
  CHECK_THROWS_WITH(mean.copy_to(*net), Contains("no snapshot"));
  for (int s = 0; s < 4; ++s) {
    swa_set_params(*net, [&](int i, std::int64_t k) { return swa_snapshot(s, i, k); });
    mean.update(*net);
    ema.update(*net);
  }
  CHECK(mean.count() == 4);
  CHECK(ema.count() == 4);
  // Overwrite the weights, then write each average back.
  swa_set_params(*net, [](int, std::int64_t) { return 9.f; });
  mean.copy_to(*net);
  CHECK(swa_max_diff(*net, [](int i, std::int64_t k) {
          double sum = 0;
          for (int s = 0; s < 4; ++s) sum += swa_snapshot(s, i, k);
          return sum / 4;
        }) < 1e-6);
  ema.copy_to(*net);
  CHECK(swa_max_diff(*net, [](int i, std::int64_t k) {
          double a = swa_snapshot(0, i, k);  // the first snapshot is copied
          for (int s = 1; s < 4; ++s) a = 0.75 * a + 0.25 * swa_snapshot(s, i, k);
          return a;
        }) < 1e-6);
  // The BatchNorm running statistics are buffers, not averaged: unchanged.
  for (float v : dynamic_cast<nn::BatchNorm2d&>(net->child(1)).running_var().flat())
    CHECK(v == 1.f);
  CHECK_THROWS_WITH(WeightAverage::exponential(*net, 1.f), Contains("decay must be in (0, 1)"));
}

TEST_CASE("WeightAverage refuses a model with other parameters", "[train][swa]") {
  auto net = swa_test_net(3);
  WeightAverage avg(*net);
  avg.update(*net);
  auto other = swa_test_net(5);
  CHECK_THROWS_WITH(avg.update(*other), Contains("'4.weight' of shape (5, 4)") &&
                                            Contains("the average's '4.weight' of shape (3, 4)"));
  CHECK_THROWS_WITH(avg.copy_to(*other), Contains("copy_to") && Contains("'4.weight'"));
  CHECK(avg.count() == 1);
  nn::Sequential fewer;
  fewer.emplace<nn::Linear>(4, 3);
  CHECK_THROWS_WITH(avg.update(fewer), Contains("has 2 parameters, the average 5"));
}

TEST_CASE("WeightAverage in training checkpoints: saved, restored, refused when it does not fit",
          "[train][swa][io]") {
  const auto dir = swa_test_dir("checkpoint");
  auto net = swa_test_net();
  Sgd sgd(*net, SgdOptions{.lr = 0.1f, .momentum = 0.9f});
  WeightAverage avg(*net);
  for (int s = 0; s < 3; ++s) {
    swa_set_params(*net, [&](int i, std::int64_t k) { return swa_snapshot(s, i, k); });
    avg.update(*net);
  }
  io::SafetensorsWriter w = io::checkpoint_writer(*net);
  io::add_optimizer_state(w, sgd);
  io::add_weight_average(w, avg);
  w.write(dir / "swa.safetensors");
  io::save_checkpoint(*net, dir / "plain.safetensors");

  auto restored_net = swa_test_net();
  WeightAverage restored(*restored_net);
  {
    auto f = io::SafetensorsFile::open(dir / "swa.safetensors");
    io::load_weight_average(f, restored);
  }
  CHECK(restored.count() == 3);
  restored.update(*net);  // a fourth snapshot, equal to the third
  avg.update(*net);
  restored.copy_to(*restored_net);
  avg.copy_to(*net);
  auto a = net->named_parameters(), b = restored_net->named_parameters();
  for (std::size_t i = 0; i < a.size(); ++i)
    for (std::int64_t k = 0; k < a[i].value->numel(); ++k)
      CHECK((*a[i].value)[k] == (*b[i].value)[k]);

  // Bad files: none in it, another decay, another shape. Nothing changes.
  auto fresh_net = swa_test_net();
  WeightAverage fresh(*fresh_net);
  {
    auto f = io::SafetensorsFile::open(dir / "plain.safetensors");
    CHECK_THROWS_WITH(io::load_weight_average(f, fresh),
                      Contains("plain.safetensors") && Contains("no weight average"));
  }
  {
    WeightAverage ema = WeightAverage::exponential(*fresh_net, 0.5f);
    auto f = io::SafetensorsFile::open(dir / "swa.safetensors");
    CHECK_THROWS_WITH(io::load_weight_average(f, ema), Contains("decay"));
    CHECK(ema.count() == 0);
  }
  {
    auto wider = swa_test_net(5);
    WeightAverage other(*wider);
    auto f = io::SafetensorsFile::open(dir / "swa.safetensors");
    CHECK_THROWS_WITH(io::load_weight_average(f, other),
                      Contains("'weight_average.4.weight' has shape (3, 4)"));
    CHECK(other.count() == 0);
  }
  for (const char* count : {"3.5", "-2", "three"}) {
    io::SafetensorsWriter bad = io::checkpoint_writer(*net);
    io::add_weight_average(bad, avg);
    bad.set_metadata("weight_average.count", count);
    bad.write(dir / "bad_count.safetensors");
    auto f = io::SafetensorsFile::open(dir / "bad_count.safetensors");
    CHECK_THROWS_WITH(io::load_weight_average(f, fresh),
                      Contains("bad_count.safetensors") &&
                          Contains(std::string("metadata 'weight_average.count' is '") + count +
                                   "', not a snapshot count"));
  }
  CHECK(fresh.count() == 0);
  // The model's own loader sees the average's tensors as unexpected.
  CHECK_THROWS_WITH(io::load_checkpoint(*fresh_net, dir / "swa.safetensors"),
                    Contains("weight_average."));
}

TEST_CASE("CosineRestartsLr restarts each cycle; SequentialLr switches at its milestone",
          "[train][swa][schedule]") {
  const CosineRestartsLr cycles(0.02f, 10, 0.001f);
  for (std::int64_t c = 0; c < 3; ++c) {
    CHECK(cycles.lr_at(10 * c) == Approx(0.02f));
    CHECK(cycles.lr_at(10 * c + 5) == Approx(0.0105f));
    CHECK(cycles.lr_at(10 * c + 9) ==
          Approx(0.001 + 0.019 * 0.5 * (1 + std::cos(std::numbers::pi * 0.9))));
  }
  CHECK_FALSE(cycles.momentum_at(3).has_value());
  CHECK_THROWS_WITH(CosineRestartsLr(0.1f, 0), Contains("cycle_steps must be > 0"));

  const OneCycleLr one_cycle(0.1f, 20);
  const SequentialLr seq(one_cycle, cycles, 20);
  for (std::int64_t s = 0; s < 20; ++s) {
    CHECK(seq.lr_at(s) == one_cycle.lr_at(s));
    CHECK(seq.momentum_at(s) == one_cycle.momentum_at(s));
  }
  for (std::int64_t s = 20; s < 45; ++s) {
    CHECK(seq.lr_at(s) == cycles.lr_at(s - 20));
    CHECK_FALSE(seq.momentum_at(s).has_value());
  }
}

TEST_CASE("SWA over cosine cycles of the Trainer: the mean of the cycles' ends", "[train][swa]") {
  Rng rng(5);
  data::Batch batch;
  batch.inputs = Tensor<float>(Shape{8, 6, 6, 3});
  for (auto& v : batch.inputs.flat()) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  batch.labels = Tensor<std::int32_t>(Shape{8});
  for (auto& l : batch.labels.flat()) l = static_cast<std::int32_t>(rng.below(3));
  auto net = swa_test_net();
  nn::SoftmaxCrossEntropy loss;
  Sgd sgd(*net, SgdOptions{.lr = 0.05f, .momentum = 0.9f});
  const CosineRestartsLr sched(0.05f, 4);
  Trainer trainer(*net, loss, sgd, Task::classification, &sched);
  WeightAverage avg(*net);
  net->train();
  std::vector<std::vector<float>> ends;
  for (int cycle = 0; cycle < 3; ++cycle) {
    for (int s = 0; s < 4; ++s) {
      (void)trainer.step(batch);
      // The step's rate: the cycle's cosine, restarted every 4 steps.
      CHECK(sgd.lr() == Approx(0.025 * (1 + std::cos(std::numbers::pi * s / 4))));
    }
    avg.update(*net);
    std::vector<float> w;
    for (auto& p : net->named_parameters())
      for (float v : p.value->flat()) w.push_back(v);
    ends.push_back(std::move(w));
  }
  CHECK(ends[0] != ends[2]);  // the weights moved
  avg.copy_to(*net);
  std::size_t j = 0;
  double worst = 0;
  for (auto& p : net->named_parameters())
    for (float v : p.value->flat()) {
      worst =
          std::max(worst, std::abs(double(v) - (double(ends[0][j]) + ends[1][j] + ends[2][j]) / 3));
      ++j;
    }
  CHECK(worst < 1e-6);
}
