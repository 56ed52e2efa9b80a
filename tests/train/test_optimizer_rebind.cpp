// Optimizers keyed by parameter name across model edits (Module::replace(),
// enable_bias()), and the Trainer's mode rules and hooks. The edits destroy
// the replaced modules at once, so under ASan any use of a pointer from an
// earlier binding is caught.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "compressor/nn.hpp"
#include "compressor/train.hpp"
#include "support/repeat_batch.hpp"
#include "support/test_util.hpp"

using namespace compressor;
using namespace compressor::train;

namespace {

/// conv(3->6, no bias) BN ReLU conv(6->6, no bias) BN ReLU pool Linear(6->4):
/// parameters 0.weight 1.weight 1.bias 3.weight 4.weight 4.bias 7.weight 7.bias.
std::unique_ptr<nn::Sequential> make_net(std::uint64_t seed = 1) {
  nn::init::manual_seed(seed);
  auto net = std::make_unique<nn::Sequential>();
  net->emplace<nn::Conv2d>(3, 6, 3, 1, 1, false);
  net->emplace<nn::BatchNorm2d>(6);
  net->emplace<nn::ReLU>();
  net->emplace<nn::Conv2d>(6, 6, 3, 1, 1, false);
  net->emplace<nn::BatchNorm2d>(6);
  net->emplace<nn::ReLU>();
  net->emplace<nn::GlobalAvgPool2d>();
  net->emplace<nn::Linear>(6, 4);
  return net;
}

/// A deterministic gradient per (parameter name, step), independent of the
/// parameter values and of the parameter's position in the model.
void fill_grads(nn::Module& m, int t) {
  for (auto& p : m.named_parameters()) {
    std::uint32_t h = 2166136261u;
    for (const char c : p.name) h = (h ^ static_cast<std::uint8_t>(c)) * 16777619u;
    const double phase = static_cast<double>(h % 997) * 0.01 + 1.3 * t;
    for (std::int64_t k = 0; k < p.grad->numel(); ++k)
      (*p.grad)[k] = static_cast<float>(0.5 * std::sin(0.37 * static_cast<double>(k) + phase));
  }
}

void take_steps(Optimizer& opt, nn::Module& m, int from, int count) {
  for (int t = from; t < from + count; ++t) {
    opt.zero_grad();
    fill_grads(m, t);
    opt.step();
  }
}

bool same_values(const Tensor<float>& a, const Tensor<float>& b) {
  if (!(a.shape() == b.shape())) return false;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

Tensor<float>& param(nn::Module& m, const std::string& name) {
  for (auto& p : m.named_parameters())
    if (p.name == name) return *p.value;
  throw std::logic_error("no parameter " + name);
}
Tensor<float>& grad(nn::Module& m, const std::string& name) {
  for (auto& p : m.named_parameters())
    if (p.name == name) return *p.grad;
  throw std::logic_error("no parameter " + name);
}

using MakeOptimizer = std::function<std::unique_ptr<Optimizer>(nn::Module&)>;

/// SGD with momentum and decay, Nesterov SGD, Adam with L2 decay, AdamW.
std::vector<std::pair<std::string, MakeOptimizer>> optimizers() {
  return {{"sgd momentum",
           [](nn::Module& m) {
             return std::make_unique<Sgd>(
                 m, SgdOptions{
                        .lr = 0.125f, .momentum = 0.9f, .dampening = 0.5f, .weight_decay = 1e-2f});
           }},
          {"sgd nesterov",
           [](nn::Module& m) {
             return std::make_unique<Sgd>(
                 m, SgdOptions{.lr = 0.05f, .momentum = 0.9f, .nesterov = true});
           }},
          {"adam",
           [](nn::Module& m) {
             return std::make_unique<Adam>(m, AdamOptions{.lr = 1e-2f, .weight_decay = 1e-2f});
           }},
          {"adamw", [](nn::Module& m) {
             return std::make_unique<AdamW>(m, AdamOptions{.lr = 1e-2f, .weight_decay = 1e-1f});
           }}};
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ValueError& e) {
    return e.what();
  }
  return "(no ValueError)";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("A same-shaped replacement keeps every parameter's state",
          "[train][optimizer][surgery]") {
  for (const auto& [label, make] : optimizers()) {
    INFO(label);
    auto a = make_net(), ref = make_net();
    auto opt = make(*a), ref_opt = make(*ref);
    take_steps(*opt, *a, 0, 3);
    take_steps(*ref_opt, *ref, 0, 3);
    // Same names, same shapes, same values: the state carries over to the
    // new tensors. The old modules are destroyed here (replace() returns them).
    (void)a->replace("7", a->find("7")->clone());
    (void)a->replace("3", a->find("3")->clone());
    take_steps(*opt, *a, 3, 4);
    take_steps(*ref_opt, *ref, 3, 4);
    const auto pa = a->named_parameters(), pr = ref->named_parameters();
    REQUIRE(pa.size() == pr.size());
    for (std::size_t i = 0; i < pa.size(); ++i) {
      INFO(pa[i].name);
      CHECK(same_values(*pa[i].value, *pr[i].value));  // bitwise: the state was kept
    }
    CHECK(opt->steps() == 7);
    REQUIRE(opt->state("7.weight") != nullptr);
    CHECK(opt->state("7.weight")->steps == 7);
    // parameters() is the current binding: the new modules' tensors.
    const auto bound = opt->parameters();
    REQUIRE(bound.size() == pa.size());
    for (std::size_t i = 0; i < pa.size(); ++i) CHECK(bound[i].value == pa[i].value);
  }
}

TEST_CASE("A replaced layer whose old module is destroyed is never touched",
          "[train][optimizer][surgery]") {
  // The old optimizer kept Tensor* into the replaced Linear: a use after free.
  auto net = make_net();
  Sgd sgd(*net, SgdOptions{.lr = 0.125f, .momentum = 0.9f});
  take_steps(sgd, *net, 0, 2);
  {
    auto old = net->replace("7", std::make_unique<nn::Linear>(6, 4));
    old.reset();  // freed: ASan reports any later read or write of it
  }
  const Tensor<float> before = param(*net, "7.weight");
  take_steps(sgd, *net, 2, 1);
  CHECK_FALSE(same_values(param(*net, "7.weight"), before));  // the new layer trains
  CHECK(sgd.state("7.weight")->steps == 3);                   // same name and shape: state kept
}

TEST_CASE("A reshaped parameter throws naming it until rebind()", "[train][optimizer][surgery]") {
  for (const auto& [label, make] : optimizers()) {
    INFO(label);
    auto net = make_net();
    auto opt = make(*net);
    take_steps(*opt, *net, 0, 3);
    (void)net->replace("7", std::make_unique<nn::Linear>(6, 5));  // head of 5 classes
    fill_grads(*net, 3);
    const std::string msg = message_of([&] { opt->step(); });
    INFO(msg);
    CHECK(contains(msg, "'7.weight' changed shape from (4, 6) to (5, 6)"));
    CHECK(contains(msg, "'7.bias'"));
    CHECK(contains(msg, "rebind()"));
    CHECK_FALSE(contains(msg, "'3.weight'"));
    CHECK_THROWS_AS(opt->zero_grad(), ValueError);
    CHECK(opt->steps() == 3);  // nothing was updated
    const Tensor<float> w0 = param(*net, "7.weight");
    CHECK(opt->state("7.weight")->steps == 3);  // the failed bind changed nothing

    opt->rebind();
    REQUIRE(opt->state("7.weight") != nullptr);
    CHECK(opt->state("7.weight")->steps == 0);  // reset
    CHECK(opt->state("7.weight")->shape == Shape({5, 6}));
    CHECK(opt->state("7.weight")->momentum_buffer.empty());
    CHECK(opt->state("7.weight")->exp_avg.empty());
    CHECK(opt->state("3.weight")->steps == 3);  // kept
    opt->zero_grad();
    fill_grads(*net, 3);
    const Tensor<float> g = grad(*net, "7.weight");
    opt->step();
    CHECK(opt->state("7.weight")->steps == 1);
    CHECK(opt->state("3.weight")->steps == 4);
    const Tensor<float>& w1 = param(*net, "7.weight");
    if (label == "sgd momentum") {
      // Fresh state: the first-step rule buf = g + wd*p (not (1 - dampening)
      // times it, as a zero buffer would give), p -= lr*buf.
      for (std::int64_t k = 0; k < w1.numel(); ++k) {
        const float d = g[k] + 1e-2f * w0[k];
        CHECK(w1[k] == Approx(w0[k] - 0.125f * d).epsilon(1e-6));
      }
    } else if (label == "adam") {
      // Fresh state and its own step count 1: |dp| is lr (bias-corrected m/sqrt(v)
      // = sign(g)); with the optimizer's count 4 it would be about 0.58 lr.
      for (std::int64_t k = 0; k < w1.numel(); ++k)
        CHECK(std::abs(w1[k] - w0[k]) == Approx(1e-2).epsilon(1e-3));
    }
  }
}

TEST_CASE("A removed parameter throws naming it; rebind() drops its state",
          "[train][optimizer][surgery]") {
  auto net = make_net();
  Adam adam(*net, AdamOptions{.lr = 1e-2f});
  take_steps(adam, *net, 0, 2);
  auto old = net->replace("7", std::make_unique<nn::Linear>(6, 4, /*bias=*/false));
  const std::string msg = message_of([&] { adam.step(); });
  INFO(msg);
  CHECK(contains(msg, "adam"));
  CHECK(contains(msg, "'7.bias' was removed"));
  CHECK(contains(msg, "rebind()"));
  CHECK_FALSE(contains(msg, "'7.weight'"));  // same name and shape: not a problem

  // Putting a biased layer back needs no rebind: nothing is lost.
  (void)net->replace("7", std::move(old));
  take_steps(adam, *net, 2, 1);
  CHECK(adam.state("7.bias")->steps == 3);

  (void)net->replace("7", std::make_unique<nn::Linear>(6, 4, false));
  CHECK_THROWS_AS(adam.zero_grad(), ValueError);
  adam.rebind();
  CHECK(adam.state("7.bias") == nullptr);
  take_steps(adam, *net, 3, 1);
  CHECK(adam.state("7.weight")->steps == 4);
  CHECK(adam.steps() == 4);
}

TEST_CASE("A new parameter joins with fresh state", "[train][optimizer][surgery]") {
  // SGD with momentum: the bias a conv gains (BN folding) starts with buf = g
  // (a zero buffer would give buf = (1 - dampening) g).
  auto net = make_net(), ref = make_net();
  const SgdOptions o{.lr = 0.125f, .momentum = 0.9f, .dampening = 0.5f};
  Sgd sgd(*net, o), ref_sgd(*ref, o);
  take_steps(sgd, *net, 0, 3);
  take_steps(ref_sgd, *ref, 0, 3);
  nn::as<nn::WeightedLayer>(*net->find("3"))->enable_bias();
  REQUIRE(sgd.state("3.bias") == nullptr);
  sgd.zero_grad();  // binds: no throw, 3.bias is new
  fill_grads(*net, 3);
  const Tensor<float> g = grad(*net, "3.bias");
  sgd.step();
  ref_sgd.zero_grad();
  fill_grads(*ref, 3);
  ref_sgd.step();
  REQUIRE(sgd.state("3.bias") != nullptr);
  CHECK(sgd.state("3.bias")->steps == 1);
  CHECK(sgd.state("3.weight")->steps == 4);
  const Tensor<float>& b = param(*net, "3.bias");
  for (std::int64_t k = 0; k < b.numel(); ++k) CHECK(b[k] == 0.f - 0.125f * g[k]);  // buf = g
  // Everything else went on exactly as without the edit.
  for (auto& p : ref->named_parameters()) {
    INFO(p.name);
    CHECK(same_values(param(*net, p.name), *p.value));
  }

  // Adam: the new parameter's bias correction counts its own steps (|dp| = lr).
  auto net2 = make_net();
  Adam adam(*net2, AdamOptions{.lr = 1e-2f});
  take_steps(adam, *net2, 0, 5);
  nn::as<nn::WeightedLayer>(*net2->find("0"))->enable_bias();
  take_steps(adam, *net2, 5, 1);
  CHECK(adam.state("0.bias")->steps == 1);
  for (const float v : param(*net2, "0.bias").flat())
    CHECK(std::abs(v) == Approx(1e-2).epsilon(1e-3));
}

TEST_CASE("A parameter filter trains only the selected parameters", "[train][optimizer]") {
  auto net = make_net();
  std::vector<std::pair<std::string, Tensor<float>>> before;
  for (auto& p : net->named_parameters()) before.emplace_back(p.name, *p.value);
  Adam adam(*net, AdamOptions{.lr = 1e-2f},
            [](std::string_view name) { return name.starts_with("7."); });
  CHECK(adam.parameters().size() == 2);
  take_steps(adam, *net, 0, 2);
  for (const auto& [name, value] : before) {
    INFO(name);
    CHECK(same_values(param(*net, name), value) == !name.starts_with("7."));
  }
  // Edits of parameters the filter leaves out are none of its business.
  (void)net->replace("3", std::make_unique<nn::Conv2d>(6, 6, 1));
  take_steps(adam, *net, 2, 1);
  CHECK(adam.state("7.weight")->steps == 3);

  SgdOptions sgd_o{.lr = 0.1f};
  CHECK_THROWS_AS(Sgd(*net, sgd_o, [](std::string_view) { return false; }), ValueError);
  AdamW adamw(*net, AdamOptions{}, [](std::string_view n) { return n.ends_with("weight"); });
  CHECK(adamw.name() == "adamw");
  CHECK(adamw.parameters().size() == 5);
}

// ---- Trainer ---------------------------------------------------------------

namespace {

using compressor::testing::RepeatBatch;

data::Batch random_batch(std::int64_t n, std::uint64_t seed) {
  Rng rng(seed);
  data::Batch b;
  b.inputs = compressor::testing::random_tensor(Shape{n, 6, 6, 3}, rng);
  b.labels = Tensor<std::int32_t>(Shape{n});
  for (std::int64_t i = 0; i < n; ++i) b.labels[i] = static_cast<std::int32_t>(i % 4);
  return b;
}

/// Each module's own training flag, by name.
std::vector<std::pair<std::string, bool>> modes_of(nn::Module& m) {
  return m.save_modes();
}

/// An identity layer that records the whole model's modes at each forward.
class ModeProbe : public nn::Module {
 public:
  explicit ModeProbe(nn::Module* root) : root_(root) {}
  std::string_view type_name() const override { return "ModeProbe"; }
  std::vector<std::vector<std::pair<std::string, bool>>> seen;

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    seen.push_back(root_->save_modes());
    return x;
  }
  TensorView<const float> backward_impl(TensorView<const float> g) override { return g; }

 private:
  nn::Module* root_;
};

bool all_modes(const std::vector<std::pair<std::string, bool>>& modes, bool on) {
  for (const auto& [name, m] : modes)
    if (m != on) return false;
  return true;
}

}  // namespace

TEST_CASE("after_step runs once per step however step() is driven", "[train][surgery]") {
  auto net = make_net();
  nn::SoftmaxCrossEntropy ce;
  Sgd sgd(*net, SgdOptions{.lr = 0.05f});
  Trainer trainer(*net, ce, sgd, Task::classification);
  std::vector<std::int64_t> trainer_hook, fit_hook;
  trainer.add_after_step([&] { trainer_hook.push_back(sgd.steps()); });
  const auto batch = random_batch(4, 1);

  // The caller drives step().
  for (int i = 0; i < 3; ++i) trainer.step(batch);
  CHECK(trainer_hook == std::vector<std::int64_t>{1, 2, 3});

  // fit() drives it: the trainer's hook and FitOptions::after_step, once each.
  RepeatBatch src(batch, 2);
  FitOptions fo;
  fo.epochs = 2;
  fo.log = nullptr;
  fo.after_step = [&] { fit_hook.push_back(trainer.global_step()); };
  trainer.fit(src, nullptr, fo);
  CHECK(trainer_hook == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7});
  CHECK(fit_hook == std::vector<std::int64_t>{4, 5, 6, 7});

