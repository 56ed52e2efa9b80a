// Int8 model files (quant/int8_io.hpp): save -> load round trips of the three
// models on both weight grids (bit-identical outputs on every kernel path,
// identical summaries and weights), a pruned plan, atomic writes, and every
// kind of bad file rejected with an error naming the file and the tensor.
// The file size against the fp32 checkpoint at full width: test_int8_size.cpp.
#include <algorithm>
#include <catch2/catch.hpp>
#include <compressor/io/checkpoint.hpp>
#include <compressor/kernels/isa.hpp>
#include <compressor/models.hpp>
#include <compressor/prune/unstructured.hpp>
#include <compressor/quant/int8_io.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "io/io_test_util.hpp"
#include "quant/quant_test_util.hpp"
#include "quant/raw_file.hpp"
#include "surgery/surgery_test_util.hpp"

using namespace compressor;
using namespace compressor::models;
using compressor::testing::bit_equal;
using compressor::testing::ptq_int8;
using compressor::testing::RandomBatches;
using compressor::testing::randomize_batchnorms;
using compressor::testing::RawFile;

namespace {

/// A clean directory for one test's files (io_test_util.hpp's, in a folder of this file's own).
std::filesystem::path test_dir(const std::string& name) {
  return compressor::testing::io_test_dir("int8_io_files/" + name);
}

bool same_bits(float a, float b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

/// Summaries (points with kinds and parameters, layers) and int8 weights equal.
void check_same_model(const quant::Int8Model& a, const quant::Int8Model& b) {
  const auto &sa = a.summary(), &sb = b.summary();
  CHECK(sa.model == sb.model);
  CHECK(sa.grid == sb.grid);
  CHECK(sb.float_layers.empty());
  CHECK(a.input_point() == b.input_point());
  REQUIRE(sa.points.size() == sb.points.size());
  for (std::size_t i = 0; i < sa.points.size(); ++i) {
    INFO("point " << sa.points[i].name);
    CHECK(sa.points[i].name == sb.points[i].name);
    CHECK(sa.points[i].kind == sb.points[i].kind);
    CHECK(same_bits(sa.points[i].q.scale, sb.points[i].q.scale));
    CHECK(sa.points[i].q.zero_point == sb.points[i].q.zero_point);
  }
  REQUIRE(sa.layers.size() == sb.layers.size());
  for (std::size_t i = 0; i < sa.layers.size(); ++i) {
    const auto &la = sa.layers[i], &lb = sb.layers[i];
    INFO("layer " << la.name);
    CHECK(la.name == lb.name);
    CHECK(la.kind == lb.kind);
    CHECK(la.point == lb.point);
    CHECK(la.relu == lb.relu);
    CHECK(same_bits(la.in.scale, lb.in.scale));
    CHECK(la.in.zero_point == lb.in.zero_point);
    CHECK(same_bits(la.out.scale, lb.out.scale));
    CHECK(la.weight_scales == lb.weight_scales);
  }
  REQUIRE(a.layer_weights().size() == b.layer_weights().size());
  for (std::size_t i = 0; i < a.layer_weights().size(); ++i) {
    const auto& [na, wa] = a.layer_weights()[i];
    const auto& [nb, wb] = b.layer_weights()[i];
    INFO("layer " << na);
    CHECK(na == nb);
    REQUIRE(wa.weight.shape() == wb.weight.shape());
    CHECK(std::memcmp(wa.weight.data(), wb.weight.data(), wa.weight.numel()) == 0);
    CHECK(wa.scales == wb.scales);
    CHECK(wa.bias == wb.bias);
    CHECK(wa.stride == wb.stride);
    CHECK(wa.padding == wb.padding);
  }
  CHECK(a.weight_bytes() == b.weight_bytes());
}

/// The largest |weight| of an int8 model.
int max_abs_weight(const quant::Int8Model& m) {
  int out = 0;
  for (const auto& [name, q] : m.layer_weights())
    for (std::int64_t k = 0; k < q.weight.numel(); ++k)
      out = std::max(out, std::abs(int(q.weight[k])));
  return out;
}

/// PTQ of model on `grid`, save, load typed and untyped: same model, and on
/// every kernel path this CPU supports the same output bits as the saved
/// model on the scalar path.
template <class M>
void check_round_trip(M& model, const Shape& input, const std::filesystem::path& path,
                      quant::WeightGrid grid) {
  namespace k = compressor::kernels;
  INFO("weight grid " << quant::to_string(grid));
  Rng rng(5);
  randomize_batchnorms(model, rng);
  quant::Int8Model int8 = ptq_int8(model, input, 2, 300, grid);
  REQUIRE(int8.summary().grid == grid);
  // Each channel's largest weight lands on the end of the grid.
  CHECK(max_abs_weight(int8) == quant::weight_qmax(grid));
  quant::save_int8_model(int8, model.channel_plan(), path);
  {
    io::SafetensorsFile f = io::SafetensorsFile::open(path);
    CHECK(*f.metadata_value("weight_grid") == quant::to_string(grid));
    CHECK(*f.metadata_value("weight_qmax") == std::to_string(quant::weight_qmax(grid)));
  }
  quant::Int8Model typed = quant::load_int8_model<M>(path);
  quant::Int8Model untyped = quant::load_int8_model(path);
  CHECK(typed.summary().grid == grid);
  check_same_model(int8, typed);
  check_same_model(int8, untyped);
  RandomBatches data(input, 2, 900, -1.5f, 1.5f);
  for (int i = 0; i < 2; ++i) {
    const Tensor<float> x = data.batch(i);
    Tensor<float> want;
    {
      k::ScopedKernelPath scalar(k::Path::scalar);
      want = Tensor<float>(int8.forward(x));
    }
    for (const k::Path p : k::supported_paths()) {
      INFO("path " << k::path_name(p) << ", batch " << i);
      k::ScopedKernelPath scope(p);
      CHECK(bit_equal(Tensor<float>(int8.forward(x)), want));
      CHECK(bit_equal(Tensor<float>(typed.forward(x)), want));
      CHECK(bit_equal(Tensor<float>(untyped.forward(x)), want));
    }
  }
}

/// The channel plan of a small CifarCnn (fast bad-file cases, the seed corpus).
nn::ChannelPlan small_cifar_plan() {
  nn::ChannelPlan p = CifarCnn::default_plan(10, 3);
  p.set("features.0", 4);
  p.set("features.4", 8);
  p.set("features.8", 8);
  p.set("features.12", 8);
  return p;
}

}  // namespace

TEST_CASE("int8 files: save -> load round trips of the three models", "[quant][int8_io]") {
  const auto dir = test_dir("round_trip");
  const quant::WeightGrid grid = GENERATE(quant::WeightGrid::full, quant::WeightGrid::narrow);
  auto round_trip = [grid](auto& model, const Shape& input, const std::filesystem::path& path) {
    check_round_trip(model, input, path, grid);
  };
  // CifarCnn at half width: every layer and point of the full one at a
  // quarter of its MACs (the sanitizer build runs this too); the file size
  // at full width is test_int8_size.cpp's case.
  SECTION("CifarCnn, half width") {
    nn::init::manual_seed(31);
    CifarCnn m(compressor::testing::narrow_cifar_plan(2));
    round_trip(m, Shape{2, 32, 32, 3}, dir / "cifar.safetensors");
  }
  SECTION("ResNet18, width 0.25") {
    nn::init::manual_seed(32);
    ResNetOptions o;
    o.width = 0.25;
    o.num_classes = 10;
    ResNet18 m(o);
    round_trip(m, Shape{2, 48, 48, 3}, dir / "resnet.safetensors");
  }
  SECTION("EfRegressor, width 0.125, mean_max_min pooling") {
    nn::init::manual_seed(33);
    EfRegressor m(EfRegressorOptions{.width = 0.125, .pool = nn::TemporalPoolMode::mean_max_min});
    round_trip(m, Shape{2, 3, 40, 40, 3}, dir / "ef.safetensors");
  }
  SECTION("a pruned CifarCnn (half width, features.0 = 20)") {
    nn::ChannelPlan plan = compressor::testing::narrow_cifar_plan(2);
    plan.set("features.0", 20);
    nn::init::manual_seed(34);
    CifarCnn m(plan);
    round_trip(m, Shape{2, 32, 32, 3}, dir / "pruned.safetensors");
    io::SafetensorsFile f = io::SafetensorsFile::open(dir / "pruned.safetensors");
    CHECK(*io::read_channel_plan(f).find("features.0") == 20);
  }
}

TEST_CASE("int8 files: the format", "[quant][int8_io]") {
  const auto dir = test_dir("format");
  nn::init::manual_seed(35);
  // A plan with only features.0: the other layers take CifarCnn's defaults.
  nn::ChannelPlan partial;
  partial.model = "CifarCnn";
  partial.channels = {{"features.0", 12}};
  CifarCnn m(partial);
  quant::Int8Model int8 = ptq_int8(m, Shape{2, 32, 32, 3}, 1, 7);  // the default grid: full
  const auto path = dir / "m.safetensors";
  quant::save_int8_model(int8, partial, path);
  io::SafetensorsFile f = io::SafetensorsFile::open(path);
  CHECK(*f.metadata_value("format") == "compressor.int8_model");
  // Either grid is version 1 (the weight_grid key was there from the start).
  CHECK(*f.metadata_value("format_version") == "1");
  CHECK(*f.metadata_value("weight_grid") == "full");
  CHECK(*f.metadata_value("weight_qmax") == "127");
  CHECK(f.metadata_value("scheme")->find("[-127, 127]") != std::string::npos);
  {
    const auto narrow_path = dir / "narrow.safetensors";
    quant::save_int8_model(ptq_int8(m, Shape{2, 32, 32, 3}, 1, 7, quant::WeightGrid::narrow),
                           partial, narrow_path);
    io::SafetensorsFile n = io::SafetensorsFile::open(narrow_path);
    CHECK(*n.metadata_value("format_version") == "1");
    CHECK(*n.metadata_value("weight_grid") == "narrow");
    CHECK(*n.metadata_value("weight_qmax") == "64");
    CHECK(n.metadata_value("scheme")->find("[-64, 64]") != std::string::npos);
    std::filesystem::remove(narrow_path);
  }
  CHECK(*f.metadata_value("model") == "CifarCnn");
  CHECK(f.metadata_value("scheme")->find('\n') == std::string::npos);
  // The stored plan is completed to every layer, in model order.
  const nn::ChannelPlan stored = io::read_channel_plan(f);
  CHECK(stored.channels == std::vector<std::pair<std::string, std::int64_t>>{{"features.0", 12},
                                                                             {"features.4", 128},
                                                                             {"features.8", 256},
                                                                             {"features.12", 512},
                                                                             {"fc", 10}});
  auto info = [&](const std::string& name) {
    const io::TensorInfo* t = f.find(name);
    REQUIRE(t != nullptr);
    return *t;
  };
  CHECK(info("features.0.weight").dtype_name == "I8");
  CHECK(info("features.0.weight").dims == std::vector<std::int64_t>{12, 3, 3, 3});  // OHWI
  CHECK(info("features.4.weight").dims == std::vector<std::int64_t>{128, 3, 3, 12});
  CHECK(info("fc.weight").dims == std::vector<std::int64_t>{10, 512});  // linear: (O, I)
  CHECK(info("features.0.weight_scale").dtype_name == "F32");
  CHECK(info("features.0.weight_scale").dims == std::vector<std::int64_t>{12});
  CHECK(info("features.0.bias").dtype_name == "I32");  // BN folded into the conv
  CHECK(info("act.fc.scale").dims == std::vector<std::int64_t>{1});
  CHECK(info("act.fc.zero_point").dtype_name == "I32");
  CHECK(info("act.quant.scale").dtype_name == "F32");
  // 5 layers x (weight, scale, bias) + 7 points x (scale, zero point)
  CHECK(f.tensors().size() == 5 * 3 + 7 * 2);

  SECTION("written atomically: no temporary left, an old file replaced whole") {
    quant::save_int8_model(int8, partial, path);
    CHECK(compressor::testing::list_dir(dir) == std::vector<std::string>{"m.safetensors"});
    CHECK_THROWS_AS(quant::save_int8_model(int8, partial, dir / "no_such_dir" / "x.safetensors"),
                    IoError);
    CHECK(compressor::testing::list_dir(dir) == std::vector<std::string>{"m.safetensors"});
  }
  SECTION("a plan that does not describe the model is refused when saving") {
    nn::ChannelPlan other = partial;
    other.model = "ResNet";
    CHECK_THROWS_WITH(quant::save_int8_model(int8, other, dir / "x.safetensors"),
                      Catch::Contains("channel plan is for model 'ResNet'"));
    nn::ChannelPlan wrong = partial;
    wrong.set("features.4", 64);
    CHECK_THROWS_WITH(quant::save_int8_model(int8, wrong, dir / "x.safetensors"),
                      Catch::Contains("gives layer 'features.4' 64 output channels") &&
                          Catch::Contains("has 128"));
    nn::ChannelPlan extra = partial;
    extra.set("features.1", 4);
    CHECK_THROWS_WITH(quant::save_int8_model(int8, extra, dir / "x.safetensors"),
                      Catch::Contains("layer 'features.1' of the channel plan is not a layer"));
  }
}

TEST_CASE("int8 files: bad files are rejected naming the file and the tensor", "[quant][int8_io]") {
  const auto dir = test_dir("bad");
  nn::init::manual_seed(37);
  CifarCnn m(small_cifar_plan());
  Rng rng(3);
  randomize_batchnorms(m, rng);
  quant::Int8Model int8 = ptq_int8(m, Shape{2, 32, 32, 3}, 1, 17);  // full grid
  REQUIRE(int8.summary().grid == quant::WeightGrid::full);
  const auto good = dir / "good.safetensors";
  quant::save_int8_model(int8, m.channel_plan(), good);
  REQUIRE_NOTHROW(quant::load_int8_model<CifarCnn>(good));
  const RawFile raw = RawFile::read(good);
  REQUIRE(raw.bytes() == compressor::testing::read_bytes(good));  // the editor rewrites exactly
  const auto good_narrow = dir / "good_narrow.safetensors";
  quant::save_int8_model(ptq_int8(m, Shape{2, 32, 32, 3}, 1, 17, quant::WeightGrid::narrow),
                         m.channel_plan(), good_narrow);
  const RawFile raw_narrow = RawFile::read(good_narrow);

  const auto bad = dir / "bad.safetensors";
  const std::string file = bad.string();
  auto load = [&](const RawFile& r) {
    r.write(bad);
    return quant::load_int8_model(bad);
  };
  auto from = [&] { return RawFile(raw); };
  using Catch::Contains;

  SECTION("missing tensor") {
    RawFile r = from();
    r.erase("fc.bias");
    CHECK_THROWS_AS(load(r), IoError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("missing") && Contains("'fc.bias'") &&
                                   Contains("I32 (10)"));
    r = from();
    r.erase("act.features.6.zero_point");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'act.features.6.zero_point'"));
    r = from();
    r.erase("features.4.weight");  // a layer of the plan
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("missing tensor 'features.4.weight'"));
  }
  SECTION("wrong dtype") {
    RawFile r = from();
    r.at("features.0.weight_scale").dtype = "I32";  // same bytes, other type
    CHECK_THROWS_AS(load(r), IoError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.0.weight_scale'") &&
                                   Contains("has dtype I32, expected F32"));
    r = from();
    r.at("features.4.weight").dtype = "U8";
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.4.weight'") &&
                                   Contains("has dtype U8, expected I8"));
  }
  SECTION("wrong shape") {
    RawFile r = from();
    r.at("features.4.weight").dims = {8, 3, 4, 3};  // same bytes, not OHWI (8, 3, 3, 4)
    CHECK_THROWS_AS(load(r), ShapeError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.4.weight'") &&
                                   Contains("has shape (8, 3, 4, 3), expected (8, 3, 3, 4)"));
    r = from();
    r.at("fc.weight").dims = {8, 10};  // (I, O): the output channels disagree with the plan
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'fc.weight'") &&
                                   Contains("channel plan gives layer 'fc' 10 output channels"));
    r = from();
    r.at("act.pool.scale").dims = {};
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'act.pool.scale'") &&
                                   Contains("has shape (), expected (1)"));
  }
  SECTION("a weight outside the narrow grid of a narrow file") {
    for (const std::int8_t w : {std::int8_t{65}, std::int8_t{-65}, std::int8_t{-100},
                                std::int8_t{127}, std::int8_t{-128}}) {
      RawFile r = raw_narrow;
      r.set<std::int8_t>("features.8.weight", 17, w);
      CHECK_THROWS_AS(load(r), ValueError);
      CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.8.weight'") &&
                                     Contains("weight " + std::to_string(int(w)) + " ") &&
                                     Contains("weight grid 'narrow' [-64, 64]"));
    }
    RawFile r = raw_narrow;
    r.set<std::int8_t>("fc.weight", 3, 64);  // the ends of the grid are fine
    r.set<std::int8_t>("fc.weight", 4, -64);
    CHECK(load(r).summary().grid == quant::WeightGrid::narrow);
  }
  SECTION("a weight outside the full grid of a full file") {
    RawFile r = from();
    r.set<std::int8_t>("features.8.weight", 17, -128);  // int8, but not on the symmetric grid
    CHECK_THROWS_AS(load(r), ValueError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.8.weight'") &&
                                   Contains("weight -128 ") &&
                                   Contains("weight grid 'full' [-127, 127]"));
    r = from();
    r.set<std::int8_t>("fc.weight", 3, 127);  // the ends of the grid are fine
    r.set<std::int8_t>("fc.weight", 4, -127);
    r.set<std::int8_t>("features.8.weight", 17, -100);
    CHECK(load(r).summary().grid == quant::WeightGrid::full);
  }
  SECTION("a full-grid file whose metadata says narrow") {
    RawFile r = from();
    r.set_meta("weight_grid", "narrow");
    r.set_meta("weight_qmax", "64");
    CHECK_THROWS_AS(load(r), ValueError);
    CHECK_THROWS_WITH(load(r),
                      Contains(file) && Contains(".weight'") &&
                          Contains("is outside the file's weight grid 'narrow' [-64, 64]"));
  }
  SECTION("a NaN, zero, negative or infinite scale") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    const std::vector<std::pair<std::string, float>> cases{{"features.0.weight_scale", nan},
                                                           {"features.12.weight_scale", 0.f},
                                                           {"fc.weight_scale", -0.5f},
                                                           {"act.pool.scale", 0.f},
                                                           {"act.features.2.scale", nan},
                                                           {"act.quant.scale", -1.f},
                                                           {"act.fc.scale", inf},
                                                           {"act.fc.scale", 1e-30f}};
    for (const auto& [name, v] : cases) {
      INFO(name << " = " << v);
      RawFile r = from();
      r.set<float>(name, r.at(name).bytes.size() > 4 ? 1 : 0, v);
      CHECK_THROWS_AS(load(r), ValueError);
      CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'" + name + "'") &&
                                     Contains("is not a finite scale >= "));
    }
  }
  SECTION("a zero point outside [0, 255]") {
    for (const std::int32_t zp : {300, -1, 256}) {
      RawFile r = from();
      r.set<std::int32_t>("act.features.2.zero_point", 0, zp);
      CHECK_THROWS_AS(load(r), ValueError);
      CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'act.features.2.zero_point'") &&
                                     Contains("is " + std::to_string(zp)) &&
                                     Contains("expected a uint8 zero point in [0, 255]"));
    }
  }
  SECTION("a bias the int32 accumulator cannot hold") {
    RawFile r = from();
    r.set<std::int32_t>("features.4.bias", 2, std::numeric_limits<std::int32_t>::max());
    CHECK_THROWS_AS(load(r), ValueError);
    CHECK_THROWS_WITH(
        load(r), Contains(file) && Contains("'features.4.bias'") && Contains("cannot overflow"));
    // The room left depends on the grid: features.4 adds K = 3 * 3 * 4 = 36
    // products of |x| <= 255 and |w| <= qmax, plus a zero-point correction as
    // large, to its bias.
    const std::int64_t k = 36, int32_max = std::numeric_limits<std::int32_t>::max();
    const std::int64_t narrow_room = int32_max - 2 * 255 * 64 * k;
    const std::int64_t full_room = int32_max - 2 * 255 * 127 * k;
    const auto between = static_cast<std::int32_t>((narrow_room + full_room) / 2);
    r = from();
    r.set<std::int32_t>("features.4.bias", 2, static_cast<std::int32_t>(full_room));
    CHECK_NOTHROW(load(r));
    r.set<std::int32_t>("features.4.bias", 2, between);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.4.bias'") &&
                                   Contains("[-" + std::to_string(full_room)));
    r = raw_narrow;
    r.set<std::int32_t>("features.4.bias", 2, between);
    CHECK_NOTHROW(load(r));
    r.set<std::int32_t>("features.4.bias", 2, static_cast<std::int32_t>(narrow_room + 1));
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.4.bias'") &&
                                   Contains("[-" + std::to_string(narrow_room)));
  }
  SECTION("metadata: format, version, grid, model, plan") {
    RawFile r = from();
    r.set_meta("format_version", "4");
    CHECK_THROWS_AS(load(r), IoError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("format_version '4' is not supported"));
    r.set_meta("format_version", "3");  // the version of files with sparse layers
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("without metadata 'sparse_layers'"));
    r = from();
    r.set_meta("format_version", "2");  // the version of files with float islands
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("without metadata 'float_islands'"));
    r.set_meta("float_islands", "features.4,nope");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("float island 'nope'"));
    r.set_meta("float_islands", "features.4,,fc");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("expected distinct layer names"));
    r.set_meta("float_islands", "features.4");  // but its weight is int8
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("features.4.weight"));
    r = from();
    r.erase_meta("format");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("not an int8 model file"));
    r = from();
    r.set_meta("weight_grid", "wide");
    CHECK_THROWS_AS(load(r), IoError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("unknown weight grid 'wide'") &&
                                   Contains("expected: narrow or full"));
    r = from();
    r.erase_meta("weight_grid");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("no metadata 'weight_grid'"));
    r = from();
    r.set_meta("weight_qmax", "64");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'weight_qmax' is '64', expected '127'"));
    r = raw_narrow;
    r.set_meta("weight_qmax", "127");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'weight_qmax' is '127', expected '64'"));
    r = from();
    r.set_meta("model", "Mystery");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("the channel plan is for 'CifarCnn'"));
    r = from();
    r.erase_meta("compressor.channel_plan");
    CHECK_THROWS_AS(load(r), IoError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("no channel plan"));
    r = from();
    r.set_meta("compressor.channel_plan", "{\"format\": 1");
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("channel plan"));
    // A plan asking for a huge input: refused before any model is built.
    r = from();
    nn::ChannelPlan huge = small_cifar_plan();
    huge.options = {{"num_classes", std::int64_t{10}}, {"in_channels", std::int64_t{1} << 40}};
    r.set_meta("compressor.channel_plan", huge.to_json());
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("in_channels = 1099511627776"));
    // A file of another model type.
    CHECK_THROWS_WITH(
        quant::load_int8_model<ResNet18>(good),
        Contains(good.string()) && Contains("holds an int8 'CifarCnn', not a 'ResNet'"));
  }
  SECTION("an extra tensor") {
    RawFile r = from();
    r.tensors.push_back({"features.1.running_mean", "F32", {4}, std::string(16, '\0')});
    CHECK_THROWS_AS(load(r), IoError);
    CHECK_THROWS_WITH(load(r), Contains(file) && Contains("'features.1.running_mean'") &&
                                   Contains("belong to no layer or point"));
  }
  SECTION("truncated file") {
    const std::string bytes = raw.bytes();
    for (const std::size_t keep : {bytes.size() - 1, bytes.size() / 2, std::size_t{20}}) {
      compressor::testing::write_bytes(bad, bytes.substr(0, keep));
      CHECK_THROWS_AS(quant::load_int8_model(bad), IoError);
      CHECK_THROWS_WITH(quant::load_int8_model(bad), Contains(file) && Contains("truncated"));
    }
  }
  SECTION("a float checkpoint is not an int8 file") {
    io::save_checkpoint(m, bad);
    CHECK_THROWS_WITH(quant::load_int8_model(bad),
                      Contains(file) && Contains("not an int8 model file"));
  }
  SECTION("in memory") {
    CHECK(quant::load_int8_model_from_bytes(raw.bytes(), "mem").summary().model == "CifarCnn");
    RawFile r = from();
    r.set<std::int32_t>("act.fc.zero_point", 0, 300);
    CHECK_THROWS_WITH(quant::load_int8_model_from_bytes(r.bytes(), "mem"),
                      Catch::StartsWith("mem: tensor 'act.fc.zero_point'"));
  }
}

