// Structured (channel) pruning: dependency groups traced from CifarCnn,
// ResNet18 and EfRegressor; a pruned model equals the original with the
// removed channels zeroed (weights, BN gamma and beta); parameters and MACs
// follow the formula; the pruned model saves, reloads from its plan, trains
// and passes the gradient check; errors name the option or group.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <compressor/io/checkpoint.hpp>
#include <compressor/models.hpp>
#include <compressor/nn.hpp>
#include <compressor/prune/channel.hpp>
#include <compressor/prune/report.hpp>
#include <compressor/train/optimizer.hpp>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "prune/prune_test_util.hpp"
#include "surgery/surgery_test_util.hpp"

using namespace compressor;
using compressor::testing::random_tensor;
using compressor::testing::randomize_batchnorms;
using compressor::testing::rel_to_max;
using compressor::testing::temp_path;

namespace {

std::unique_ptr<models::CifarCnn> small_cnn() {
  nn::ChannelPlan p = models::CifarCnn::default_plan();
  p.set("features.0", 8);
  p.set("features.4", 16);
  p.set("features.8", 16);
  p.set("features.12", 32);
  return std::make_unique<models::CifarCnn>(p);
}

const prune::ChannelGroup* group_of(const std::vector<prune::ChannelGroup>& gs,
                                    const std::string& producer) {
  for (const auto& g : gs)
    if (std::find(g.producers.begin(), g.producers.end(), producer) != g.producers.end()) return &g;
  return nullptr;
}

std::set<std::string> as_set(const std::vector<std::string>& v) {
  return {v.begin(), v.end()};
}
std::set<std::string> consumer_set(const prune::ChannelGroup& g) {
  std::set<std::string> s;
  for (const auto& c : g.consumers) s.insert(c.layer);
  return s;
}

/// In `zeroed`: the removed channels' producer rows (and bias), and their BN
/// gamma and beta, set to 0; computed independently of the pruning code.
void zero_removed(nn::Module& zeroed, const std::vector<prune::GroupDecision>& ds) {
  for (const auto& d : ds) {
    std::vector<std::int64_t> drop;
    for (std::int64_t c = 0; c < d.group.channels; ++c)
      if (std::find(d.keep.begin(), d.keep.end(), c) == d.keep.end()) drop.push_back(c);
    for (const auto& p : d.group.producers) {
      auto& w = *nn::as<nn::WeightedLayer>(*zeroed.find(p));
      const std::int64_t per = w.weight().numel() / w.out_channels();
      for (const auto c : drop) {
        std::fill_n(w.weight().data() + c * per, per, 0.f);
        if (w.has_bias()) w.bias().data()[c] = 0.f;
      }
    }
    for (const auto& n : d.group.norms) {
      auto& bn = *nn::as<nn::Normalization>(*zeroed.find(n));
      for (const auto c : drop) bn.weight().data()[c] = bn.bias().data()[c] = 0.f;
    }
  }
}

/// Prunes a copy of model with o; checks that it equals the zeroed original in
/// eval mode on x and that every group lost channels; returns the pruned copy.
std::unique_ptr<nn::Module> prune_and_compare(nn::Module& model, const prune::ChannelOptions& o,
                                              const Tensor<float>& x) {
  auto pruned = model.clone();
  auto zeroed = model.clone();
  const auto ds = prune::prune_channels(*pruned, o);
  for (const auto& d : ds) {
    INFO(d.group.name());
    CHECK(d.removed() > 0);
  }
  zero_removed(*zeroed, ds);
  pruned->eval();
  zeroed->eval();
  model.eval();
  const Tensor<float> a(pruned->forward(x)), b(zeroed->forward(x)), full(model.forward(x));
  CHECK(rel_to_max(a, b) < 1e-5);
  CHECK(rel_to_max(full, b) > 1e-3);  // the zeroing changed something: the comparison can fail
  CHECK(pruned->num_parameters() < model.num_parameters());
  return pruned;
}

}  // namespace

