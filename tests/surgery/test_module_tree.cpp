// The editable module tree: deep copies, replace() with modes, output hooks,
// freezing, capabilities, quantization points, gradient checks through the
// new named modules. Includes the umbrella header on purpose.
#include <catch2/catch.hpp>
#include <compressor/compressor.hpp>
#include <set>
#include <string>
#include <vector>

#include "surgery/surgery_test_util.hpp"

using namespace compressor;
using namespace compressor::models;
using compressor::testing::bit_equal;
using compressor::testing::random_tensor;
using compressor::testing::randomize_batchnorms;

namespace {

ResNetOptions small_resnet() {
  ResNetOptions o;
  o.width = 0.125;
  o.num_classes = 7;
  return o;
}

/// Names and shapes of every parameter and buffer.
std::vector<std::pair<std::string, Shape>> state_shapes(nn::Module& m) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.name, p.value->shape());
  for (const auto& b : m.named_buffers())
    out.emplace_back(
        b.name, io::detail::dispatch_dtype(b.dtype, [&]<class T>() { return b.as<T>().shape(); }));
  return out;
}

/// Multiplies its input by 2: a stand-in for a fake-quant output hook.
class Doubler : public nn::Module {
 public:
  int calls = 0;
  std::string_view type_name() const override { return "Doubler"; }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    ++calls;
    out_ = Tensor<float>(x);
    for (auto& v : out_.flat()) v *= 2.f;
    return out_;
  }
  TensorView<const float> backward_impl(TensorView<const float> g) override {
    grad_ = Tensor<float>(g);
    for (auto& v : grad_.flat()) v *= 2.f;
    return grad_;
  }
  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<Doubler>(); }

 private:
  Tensor<float> out_, grad_;
};

}  // namespace

TEST_CASE("clone() makes an independent deep copy with identical outputs", "[surgery][clone]") {
  Rng rng(1);
  nn::init::manual_seed(3);
  std::vector<std::unique_ptr<nn::Module>> models;
  models.push_back(std::make_unique<CifarCnn>());
  models.push_back(std::make_unique<ResNet18>(small_resnet()));
  models.push_back(std::make_unique<EfRegressor>(
      EfRegressorOptions{.width = 0.125, .pool = nn::TemporalPoolMode::mean_max_min}));
  for (auto& m : models) {
    INFO(m->type_name());
    randomize_batchnorms(*m, rng);
    const bool clip = m->type_name() == "EfRegressor";
    const Tensor<float> x = random_tensor(clip ? Shape{2, 3, 32, 32, 3} : Shape{3, 32, 32, 3}, rng);
    m->eval();
    const Tensor<float> before(m->forward(x));

    const Rng gen_before = nn::init::generator();
    auto copy = m->clone();
    const Rng gen_after = nn::init::generator();
    CHECK(Rng(gen_before)() == Rng(gen_after)());  // no draws

    CHECK(copy->type_name() == m->type_name());
    const nn::Module &c = *copy, &o = *m;
    CHECK(typeid(c) == typeid(o));
    CHECK(state_shapes(*copy) == state_shapes(*m));
    CHECK_FALSE(copy->is_training());
    CHECK(bit_equal(copy->forward(x), before));

    // Train-mode outputs agree too (batch statistics, same kernels).
    m->train();
    copy->train();
    const Tensor<float> train_out(m->forward(x));
    CHECK(bit_equal(copy->forward(x), train_out));
    // (which moved both models' running statistics the same way)
    m->eval();
    copy->eval();
    const Tensor<float> after(m->forward(x));
    CHECK(bit_equal(copy->forward(x), after));

    // Independent: changing the copy leaves the original alone.
    auto pc = copy->named_parameters();
    auto po = m->named_parameters();
    REQUIRE(pc.size() == po.size());
    for (std::size_t i = 0; i < pc.size(); ++i) {
      CHECK(pc[i].value != po[i].value);
      CHECK(pc[i].value->data() != po[i].value->data());
      CHECK(bit_equal(*pc[i].value, *po[i].value));
    }
    for (auto& v : pc.front().value->flat()) v += 1.f;
    CHECK(bit_equal(m->forward(x), after));
    CHECK_FALSE(bit_equal(copy->forward(x), after));
  }
}