  // train_epoch() runs o.after_step once per step too; afterwards step() does not.
  trainer.train_epoch(src, 1, fo);
  CHECK(fit_hook.size() == 6);
  trainer.step(batch);
  CHECK(fit_hook.size() == 6);
  CHECK(trainer_hook.size() == 10);
  CHECK_THROWS_AS(trainer.add_after_step({}), ValueError);

  // The optimizer must train this model (or a part of it).
  auto other = make_net();
  Sgd other_sgd(*other, SgdOptions{});
  CHECK_THROWS_AS(Trainer(*net, ce, other_sgd, Task::classification), ValueError);
  Sgd head_sgd(*net->find("7"), SgdOptions{});
  CHECK_NOTHROW(Trainer(*net, ce, head_sgd, Task::classification));
}

TEST_CASE("before_update runs after backward and before the update", "[train][surgery]") {
  auto net = make_net();
  nn::SoftmaxCrossEntropy ce;
  Sgd sgd(*net, SgdOptions{.lr = 0.05f, .momentum = 0.9f});
  Trainer trainer(*net, ce, sgd, Task::classification);
  std::vector<std::int64_t> when;
  bool grad_was_set = true;
  trainer.add_before_update([&] {
    when.push_back(sgd.steps());
    Tensor<float>& g = grad(*net, "3.weight");
    bool nonzero = false;
    for (const float v : g.flat()) nonzero = nonzero || v != 0.f;
    grad_was_set = grad_was_set && nonzero;  // backward has run
    g.fill(0.f);                             // masked: 3.weight must not move
  });
  const Tensor<float> masked = param(*net, "3.weight"), other = param(*net, "0.weight");
  const auto batch = random_batch(4, 2);
  for (int i = 0; i < 3; ++i) trainer.step(batch);
  CHECK(when == std::vector<std::int64_t>{0, 1, 2});  // before each update
  CHECK(grad_was_set);
  CHECK(same_values(param(*net, "3.weight"), masked));
  CHECK_FALSE(same_values(param(*net, "0.weight"), other));
}