TEST_CASE("channel groups are traced from the model", "[prune][channel]") {
  nn::init::manual_seed(1);
  SECTION("CifarCnn: conv -> BN -> next conv; the head's output is never pruned") {
    auto m = small_cnn();
    const auto gs = prune::channel_groups(*m);
    const auto* g = group_of(gs, "features.4");
    REQUIRE(g != nullptr);
    CHECK(g->prunable());
    CHECK_FALSE(g->residual);
    CHECK(g->channels == 16);
    CHECK(as_set(g->norms) == std::set<std::string>{"features.5"});
    CHECK(consumer_set(*g) == std::set<std::string>{"features.8"});
    CHECK(consumer_set(*group_of(gs, "features.12")) == std::set<std::string>{"fc"});
    CHECK_FALSE(group_of(gs, "fc")->prunable());
    CHECK_FALSE(gs.front().prunable());  // the input
    CHECK(consumer_set(gs.front()) == std::set<std::string>{"features.0"});
  }
  SECTION("ResNet18: a stage's residual channels are one group") {
    models::ResNet18 m({.num_classes = 10, .width = 0.25});
    const auto gs = prune::channel_groups(m);
    const auto* stem = group_of(gs, "conv1");
    REQUIRE(stem != nullptr);
    CHECK(stem->residual);
    CHECK(as_set(stem->producers) ==
          std::set<std::string>{"conv1", "layer1.0.conv2", "layer1.1.conv2"});
    CHECK(as_set(stem->norms) == std::set<std::string>{"bn1", "layer1.0.bn2", "layer1.1.bn2"});
    CHECK(consumer_set(*stem) == std::set<std::string>{"layer1.0.conv1", "layer1.1.conv1",
                                                       "layer2.0.conv1", "layer2.0.downsample.0"});
    const auto* l2 = group_of(gs, "layer2.0.downsample.0");
    REQUIRE(l2 != nullptr);
    CHECK(as_set(l2->producers) ==
          std::set<std::string>{"layer2.0.downsample.0", "layer2.0.conv2", "layer2.1.conv2"});
    CHECK(as_set(l2->norms) ==
          std::set<std::string>{"layer2.0.downsample.1", "layer2.0.bn2", "layer2.1.bn2"});
    const auto* inner = group_of(gs, "layer3.1.conv1");
    REQUIRE(inner != nullptr);
    CHECK_FALSE(inner->residual);
    CHECK(as_set(inner->norms) == std::set<std::string>{"layer3.1.bn1"});
    CHECK(consumer_set(*inner) == std::set<std::string>{"layer3.1.conv2"});
    CHECK(consumer_set(*group_of(gs, "layer4.1.conv2")).count("fc") == 1);
  }
  SECTION("EfRegressor with mean+max+min pooling: the head reads each feature 3 times") {
    models::EfRegressor m({.width = 0.25, .pool = nn::TemporalPoolMode::mean_max_min});
    const auto gs = prune::channel_groups(m);
    const auto* last = group_of(gs, "backbone.layer4.1.conv2");
    REQUIRE(last != nullptr);
    CHECK(last->prunable());
    bool head = false;
    for (const auto& c : last->consumers)
      if (c.layer == "head") {
        head = true;
        CHECK(c.repeat == 3);
      }
    CHECK(head);
    CHECK_FALSE(group_of(gs, "head")->prunable());
  }
}