TEST_CASE("clone() copies modes, frozen flags, input-gradient switches and hooks",
          "[surgery][clone]") {
  ResNet18 net(small_resnet());
  net.find("layer2")->eval();
  net.find("layer1.0.bn1")->freeze();
  net.find("layer3.0.relu")->set_output_hook(std::make_unique<Doubler>());
  auto copy = net.clone();
  std::vector<std::tuple<std::string, bool, bool, bool>> a, b;
  auto collect = [](nn::Module& m, auto& out) {
    m.visit([&](const std::string& name, nn::Module& x) {
      out.emplace_back(name, x.is_training(), x.is_frozen(), x.input_grad());
    });
  };
  collect(net, a);
  collect(*copy, b);
  CHECK(a == b);
  REQUIRE(copy->find("layer3.0.relu.activation_post_process") != nullptr);
  CHECK(copy->find("layer3.0.relu.activation_post_process")->type_name() == "Doubler");
  CHECK(copy->find("layer3.0.relu.activation_post_process") !=
        net.find("layer3.0.relu.activation_post_process"));
}

TEST_CASE("clone() of a type without clone_shell() is a clear error", "[surgery][clone]") {
  struct NoCopy : nn::Module {
    std::string_view type_name() const override { return "NoCopy"; }
    TensorView<const float> forward_impl(TensorView<const float> x) override { return x; }
    TensorView<const float> backward_impl(TensorView<const float> g) override { return g; }
  };
  nn::Sequential s;
  s.emplace<nn::ReLU>();
  s.emplace<NoCopy>();
  CHECK_THROWS_WITH(s.clone(), Catch::Contains("NoCopy cannot be copied"));
}

TEST_CASE("replace() inside a block carries eval mode through the new subtree",
          "[surgery][replace]") {
  Rng rng(2);
  ResNet18 net(small_resnet());
  const Tensor<float> x = random_tensor(Shape{2, 32, 32, 3}, rng);
  net.eval();
  // A new BatchNorm (constructed in training mode) inside a block.
  auto bn = std::make_unique<nn::BatchNorm2d>(8);
  REQUIRE(bn->is_training());
  auto old = net.replace("layer1.0.bn1", std::move(bn));
  CHECK(old->type_name() == "BatchNorm2d");
  auto* fresh = nn::as<nn::Normalization>(*net.find("layer1.0.bn1"));
  REQUIRE(fresh != nullptr);
  CHECK_FALSE(net.find("layer1.0.bn1")->is_training());
  (void)net.forward(x);
  CHECK(fresh->running_mean()[0] == 0.f);  // eval: statistics untouched
  CHECK(fresh->running_var()[0] == 1.f);

  // A whole new block: every module in it takes eval mode.
  net.replace("layer2.1", std::make_unique<nn::BasicBlock>(16, 16, 1));
  net.find("layer2.1")->visit([](const std::string& name, nn::Module& m) {
    INFO(name);
    CHECK_FALSE(m.is_training());
  });
  auto* bn2 = nn::as<nn::Normalization>(*net.find("layer2.1.bn2"));
  (void)net.forward(x);
  CHECK(bn2->running_mean()[3] == 0.f);
  // Back to training: the new modules train too.
  net.train();
  (void)net.forward(x);
  CHECK(bn2->running_mean()[3] != 0.f);
}

TEST_CASE("replace() carries the input-gradient switch through the virtual setter",
          "[surgery][replace]") {
  CifarCnn net;
  // The first conv computes no data gradient, through the Identity "quant".
  CHECK_FALSE(net.find("quant")->input_grad());
  CHECK_FALSE(net.find("features.0")->input_grad());
  CHECK(net.find("features.4")->input_grad());
  auto seq = std::make_unique<nn::Sequential>();
  seq->emplace<nn::Identity>();
  seq->emplace<nn::Conv2d>(3, 64, 3, 1, 1, false);
  net.replace("features.0", std::move(seq));
  CHECK_FALSE(net.find("features.0.0")->input_grad());
  CHECK_FALSE(net.find("features.0.1")->input_grad());
  CHECK_THROWS_WITH(net.replace("features.99", std::make_unique<nn::ReLU>()),
                    Catch::Contains("no module named 'features.99'"));
}