namespace {

/// The seed corpus of fuzz/fuzz_int8_model: small valid files of each model.
/// The first three are on the narrow grid, as they were written before the
/// full grid existed (so the corpus keeps files of that time, which must go
/// on loading); the "_full" ones on the full grid.
std::vector<std::pair<std::string, std::string>> corpus_files() {
  using quant::WeightGrid;
  std::vector<std::pair<std::string, std::string>> out;
  for (const WeightGrid grid : {WeightGrid::narrow, WeightGrid::full}) {
    nn::init::manual_seed(41);
    CifarCnn m(small_cifar_plan());
    Rng rng(41);
    randomize_batchnorms(m, rng);
    out.emplace_back(
        grid == WeightGrid::narrow ? "cifar_cnn_small.safetensors"
                                   : "cifar_cnn_small_full.safetensors",
        quant::int8_model_writer(ptq_int8(m, Shape{2, 16, 16, 3}, 1, 41, grid), m.channel_plan())
            .bytes());
  }
  {  // with a float island (format version 2)
    nn::init::manual_seed(43);
    CifarCnn m(small_cifar_plan());
    Rng rng(43);
    randomize_batchnorms(m, rng);
    auto cfg = compressor::testing::test_config(WeightGrid::narrow);
    cfg.float_islands = {"features.4"};
    quant::Prepared p = quant::prepare_ptq(m, cfg);
    compressor::testing::RandomBatches calib(Shape{2, 16, 16, 3}, 1, 43);
    quant::calibrate(p, calib);
    out.emplace_back("cifar_cnn_small_island.safetensors",
                     quant::int8_model_writer(quant::convert(p), m.channel_plan()).bytes());
  }
  {  // pruned, three layers on the sparse int8 kernel, a float island (format version 3):
     // features.4 and .8 stored as CSR, fc (80 weights) dense, its CSR not smaller
    nn::init::manual_seed(44);
    CifarCnn m(small_cifar_plan());
    Rng rng(44);
    randomize_batchnorms(m, rng);
    prune::UnstructuredOptions o{.sparsity = 0.95, .scope = prune::Scope::per_layer};
    o.layers.exclude = {"features.0"};
    (void)prune::prune_unstructured(m, o);
    auto cfg = compressor::testing::test_config(WeightGrid::full);
    cfg.float_islands = {"features.12"};
    quant::Prepared p = quant::prepare_ptq(m, cfg);
    compressor::testing::RandomBatches calib(Shape{2, 16, 16, 3}, 1, 44);
    quant::calibrate(p, calib);
    quant::Int8Model int8 = quant::convert(p);
    for (const char* layer : {"features.4", "features.8", "fc"}) int8.set_sparse(layer, true);
    out.emplace_back("cifar_cnn_small_sparse.safetensors",
                     quant::int8_model_writer(int8, m.channel_plan()).bytes());
  }
  for (const WeightGrid grid : {WeightGrid::narrow, WeightGrid::full}) {
    nn::init::manual_seed(42);
    EfRegressor m(EfRegressorOptions{.width = 0.03125, .pool = nn::TemporalPoolMode::mean_max_min});
    Rng rng(42);
    randomize_batchnorms(m, rng);
    out.emplace_back(
        grid == WeightGrid::narrow ? "ef_regressor_tiny.safetensors"
                                   : "ef_regressor_tiny_full.safetensors",
        quant::int8_model_writer(ptq_int8(m, Shape{1, 2, 32, 32, 3}, 1, 42, grid), m.channel_plan())
            .bytes());
  }
  return out;
}

}  // namespace