TEST_CASE("a channel-pruned model equals the original with the removed channels zeroed",
          "[prune][channel]") {
  nn::init::manual_seed(2);
  Rng rng(2);
  SECTION("CifarCnn, L1, per layer") {
    auto m = small_cnn();
    randomize_batchnorms(*m, rng);
    const auto x = random_tensor(Shape{2, 16, 16, 3}, rng);
    prune_and_compare(*m, {.ratio = 0.5}, x);
    prune_and_compare(*m, {.ratio = 0.3, .criterion = prune::ChannelCriterion::l2}, x);
    prune_and_compare(*m, {.ratio = 0.6, .scope = prune::Scope::global}, x);
  }
  SECTION("ResNet18, block-internal channels (the default) and residual groups") {
    models::ResNet18 m({.num_classes = 10, .width = 0.25});
    randomize_batchnorms(m, rng);
    const auto x = random_tensor(Shape{1, 32, 32, 3}, rng);
    auto inner = prune_and_compare(m, {.ratio = 0.5}, x);
    // Internal only: every block output keeps its width.
    CHECK(nn::as<nn::WeightedLayer>(*inner->find("layer1.0.conv2"))->out_channels() == 16);
    CHECK(nn::as<nn::WeightedLayer>(*inner->find("layer1.0.conv1"))->out_channels() == 8);
    auto grouped = prune_and_compare(m,
                                     {.ratio = 0.5,
                                      .criterion = prune::ChannelCriterion::bn_gamma,
                                      .residual = prune::ResidualPolicy::grouped},
                                     x);
    CHECK(nn::as<nn::WeightedLayer>(*grouped->find("conv1"))->out_channels() == 8);
    CHECK(nn::as<nn::WeightedLayer>(*grouped->find("layer1.1.conv2"))->out_channels() == 8);
  }
  SECTION("EfRegressor with mean+max+min pooling, residual groups pruned") {
    models::EfRegressor m({.width = 0.25, .pool = nn::TemporalPoolMode::mean_max_min});
    randomize_batchnorms(m, rng);
    const auto x = random_tensor(Shape{1, 2, 32, 32, 3}, rng);
    auto p = prune_and_compare(m, {.ratio = 0.25, .residual = prune::ResidualPolicy::grouped}, x);
    auto& head = *nn::as<nn::WeightedLayer>(*p->find("head"));
    CHECK(head.in_channels() == 3 * 96);  // 128 features, 32 removed, 3 columns each
  }
}

TEST_CASE("parameters and MACs of a pruned model follow the formula", "[prune][channel][report]") {
  nn::init::manual_seed(3);
  auto m = small_cnn();
  const auto dense = prune::report(*m, Shape{1, 16, 16, 3});
  prune::prune_channels(*m, {.ratio = 0.5});
  const auto r = prune::report(*m, Shape{1, 16, 16, 3});
  // 8-16-16-32 -> 4-8-8-16; conv b runs at (16 / 2^b)^2 positions; fc 16 -> 10.
  const std::int64_t c[5] = {3, 4, 8, 8, 16};
  std::int64_t params = 16 * 10 + 10, macs = 16 * 10;
  for (int b = 0; b < 4; ++b) {
    params += 9 * c[b] * c[b + 1] + 2 * c[b + 1];
    const std::int64_t hw = 16 >> b;
    macs += hw * hw * 9 * c[b] * c[b + 1];
  }
  CHECK(r.parameters == params);
  CHECK(m->num_parameters() == params);
  CHECK(r.macs == macs);
  CHECK(dense.macs > 3 * r.macs);
  CHECK(r.nonzero_macs <= r.macs);
  CHECK(r.find("features.4")->weight_shape == Shape{8, 3, 3, 4});
  const std::string table = prune::format_report(r);
  CHECK(table.find("features.4") != std::string::npos);
  CHECK(table.find("total: " + std::to_string(params) + " parameters") != std::string::npos);
  int runs = 0;
  const auto lat = prune::measure_latency([&] { ++runs; }, 5, 2);
  CHECK(runs == 7);
  CHECK(lat.threads == num_threads());
  CHECK(lat.min_ms <= lat.median_ms);

  SECTION("ResNet18 internal-only: only block convs change, per layer by their weights") {
    models::ResNet18 net({.num_classes = 10, .width = 0.25});
    const auto before = prune::report(net, Shape{1, 32, 32, 3});
    prune::prune_channels(net, {.ratio = 0.5});
    const auto after = prune::report(net, Shape{1, 32, 32, 3});
    for (const auto& l : after.layers) {
      const auto* d = before.find(l.name);
      REQUIRE(d != nullptr);
      CHECK(l.macs == d->macs / d->weights * l.weights);  // same positions, fewer weights
      const bool block_conv = l.name.find(".conv") != std::string::npos;
      CHECK((l.weights < d->weights) == block_conv);
    }
  }
}