TEST_CASE("freeze() survives train() and eval(); a frozen BatchNorm keeps its statistics",
          "[surgery][freeze]") {
  Rng rng(3);
  nn::BatchNorm2d bn(4);
  const Tensor<float> x = random_tensor(Shape{2, 3, 3, 4}, rng);
  (void)bn.forward(x);  // training: statistics move
  const Tensor<float> mean(bn.running_mean()), var(bn.running_var());
  bn.freeze();
  bn.train();
  CHECK(bn.is_frozen());
  CHECK(bn.is_training());
  CHECK_FALSE(bn.uses_batch_statistics());
  const Tensor<float> y_frozen(bn.forward(x));
  CHECK(bit_equal(bn.running_mean(), mean));
  CHECK(bit_equal(bn.running_var(), var));
  bn.eval();
  CHECK(bn.is_frozen());
  CHECK(bit_equal(bn.forward(x), y_frozen));  // frozen training = eval normalisation
  bn.train();
  bn.unfreeze();
  (void)bn.forward(x);
  CHECK_FALSE(bit_equal(bn.running_mean(), mean));

  // Gradient of a frozen BN in training mode: the affine map's.
  nn::BatchNorm2d f(3);
  randomize_batchnorms(f, rng);
  f.freeze();
  nn::GradCheckOptions o;
  o.check_input = true;
  const auto rep = nn::gradcheck(f, random_tensor(Shape{2, 3, 3, 3}, rng), o);
  INFO(rep.worst_where);
  CHECK(rep.ok);
}

TEST_CASE("save_modes()/restore_modes() put back each module's own mode", "[surgery][modes]") {
  CifarCnn net;
  net.find("features.1")->eval();
  const auto modes = net.save_modes();
  net.eval();
  net.restore_modes(modes);
  CHECK(net.is_training());
  CHECK_FALSE(net.find("features.1")->is_training());
  CHECK(net.find("features.5")->is_training());
}

TEST_CASE("output hooks see and transform a module's output, forward and backward",
          "[surgery][hooks]") {
  Rng rng(4);
  nn::Sequential s;
  s.emplace<nn::Conv2d>(3, 4, 3, 1, 1, true);
  s.emplace<nn::ReLU>();
  const Tensor<float> x = random_tensor(Shape{2, 5, 5, 3}, rng);
  const Tensor<float> plain(s.forward(x));
  auto* hook = new Doubler;
  CHECK(s.find("1")->set_output_hook(std::unique_ptr<nn::Module>(hook)) == nullptr);
  const Tensor<float> hooked(s.forward(x));
  CHECK(hook->calls == 1);
  for (std::int64_t i = 0; i < plain.numel(); ++i) CHECK(hooked[i] == 2.f * plain[i]);
  std::set<std::string> names;
  s.visit([&](const std::string& n, nn::Module&) { names.insert(n); });
  CHECK(names.count("1.activation_post_process") == 1);
  s.eval();
  CHECK_FALSE(hook->is_training());
  s.train();
  // Gradients pass through the hook.
  nn::GradCheckOptions o;
  o.check_input = true;
  const auto rep = nn::gradcheck(s, x, o);
  INFO(rep.worst_where);
  CHECK(rep.ok);
  // Removing it restores the plain output.
  CHECK(s.find("1")->set_output_hook(nullptr) != nullptr);
  CHECK(bit_equal(s.forward(x), plain));
}

TEST_CASE("capabilities: layers are reached by what they can do", "[surgery][capabilities]") {
  nn::Conv2d conv(3, 8, 3, 2, 1, false);
  nn::Linear lin(8, 2);
  nn::BatchNorm2d bn(8);
  nn::ReLU relu;
  auto* wc = nn::as<nn::WeightedLayer>(conv);
  auto* wl = nn::as<nn::WeightedLayer>(lin);
  REQUIRE(wc != nullptr);
  REQUIRE(wl != nullptr);
  CHECK(nn::as<nn::WeightedLayer>(relu) == nullptr);
  CHECK(nn::as<nn::Normalization>(bn) != nullptr);
  CHECK(wc->in_axis() == 3);
  CHECK(wl->in_axis() == 1);
  CHECK(wc->kernel().kh == 3);
  CHECK(wc->kernel().stride == 2);
  CHECK(wc->kernel().padding == 1);
  CHECK(wl->kernel().kh == 1);
  CHECK(wc->out_channels() == 8);
  CHECK(wl->in_channels() == 8);
  CHECK_FALSE(wc->has_bias());
  wc->enable_bias();
  CHECK(wc->has_bias());
  CHECK(conv.named_parameters().back().name == "bias");
  CHECK(conv.bias().shape() == Shape{8});
  CHECK_THROWS_WITH(nn::require_capability<nn::WeightedLayer>(relu, "a layer with weights", "r"),
                    Catch::Contains("'r' (ReLU) is not a layer with weights"));
}