TEST_CASE("fit and evaluate give every module its own mode back", "[train][surgery]") {
  auto net = make_net();
  auto& probe = net->add("probe", std::make_unique<ModeProbe>(net.get()));
  nn::SoftmaxCrossEntropy ce;
  Adam adam(*net, AdamOptions{.lr = 1e-3f});
  Trainer trainer(*net, ce, adam, Task::classification);
  RepeatBatch train_src(random_batch(4, 3), 2), val_src(random_batch(4, 4), 1);
  FitOptions fo;
  fo.epochs = 1;
  fo.log = nullptr;

  // One sub-module in eval, the rest training.
  net->train();
  net->find("4")->eval();
  const auto before = modes_of(*net);
  REQUIRE_FALSE(all_modes(before, true));
  trainer.fit(train_src, &val_src, fo);
  CHECK(modes_of(*net) == before);
  // During fit: training steps all in training mode, validation all in eval.
  REQUIRE(probe.seen.size() == 3);
  CHECK(all_modes(probe.seen[0], true));
  CHECK(all_modes(probe.seen[1], true));
  CHECK(all_modes(probe.seen[2], false));

  probe.seen.clear();
  (void)trainer.evaluate(val_src);
  CHECK(modes_of(*net) == before);
  REQUIRE(probe.seen.size() == 1);
  CHECK(all_modes(probe.seen[0], false));

  // A model in eval mode stays there; step() itself does not switch modes.
  net->eval();
  trainer.fit(train_src, nullptr, fo);
  CHECK(all_modes(modes_of(*net), false));
  probe.seen.clear();
  trainer.step(random_batch(4, 5));
  CHECK(all_modes(probe.seen.at(0), false));

  // Also when fit() throws.
  net->train();
  net->find("1")->eval();
  const auto before_throw = modes_of(*net);
  fo.after_step = [] { throw std::runtime_error("stop"); };
  CHECK_THROWS_AS(trainer.fit(train_src, nullptr, fo), std::runtime_error);
  CHECK(modes_of(*net) == before_throw);
}