TEST_CASE("channel pruning options: round_to, global ratio, BN gamma", "[prune][channel]") {
  nn::init::manual_seed(4);
  SECTION("kept channels rounded up to a multiple") {
    models::ResNet18 net({.num_classes = 10, .width = 0.5});
    const auto ds = prune::prune_channels(net, {.ratio = 0.7, .round_to = 16});
    for (const auto& d : ds) {
      INFO(d.group.name());
      const auto k = static_cast<std::int64_t>(d.keep.size());
      CHECK((k % 16 == 0 || k == d.group.channels));
      CHECK(k >= d.group.channels - std::llround(0.7 * double(d.group.channels)));
    }
  }
  SECTION("global: round(ratio * total) channels go, each group keeps one") {
    auto m = small_cnn();
    const auto ds = prune::prune_channels(*m, {.ratio = 0.5, .scope = prune::Scope::global});
    std::int64_t removed = 0;
    for (const auto& d : ds) {
      removed += d.removed();
      CHECK(!d.keep.empty());
    }
    CHECK(removed == 36);  // half of 8 + 16 + 16 + 32
  }
  SECTION("BN gamma: the channels of smallest |gamma| go") {
    auto m = small_cnn();
    auto& bn = *nn::as<nn::Normalization>(*m->find("features.1"));
    bn.weight().fill(1.f);
    bn.weight().data()[1] = 0.01f;
    bn.weight().data()[6] = -0.02f;
    prune::ChannelOptions o{.ratio = 0.25, .criterion = prune::ChannelCriterion::bn_gamma};
    o.layers.include = {"features.0"};
    const auto ds = prune::plan_channel_pruning(*m, o);
    REQUIRE(ds.size() == 1);
    CHECK(ds[0].keep == std::vector<std::int64_t>{0, 2, 3, 4, 5, 7});
  }
}

TEST_CASE("a pruned model saves, reloads from its plan and trains", "[prune][channel][io]") {
  nn::init::manual_seed(5);
  Rng rng(5);
  SECTION("ResNet18") {
    models::ResNet18 net({.num_classes = 10, .width = 0.25});
    randomize_batchnorms(net, rng);
    train::Sgd sgd(net, {.lr = 0.01f, .momentum = 0.9f});
    prune::prune_channels(net, {.ratio = 0.5, .residual = prune::ResidualPolicy::grouped});
    CHECK_THROWS_WITH(sgd.step(), Catch::Contains("rebind()"));
    sgd.rebind();  // the pruned shapes start afresh
    const auto path = temp_path("resnet_pruned.safetensors");
    const auto bytes = prune::saved_size(net, path);
    CHECK(bytes == static_cast<std::int64_t>(std::filesystem::file_size(path)));
    auto loaded = io::load_model<models::ResNet18>(path);
    CHECK(loaded->channel_plan().to_json() == net.channel_plan().to_json());
    net.eval();
    loaded->eval();
    const auto x = random_tensor(Shape{1, 32, 32, 3}, rng);
    const Tensor<float> a(net.forward(x)), b(loaded->forward(x));
    CHECK(compressor::testing::bit_equal(a, b));
    // It trains: one SGD step changes the loss's parameters and stays finite.
    loaded->train();
    train::Sgd opt(*loaded, {.lr = 0.01f});
    const Tensor<float> y(loaded->forward(random_tensor(Shape{2, 32, 32, 3}, rng)));
    loaded->zero_grad();
    (void)loaded->backward(random_tensor(y.shape(), rng));
    opt.step();
    for (auto& p : loaded->named_parameters())
      for (const float v : p.value->flat()) REQUIRE(std::isfinite(v));
  }
  SECTION("EfRegressor") {
    models::EfRegressor ef({.width = 0.25, .pool = nn::TemporalPoolMode::mean_max_min});
    prune::prune_channels(ef, {.ratio = 0.5, .residual = prune::ResidualPolicy::grouped});
    const auto path = temp_path("ef_pruned.safetensors");
    io::save_checkpoint(ef, path);
    auto loaded = io::load_model<models::EfRegressor>(path);
    ef.eval();
    loaded->eval();
    const auto x = random_tensor(Shape{1, 2, 32, 32, 3}, rng);
    const Tensor<float> a(ef.forward(x)), b(loaded->forward(x));
    CHECK(compressor::testing::bit_equal(a, b));
  }
}

