// Optimizer state in training checkpoints (io/optimizer_state.hpp): a run
// saved midway and resumed into a fresh model and optimizer ends with the
// very same weights as an uninterrupted one; without the state it does not;
// files that do not fit the optimizer are refused, changing nothing; fit()
// from FitOptions::first_epoch continues a killed run exactly.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "compressor/data/image_dataset.hpp"
#include "compressor/data/loader.hpp"
#include "compressor/io/optimizer_state.hpp"
#include "compressor/nn.hpp"
#include "compressor/train.hpp"
#include "small_net.hpp"

using namespace compressor;
using namespace compressor::train;
using Catch::Matchers::Contains;

namespace optimizer_state_test {

std::filesystem::path test_dir(const std::string& name) {
  const auto dir = std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "optimizer_state" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::unique_ptr<nn::Sequential> make_small_net() {
  return train_test::small_net(7);
}

/// A deterministic gradient per (parameter, step, element).
void steps_with_fixed_grads(Optimizer& opt, nn::Module& m, int from, int count) {
  for (int t = from; t < from + count; ++t) {
    opt.zero_grad();
    int i = 0;
    for (auto& p : m.named_parameters()) {
      ++i;
      for (std::int64_t k = 0; k < p.grad->numel(); ++k)
        (*p.grad)[k] = static_cast<float>(std::sin(0.31 * double(k) + 0.7 * i + 1.1 * t));
    }
    opt.step();
  }
}

bool same_parameter_values(nn::Module& a, nn::Module& b) {
  auto pa = a.named_parameters(), pb = b.named_parameters();
  if (pa.size() != pb.size()) return false;
  for (std::size_t i = 0; i < pa.size(); ++i)
    for (std::int64_t k = 0; k < pa[i].value->numel(); ++k)
      if ((*pa[i].value)[k] != (*pb[i].value)[k]) return false;
  return true;
}

using Make = std::function<std::unique_ptr<Optimizer>(nn::Module&)>;

}  // namespace optimizer_state_test

using namespace optimizer_state_test;

TEST_CASE("optimizer state: a resumed run ends with the uninterrupted run's weights",
          "[train][io]") {
  const std::pair<const char*, Make> kinds[] = {
      {"nesterov sgd",
       [](nn::Module& m) {
         return std::make_unique<Sgd>(
             m, SgdOptions{.lr = 0.05f, .momentum = 0.9f, .nesterov = true, .weight_decay = 1e-3f});
       }},
      {"adam", [](nn::Module& m) {
         return std::make_unique<Adam>(m, AdamOptions{.lr = 1e-2f, .weight_decay = 1e-3f});
       }}};
  for (const auto& [kind, make] : kinds) {
    INFO(kind);
    const auto file = test_dir("resume") / "partial.safetensors";
    auto whole = make_small_net();
    auto opt_whole = make(*whole);
    steps_with_fixed_grads(*opt_whole, *whole, 0, 6);

    auto first = make_small_net();
    auto opt_first = make(*first);
    steps_with_fixed_grads(*opt_first, *first, 0, 3);
    io::save_training_checkpoint(*first, *opt_first, file, {{"epoch", "3"}});

    auto resumed = make_small_net();
    auto opt_resumed = make(*resumed);
    const io::LoadReport r = io::load_training_checkpoint(*resumed, *opt_resumed, file);
    CHECK(r.unexpected.empty());
    CHECK(opt_resumed->steps() == 3);
    steps_with_fixed_grads(*opt_resumed, *resumed, 3, 3);
    CHECK(same_parameter_values(*whole, *resumed));

    // The weights alone (the state restarts) do not give the same run.
    auto weights_only = make_small_net();
    io::LoadOptions lo;
    lo.ignore = {"optimizer.*"};
    io::load_checkpoint(*weights_only, file, lo);
    auto opt_fresh = make(*weights_only);
    steps_with_fixed_grads(*opt_fresh, *weights_only, 3, 3);
    CHECK_FALSE(same_parameter_values(*whole, *weights_only));
  }
}

TEST_CASE("optimizer state: files that do not fit are refused and change nothing", "[train][io]") {
  const auto dir = test_dir("bad");
  auto net = make_small_net();
  Sgd sgd(*net, SgdOptions{.lr = 0.1f, .momentum = 0.9f});
  steps_with_fixed_grads(sgd, *net, 0, 2);
  io::save_training_checkpoint(*net, sgd, dir / "sgd.safetensors");
  io::save_checkpoint(*net, dir / "weights.safetensors");
  // Only the Linear's parameters trained: the conv and BN have no state.
  Sgd partial(*net, SgdOptions{.lr = 0.1f, .momentum = 0.9f},
              [](std::string_view n) { return n.starts_with("4."); });
  steps_with_fixed_grads(partial, *net, 0, 1);
  io::save_training_checkpoint(*net, partial, dir / "fc_only.safetensors");

  auto other = make_small_net();
  Sgd target(*other, SgdOptions{.lr = 0.1f, .momentum = 0.9f});
  steps_with_fixed_grads(target, *other, 0, 1);
  const Tensor<float> before = target.state("0.weight")->momentum_buffer;
  const auto unchanged = [&] {
    const Tensor<float>& now = target.state("0.weight")->momentum_buffer;
    for (std::int64_t k = 0; k < now.numel(); ++k)
      if (now[k] != before[k]) return false;
    return target.steps() == 1;
  };

  const auto open = [&](const char* name) { return io::SafetensorsFile::open(dir / name); };
  {
    auto f = open("weights.safetensors");
    CHECK_THROWS_WITH(io::load_optimizer_state(f, target),
                      Contains("weights.safetensors") && Contains("no optimizer state"));
  }
  {
    auto f = open("fc_only.safetensors");
    CHECK_THROWS_WITH(io::load_optimizer_state(f, target),
                      Contains("no optimizer state for parameter '0.weight'"));
  }
  {
    Adam adam(*other, AdamOptions{});
    auto f = open("sgd.safetensors");
    CHECK_THROWS_WITH(io::load_optimizer_state(f, adam),
                      Contains("optimizer state of 'sgd'") && Contains("'adam'"));
  }
  for (const char* steps : {"2x", "-1", "", "99999999999999999999"}) {
    io::SafetensorsWriter w = io::checkpoint_writer(*net);
    io::add_optimizer_state(w, sgd);
    w.set_metadata("optimizer.steps", steps);
    w.write(dir / "bad_steps.safetensors");
    auto f = open("bad_steps.safetensors");
    CHECK_THROWS_WITH(io::load_optimizer_state(f, target),
                      Contains("bad_steps.safetensors") &&
                          Contains(std::string("metadata 'optimizer.steps' is '") + steps +
                                   "', not a step count"));
  }
  CHECK(unchanged());
  {
    // A model whose Linear has another shape: the state no longer fits.
    auto wider = train_test::small_net(7, 5);
    Sgd s(*wider, SgdOptions{.lr = 0.1f, .momentum = 0.9f});
    auto f = open("sgd.safetensors");
    CHECK_THROWS_WITH(
        io::load_optimizer_state(f, s),
        Contains("'optimizer.4.weight.momentum_buffer' has shape") && Contains("(5, 4)"));
    CHECK(s.steps() == 0);
  }
  // The model's own loader refuses the state tensors unless told to skip them.
  CHECK_THROWS_WITH(io::load_checkpoint(*other, dir / "sgd.safetensors"), Contains("optimizer."));
  auto f = open("sgd.safetensors");
  io::load_optimizer_state(f, target);
  CHECK(target.steps() == 2);
  CHECK_FALSE(unchanged());
}

TEST_CASE("fit from FitOptions::first_epoch resumes a killed run exactly", "[train][io]") {
  // Shuffled, augmented batches and a warm-up + cosine schedule: the resumed
  // epochs see the same data in the same order at the same learning rates.
  Rng rng(11);
  data::ImageSet set;
  set.images = Tensor<std::uint8_t>(Shape{20, 8, 8, 3});
  for (auto& v : set.images.flat()) v = static_cast<std::uint8_t>(rng.below(256));
  set.labels = Tensor<std::int32_t>(Shape{20});
  for (auto& l : set.labels.flat()) l = static_cast<std::int32_t>(rng.below(3));
  set.classes = {"a", "b", "c"};
  auto images = std::make_shared<const data::ImageSet>(std::move(set));
  data::Augmentation aug;
  aug.pad = 2;
  aug.hflip = true;
  const auto file = test_dir("fit_resume") / "partial.safetensors";
  struct Killed {};

  // Runs `epochs` epochs from first_epoch (restoring `file` first when > 1);
  // with kill_after, saves `file` after that epoch and stops as if killed.
  const auto run = [&](int first_epoch, int kill_after) {
    auto net = make_small_net();
    Adam adam(*net, AdamOptions{.lr = 1e-2f, .weight_decay = 1e-3f});
    if (first_epoch > 1) io::load_training_checkpoint(*net, adam, file);
    data::LoaderOptions lo;
    lo.batch_size = 6;  // 4 batches, the last one short
    lo.seed = 5;
    data::DataLoader loader(
        std::make_shared<data::ImageDataset>(images, data::Normalization::unit(), aug), lo);
    CosineLr sched(1e-2f, 3 * loader.num_batches(), 2);
    nn::SoftmaxCrossEntropy ce;
    Trainer trainer(*net, ce, adam, Task::classification, &sched);
    FitOptions fo;
    fo.epochs = 3;
    fo.first_epoch = first_epoch;
    fo.log = nullptr;
    std::vector<int> epochs_run;
    fo.after_epoch = [&](const EpochReport& r) {
      epochs_run.push_back(r.epoch);
      if (r.epoch == kill_after) {
        io::save_training_checkpoint(*net, adam, file);
        throw Killed{};
      }
    };
    try {
      trainer.fit(loader, nullptr, fo);
    } catch (const Killed&) {
    }
    CHECK(trainer.global_step() == epochs_run.back() * loader.num_batches());
    return std::make_pair(std::move(net), epochs_run);
  };
  const auto whole = run(1, 0);
  CHECK(whole.second == std::vector<int>{1, 2, 3});
  for (const int killed_after : {1, 2}) {
    INFO("killed after epoch " << killed_after);
    CHECK(run(1, killed_after).second.back() == killed_after);
    const auto resumed = run(killed_after + 1, 0);
    CHECK(resumed.second.front() == killed_after + 1);
    CHECK(resumed.second.back() == 3);
    CHECK(same_parameter_values(*whole.first, *resumed.first));
  }
  // Resuming at the wrong epoch is another run.
  run(1, 1);
  const auto skipped = run(3, 0);  // epoch 1's end, resumed at epoch 3
  CHECK_FALSE(same_parameter_values(*whole.first, *skipped.first));

  auto net = make_small_net();
  Adam adam(*net, AdamOptions{});
  nn::SoftmaxCrossEntropy ce;
  Trainer trainer(*net, ce, adam, Task::classification);
  data::DataLoader loader(
      std::make_shared<data::ImageDataset>(images, data::Normalization::unit(), aug), {});
  FitOptions fo;
  fo.epochs = 3;
  for (const int bad : {0, 5}) {
    fo.first_epoch = bad;
    CHECK_THROWS_WITH(trainer.fit(loader, nullptr, fo),
                      Contains("FitOptions::first_epoch must be in [1, epochs + 1] = [1, 4], got " +
                               std::to_string(bad)));
  }
}