TEST_CASE("int8 files: the fuzzer's seed corpus loads and saves back to the same bytes",
          "[quant][int8_io]") {
  // The seeds are written by tests_quant "[.write_int8_corpus]" (not
  // compared with a fresh run: calibration is float arithmetic whose last bits
  // may differ between builds).
  const std::filesystem::path dir =
      std::filesystem::path(COMPRESSOR_FUZZ_CORPUS_DIR) / "fuzz_int8_model";
  int seeds = 0;
  std::map<quant::WeightGrid, int> grids;
  int sparse_seeds = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    INFO(e.path().string());
    const std::string bytes = compressor::testing::read_bytes(e.path());
    CHECK(bytes.size() <= 32768);  // fuzz_int8_model.options: -max_len=32768
    io::SafetensorsFile f = io::SafetensorsFile::from_bytes(bytes, e.path().string());
    quant::Int8Model m = quant::load_int8_model(f);
    CHECK(quant::int8_model_writer(m, io::read_channel_plan(f)).bytes() == bytes);
    ++grids[m.summary().grid];
    sparse_seeds += m.sparse_layers().empty() ? 0 : 1;
    ++seeds;
  }
  CHECK(seeds >= 5);
  // Narrow files (the first ones were written before the full grid existed:
  // they go on loading) and full ones.
  CHECK(grids[quant::WeightGrid::narrow] >= 3);
  CHECK(grids[quant::WeightGrid::full] >= 2);
  CHECK(sparse_seeds >= 1);  // format version 3
}

TEST_CASE("int8 files: write the fuzzer's seed corpus", "[.write_int8_corpus]") {
  const std::filesystem::path dir =
      std::filesystem::path(COMPRESSOR_FUZZ_CORPUS_DIR) / "fuzz_int8_model";
  std::filesystem::create_directories(dir);
  for (const auto& [name, bytes] : corpus_files()) {
    io::write_file_atomic(dir / name, bytes);
    std::cout << (dir / name).string() << ": " << bytes.size() << " bytes\n";
  }
}