TEST_CASE("a pruned network passes the gradient check", "[prune][channel][gradcheck]") {
  nn::init::manual_seed(6);
  Rng rng(6);
  nn::Sequential net;
  net.emplace<nn::Conv2d>(3, 6, 3, 1, 1, false);
  net.emplace<nn::BatchNorm2d>(6);
  net.emplace<nn::ReLU>();
  net.emplace<nn::MaxPool2d>(2);
  net.emplace<nn::BasicBlock>(6, 6, 1);
  net.emplace<nn::BasicBlock>(6, 8, 2);
  net.emplace<nn::GlobalAvgPool2d>();
  net.emplace<nn::Flatten>();
  net.emplace<nn::Linear>(8, 3);
  const auto ds =
      prune::prune_channels(net, {.ratio = 0.5, .residual = prune::ResidualPolicy::grouped});
  CHECK(ds.size() == 4);  // stem+block 1, block 1 inner, block 2 inner, block 2 output
  CHECK(nn::as<nn::WeightedLayer>(*net.find("8"))->in_channels() == 4);
  nn::GradCheckOptions o;
  o.max_elements = 8;
  const auto rep = nn::gradcheck(net, random_tensor(Shape{3, 8, 8, 3}, rng), o);
  INFO(rep.summary());
  CHECK(rep.ok);
}

TEST_CASE("bad channel pruning input: clear errors naming the option or group",
          "[prune][channel]") {
  nn::init::manual_seed(7);
  auto m = small_cnn();
  for (const double r : {-0.5, 1.0}) {
    CHECK_THROWS_AS(prune::plan_channel_pruning(*m, {.ratio = r}), ValueError);
    CHECK_THROWS_WITH(prune::plan_channel_pruning(*m, {.ratio = r}),
                      Catch::Contains("ChannelOptions::ratio must be in [0, 1)"));
  }
  CHECK_THROWS_WITH(prune::plan_channel_pruning(*m, {.ratio = 0.95}),
                    Catch::Contains("would remove every one of the 8 channels of 'features.0'"));
  prune::ChannelOptions o;
  o.layers.include = {"features.9*"};
  CHECK_THROWS_WITH(prune::plan_channel_pruning(*m, o),
                    Catch::Contains("include pattern 'features.9*' matches no layer"));
  o.layers.include = {};
  o.layer_ratios = {{"layer1.*", 0.2}};
  CHECK_THROWS_WITH(prune::plan_channel_pruning(*m, o),
                    Catch::Contains("layer_ratios pattern 'layer1.*' matches no layer"));
  o.layer_ratios = {{"features.0", 1.0}};
  CHECK_THROWS_WITH(prune::plan_channel_pruning(*m, o),
                    Catch::Contains("ChannelOptions::layer_ratios['features.0']"));
  CHECK_THROWS_WITH(prune::plan_channel_pruning(*m, {.round_to = 0}),
                    Catch::Contains("round_to must be >= 1"));
  // Only the head selected: its output is the model's and is never pruned.
  prune::ChannelOptions head;
  head.layers.include = {"fc"};
  CHECK_THROWS_WITH(prune::plan_channel_pruning(*m, head), Catch::Contains("no group"));
  // A non-finite filter norm cannot be ranked.
  nn::as<nn::WeightedLayer>(*m->find("features.4"))->weight().data()[0] = NAN;
  CHECK_THROWS_WITH(prune::plan_channel_pruning(*m, {}),
                    Catch::Contains("channel 0 of the group of 'features.4' has a non-finite"));
  // BN gamma without a BatchNorm.
  nn::Sequential plain;
  plain.emplace<nn::Conv2d>(3, 4, 3, 1, 1, false);
  plain.emplace<nn::ReLU>();
  plain.emplace<nn::Conv2d>(4, 2, 1, 1, 0, false);
  CHECK_THROWS_WITH(
      prune::plan_channel_pruning(plain, {.criterion = prune::ChannelCriterion::bn_gamma}),
      Catch::Contains("the group of '0' has no normalisation"));
}