TEST_CASE("A frozen BatchNorm keeps its running statistics through fit", "[train][surgery]") {
  auto net = make_net();
  nn::SoftmaxCrossEntropy ce;
  Sgd sgd(*net, SgdOptions{.lr = 0.05f});
  Trainer trainer(*net, ce, sgd, Task::classification);
  auto* frozen = nn::as<nn::Normalization>(*net->find("1"));
  auto* live = nn::as<nn::Normalization>(*net->find("4"));
  net->find("1")->freeze();
  const Tensor<float> mean = frozen->running_mean(), var = frozen->running_var();
  const Tensor<float> live_mean = live->running_mean();
  const Tensor<float> gamma = frozen->weight();
  RepeatBatch src(random_batch(4, 6), 3);
  FitOptions fo;
  fo.log = nullptr;
  trainer.fit(src, nullptr, fo);
  CHECK(same_values(frozen->running_mean(), mean));
  CHECK(same_values(frozen->running_var(), var));
  CHECK_FALSE(same_values(live->running_mean(), live_mean));  // the other one does update
  CHECK_FALSE(same_values(frozen->weight(), gamma));          // gamma still trains
  CHECK(net->find("1")->is_frozen());
}

namespace {
/// Not a Module: logits that put sample i in class i % 4.
struct FixedClassifier {
  Tensor<float> out;
  int calls = 0;
  TensorView<const float> forward(TensorView<const float> x) {
    ++calls;
    out = Tensor<float>(Shape{x.dim(0), 4}, 0.f);
    for (std::int64_t i = 0; i < x.dim(0); ++i) out[i * 4 + i % 4] = 5.f;
    return out;
  }
};
}  // namespace

