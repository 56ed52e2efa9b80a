// Optimizer state in training checkpoints (io/optimizer_state.hpp): a run
// saved midway and resumed into a fresh model and optimizer ends with the
// very same weights as an uninterrupted one; without the state it does not;
// files that do not fit the optimizer are refused, changing nothing.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "compressor/io/optimizer_state.hpp"
#include "compressor/nn.hpp"
#include "compressor/train.hpp"

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

/// conv(3->4, no bias) BN ReLU pool Linear(4->3).
std::unique_ptr<nn::Sequential> make_small_net() {
  nn::init::manual_seed(7);
  auto net = std::make_unique<nn::Sequential>();
  net->emplace<nn::Conv2d>(3, 4, 3, 1, 1, false);
  net->emplace<nn::BatchNorm2d>(4);
  net->emplace<nn::ReLU>();
  net->emplace<nn::GlobalAvgPool2d>();
  net->emplace<nn::Linear>(4, 3);
  return net;
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
  CHECK(unchanged());
  {
    // A model whose Linear has another shape: the state no longer fits.
    nn::init::manual_seed(7);
    nn::Sequential wider;
    wider.emplace<nn::Conv2d>(3, 4, 3, 1, 1, false);
    wider.emplace<nn::BatchNorm2d>(4);
    wider.emplace<nn::ReLU>();
    wider.emplace<nn::GlobalAvgPool2d>();
    wider.emplace<nn::Linear>(4, 5);
    Sgd s(wider, SgdOptions{.lr = 0.1f, .momentum = 0.9f});
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