TEST_CASE("every quantization point is a named module of the model", "[surgery][points]") {
  CifarCnn cnn;
  ResNet18 resnet(small_resnet());
  EfRegressor ef(EfRegressorOptions{.width = 0.125});
  const auto pc = cnn.quantization_points();
  const auto pr = resnet.quantization_points();
  const auto pe = ef.quantization_points();
  // CifarCnn: input, 4 conv+BN+ReLU, pool, fc. ResNet18: input, stem, 8 blocks
  // x (relu, bn2, add_relu) + 3 downsamples, avgpool, fc. EfRegressor: the
  // trunk without fc, the temporal pool, the head.
  CHECK(pc.size() == 7);
  CHECK(pr.size() == 2 + 8 * 3 + 3 + 2);
  CHECK(pe.size() == pr.size() - 1 + 2);
  CHECK(pc.front().name == "quant");
  CHECK(pc.front().kind == nn::PointKind::input);
  CHECK(pc[1].name == "features.2");
  CHECK(pc[1].relu);
  CHECK(pr[2].name == "layer1.0.relu");
  CHECK(pr[3].name == "layer1.0.bn2");
  CHECK_FALSE(pr[3].relu);
  CHECK(pr[4].name == "layer1.0.add_relu");
  CHECK(pr[4].kind == nn::PointKind::add);
  CHECK(pe.front().name == "backbone.quant");
  CHECK(pe[pe.size() - 2].kind == nn::PointKind::temporal_pool);
  CHECK(pe.back().name == "head");
  std::set<std::string> seen;
  for (auto* m : std::initializer_list<nn::Module*>{&cnn, &resnet, &ef})
    for (const auto& p : m->quantization_points()) {
      INFO(p.name);
      CHECK(m->find(p.name) != nullptr);
    }
  for (const auto& p : pr) CHECK(seen.insert(p.name).second);
}

TEST_CASE("gradient checks through the new named modules", "[surgery][gradcheck]") {
  Rng rng(5);
  nn::GradCheckOptions o;
  o.check_input = true;
  SECTION("Identity") {
    nn::Identity id;
    CHECK(nn::gradcheck(id, random_tensor(Shape{2, 3, 3, 2}, rng), o).ok);
  }
  SECTION("a BasicBlock with its ReLU and add+ReLU as modules, and a pruned inner width") {
    nn::BasicBlock block(6, 8, 2, 3);  // downsample, 3 inner channels
    randomize_batchnorms(block, rng);
    CHECK(block.mid_channels() == 3);
    CHECK(block.has_downsample());
    block.eval();
    const auto rep = nn::gradcheck(block, random_tensor(Shape{2, 6, 6, 6}, rng), o);
    INFO(rep.worst_where);
    CHECK(rep.ok);
  }
  SECTION("AddReLU passes the gradient of the sum to both inputs") {
    nn::AddReLU add;
    const Tensor<float> a = random_tensor(Shape{2, 5}, rng), b = random_tensor(Shape{2, 5}, rng);
    const Tensor<float> y(add.forward(a, b));
    const Tensor<float> g = random_tensor(Shape{2, 5}, rng);
    const Tensor<float> dx(add.backward(g));
    for (std::int64_t i = 0; i < y.numel(); ++i) {
      CHECK(y[i] == std::max(0.f, a[i] + b[i]));
      CHECK(dx[i] == (a[i] + b[i] > 0.f ? g[i] : 0.f));
    }
    CHECK_THROWS_WITH(add.forward(a), Catch::Contains("AddReLU takes two inputs"));
    CHECK_THROWS_AS(add.forward(a, Tensor<float>(Shape{2, 4})), ShapeError);
  }
}

TEST_CASE("the docs/architecture.md example: fold the BatchNorms of a ResNet18 copy",
          "[surgery][fold][docs]") {
  Rng rng(6);
  models::ResNet18 net;
  randomize_batchnorms(net, rng);
  net.eval();
  std::unique_ptr<nn::Module> deploy = net.clone();
  const auto folded = nn::fold_batchnorms(*deploy);
  CHECK(folded.size() == 20);
  auto& conv = nn::require_capability<nn::WeightedLayer>(*deploy->find("layer1.0.conv1"),
                                                         "a layer with weights", "layer1.0.conv1");
  CHECK(conv.has_bias());
  const Tensor<float> x = random_tensor(Shape{1, 112, 112, 3}, rng);
  const Tensor<float> a(net.forward(x)), b(deploy->forward(x));
  CHECK(compressor::testing::rel_to_max(b, a) <= 1e-5);
}