static_assert(FloatModel<FixedClassifier>);
static_assert(FloatModel<nn::Module>);
static_assert(FloatModel<nn::Sequential>);
static_assert(!FloatModel<int>);
static_assert(!FloatModel<Tensor<float>>);

TEST_CASE("evaluate() takes any model with a float forward", "[train][surgery]") {
  FixedClassifier model;
  nn::SoftmaxCrossEntropy ce;
  RepeatBatch src(random_batch(8, 7), 3);
  const Metrics m = train::evaluate(model, ce, Task::classification, src);
  CHECK(model.calls == 3);
  CHECK(m.samples == 24);
  CHECK(m.accuracy == 1.0);
  // log(1 + 3 e^-5): the cross-entropy of a logit margin of 5 over 4 classes.
  CHECK(m.loss == Approx(std::log(1.0 + 3.0 * std::exp(-5.0))).epsilon(1e-5));
  const Metrics again = Trainer::evaluate(model, ce, Task::classification, src);
  CHECK(again.accuracy == 1.0);
  CHECK(model.calls == 6);

  // An nn::Module through the same template: evaluated in eval mode.
  auto net = make_net();
  net->train();
  auto* bn = nn::as<nn::Normalization>(*net->find("1"));
  const Tensor<float> mean = bn->running_mean();
  (void)train::evaluate(*net, ce, Task::classification, src);
  CHECK(same_values(bn->running_mean(), mean));  // eval: statistics untouched
  CHECK(net->is_training());
}
