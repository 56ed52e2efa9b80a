// Checkpoints: round trips of the models, PyTorch names and layouts on disk,
// prefix mapping for torchvision trunks, rejection of bad files with the
// model left untouched, and atomic writes.
#include <sys/resource.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <memory>
#include <string>

#include "compressor/io/checkpoint.hpp"
#include "compressor/models.hpp"
#include "compressor/nn.hpp"
#include "io/io_test_util.hpp"
#include "support/test_util.hpp"

using namespace compressor;
using namespace compressor::io;
using compressor::testing::io_test_dir;
using compressor::testing::perturb_buffers;
using compressor::testing::snapshot;

namespace {

template <class Model, class Options>
void check_round_trip(const Options& o, const std::filesystem::path& path) {
  nn::init::manual_seed(1);
  Model a(o);
  perturb_buffers(a, 1);
  save_checkpoint(a, path, {{"model", std::string(a.type_name())}});
  nn::init::manual_seed(2);
  Model b(o);
  perturb_buffers(b, 2);
  REQUIRE(snapshot(a) != snapshot(b));
  const LoadReport r = load_checkpoint(b, path);
  CHECK(snapshot(a) == snapshot(b));  // every parameter and buffer, bit for bit
  CHECK(r.loaded.size() == a.named_parameters().size() + a.named_buffers().size());
  CHECK(r.unexpected.empty());
  CHECK(r.missing.empty());
  // The caller's metadata, then the model's channel plan (nn/channel_plan.hpp).
  REQUIRE(r.metadata.size() == 2);
  CHECK(r.metadata[0] == std::pair<std::string, std::string>{"model", std::string(a.type_name())});
  CHECK(r.metadata[1].first == nn::ChannelPlan::kMetadataKey);
  CHECK(nn::ChannelPlan::from_json(r.metadata[1].second, "test").to_json() ==
        a.channel_plan().to_json());
}

/// A small model for the bad-input cases: conv (OHWI), BN (int64 buffer), fc.
std::unique_ptr<nn::Sequential> small_model(std::uint64_t seed) {
  nn::init::manual_seed(seed);
  auto m = std::make_unique<nn::Sequential>();
  m->add("conv", std::make_unique<nn::Conv2d>(2, 3, 3, 1, 1, true));
  m->add("bn", std::make_unique<nn::BatchNorm2d>(3));
  m->add("fc", std::make_unique<nn::Linear>(3, 2));
  perturb_buffers(*m, seed);
  return m;
}

}  // namespace

TEST_CASE("checkpoints round-trip CifarCnn, ResNet18 and EfRegressor bit-exactly",
          "[io][checkpoint]") {
  const auto dir = io_test_dir("round_trip");
  SECTION("CifarCnn") {
    check_round_trip<models::CifarCnn>(10, dir / "cifar.safetensors");
  }
  SECTION("ResNet18") {
    models::ResNetOptions o;
    o.width = 0.5;  // 2.9M parameters: quicker than full width, same names and code path
    check_round_trip<models::ResNet18>(o, dir / "resnet18.safetensors");
    // On disk: torchvision's names, PyTorch's shapes and the OIHW layout.
    auto f = SafetensorsFile::open(dir / "resnet18.safetensors");
    CHECK(f.tensors().size() == 62 + 60);
    const auto w = f.read<float>("conv1.weight");
    CHECK(w.shape() == Shape{32, 3, 7, 7});
    CHECK(f.find("layer2.0.downsample.0.weight")->shape_str() == "(64, 32, 1, 1)");
    CHECK(f.find("fc.weight")->shape_str() == "(1000, 256)");
    CHECK(f.find("bn1.num_batches_tracked")->dtype_name == "I64");
    CHECK(f.find("bn1.num_batches_tracked")->dims.empty());  // a scalar, as in PyTorch
    nn::init::manual_seed(1);
    models::ResNet18 a(o);
    auto& conv = dynamic_cast<nn::Conv2d&>(*a.find("conv1"));
    CHECK(w(5, 2, 6, 1) == conv.weight()(5, 6, 1, 2));  // OIHW (o,i,h,w) == OHWI (o,h,w,i)
  }
  SECTION("EfRegressor") {
    models::EfRegressorOptions o;
    o.width = 0.5;
    check_round_trip<models::EfRegressor>(o, dir / "ef.safetensors");
  }
}

TEST_CASE("torchvision-named ResNet18 weights load into EfRegressor's backbone",
          "[io][checkpoint]") {
  const auto dir = io_test_dir("prefix");
  models::ResNetOptions ro;
  ro.width = 0.25;
  nn::init::manual_seed(3);
  models::ResNet18 tv(ro);  // names as torchvision's, with an fc head
  perturb_buffers(tv, 3);
  save_checkpoint(tv, dir / "resnet18.safetensors");

  models::EfRegressorOptions eo;
  eo.width = 0.25;
  nn::init::manual_seed(4);
  models::EfRegressor ef(eo);
  const auto before = snapshot(ef);
  const auto head_before = snapshot(ef.head());

  SECTION("strict without the options fails and changes nothing") {
    CHECK_THROWS_WITH(
        load_checkpoint(ef, dir / "resnet18.safetensors"),
        Catch::Contains("missing from the file") && Catch::Contains("'backbone.conv1.weight'"));
    LoadOptions o;
    o.add_prefix = "backbone.";
    CHECK_THROWS_WITH(load_checkpoint(ef, dir / "resnet18.safetensors", o),
                      Catch::Contains("'head.weight'") && Catch::Contains("allow_missing"));
    o.allow_missing = {"head.*"};
    CHECK_THROWS_WITH(load_checkpoint(ef, dir / "resnet18.safetensors", o),
                      Catch::Contains("match no model tensor") && Catch::Contains("'fc.weight'"));
    CHECK(snapshot(ef) == before);
  }
  SECTION("with add_prefix, ignore and allow_missing") {
    LoadOptions o;
    o.add_prefix = "backbone.";
    o.ignore = {"fc.*"};
    o.allow_missing = {"head.*"};
    const LoadReport r = load_checkpoint(ef, dir / "resnet18.safetensors", o);
    CHECK(r.ignored == std::vector<std::string>{"fc.weight", "fc.bias"});
    CHECK(r.missing == std::vector<std::string>{"head.weight", "head.bias"});
    CHECK(r.loaded.size() == 60 + 60);
    auto trunk = snapshot(ef.backbone());
    auto tv_state = snapshot(tv);
    tv_state.erase(tv_state.begin() + 60, tv_state.begin() + 62);  // fc.weight, fc.bias
    CHECK(trunk == tv_state);
    CHECK(snapshot(ef.head()) == head_before);
  }
  SECTION("an ignore_if predicate works like the globs") {
    LoadOptions o;
    o.add_prefix = "backbone.";
    o.ignore_if = [](std::string_view n) { return n.substr(0, 3) == "fc."; };
    o.allow_missing = {"head.*"};
    CHECK(load_checkpoint(ef, dir / "resnet18.safetensors", o).ignored.size() == 2);
  }
  SECTION("strip_prefix loads an EfRegressor checkpoint's trunk into a bare ResNet18") {
    save_checkpoint(ef, dir / "ef.safetensors");
    models::ResNetOptions bare = ro;
    bare.include_head = false;
    nn::init::manual_seed(5);
    models::ResNet18 trunk(bare);
    LoadOptions o;
    o.strip_prefix = "backbone.";
    o.ignore = {"head.*"};
    const LoadReport r = load_checkpoint(trunk, dir / "ef.safetensors", o);
    CHECK(r.loaded.size() == 120);
    CHECK(snapshot(trunk) == snapshot(ef.backbone()));
  }
}

TEST_CASE("non-strict loading reports unexpected and missing tensors", "[io][checkpoint]") {
  const auto dir = io_test_dir("non_strict");
  auto src = small_model(1);
  auto dst = small_model(2);
  SafetensorsWriter w;
  add_state(w, src->child(0), "conv.");
  w.add<float>("extra", Tensor<float>(Shape{3}));
  w.write(dir / "part.safetensors");
  LoadOptions o;
  o.strict = false;
  const LoadReport r = load_checkpoint(*dst, dir / "part.safetensors", o);
  CHECK(r.loaded == std::vector<std::string>{"conv.weight", "conv.bias"});
  CHECK(r.unexpected == std::vector<std::string>{"extra"});
  CHECK(r.missing.size() == 7);  // bn.weight, bn.bias, fc.weight, fc.bias, 3 bn buffers
  CHECK(snapshot(dst->child(0)) == snapshot(src->child(0)));
  CHECK_THAT(r.summary(), Catch::Contains("loaded 2, ignored 0, unexpected 1, missing 7"));
}

TEST_CASE("bad checkpoints give an error naming file and tensor, and change nothing",
          "[io][checkpoint]") {
  const auto dir = io_test_dir("bad");
  auto good = small_model(1);
  auto model = small_model(2);
  const auto before = snapshot(*model);
  REQUIRE(before != snapshot(*good));
  const auto path = dir / "bad.safetensors";

  // Writes the good model's state (minus skip) followed by extra tensors, so
  // the bad tensor comes last: a loader that wrote as it went would have
  // changed the model by then.
  auto write_with = [&](const std::string& skip, auto&& add_extra) {
    SafetensorsWriter w;
    SafetensorsWriter all;
    add_state(all, *good);
    auto f = SafetensorsFile::from_bytes(all.bytes());
    for (const auto& t : f.tensors()) {
      if (t.name == skip) continue;
      if (t.dtype == DType::f32)
        w.add<float>(t.name, f.read<float>(t));
      else
        w.add<std::int64_t>(t.name, f.read<std::int64_t>(t));
    }
    add_extra(w);
    w.write(path);
  };
  auto expect_failure = [&](auto exception_tag, std::vector<std::string> parts) {
    using E = decltype(exception_tag);
    try {
      (void)load_checkpoint(*model, path);
      FAIL("no exception");
    } catch (const E& e) {
      const std::string msg = e.what();
      CHECK_THAT(msg, Catch::Contains(path.string()));
      for (const auto& p : parts) CHECK_THAT(msg, Catch::Contains(p));
    }
    CHECK(snapshot(*model) == before);
  };

  SECTION("the good file loads") {
    write_with("", [](SafetensorsWriter&) {});
    (void)load_checkpoint(*model, path);
    CHECK(snapshot(*model) == snapshot(*good));
  }
  SECTION("missing tensor") {
    write_with("bn.running_var", [](SafetensorsWriter&) {});
    expect_failure(IoError(""), {"missing from the file", "'bn.running_var'"});
  }
  SECTION("unexpected tensor") {
    write_with("", [](SafetensorsWriter& w) { w.add<float>("bn.extra", Tensor<float>(Shape{3})); });
    expect_failure(IoError(""), {"match no model tensor", "'bn.extra'"});
  }
  SECTION("wrong shape: a conv weight in OHWI instead of PyTorch's OIHW") {
    write_with("conv.weight", [](SafetensorsWriter& w) {
      w.add<float>("conv.weight", Tensor<float>(Shape{3, 3, 3, 2}));
    });
    expect_failure(ShapeError(""),
                   {"'conv.weight' has shape (3, 3, 3, 2), expected (3, 2, 3, 3)", "OIHW"});
  }
  SECTION("wrong shape: a vector of the wrong length") {
    write_with("fc.bias",
               [](SafetensorsWriter& w) { w.add<float>("fc.bias", Tensor<float>(Shape{3})); });
    expect_failure(ShapeError(""), {"'fc.bias' has shape (3), expected (2)"});
  }
  SECTION("wrong dtype: float weight stored as I32") {
    write_with("fc.weight", [](SafetensorsWriter& w) {
      w.add<std::int32_t>("fc.weight", Tensor<std::int32_t>(Shape{2, 3}));
    });
    expect_failure(IoError(""), {"'fc.weight' has dtype I32, expected F32"});
  }
  SECTION("wrong dtype: num_batches_tracked stored as F32") {
    write_with("bn.num_batches_tracked", [](SafetensorsWriter& w) {
      w.add<float>("bn.num_batches_tracked", Tensor<float>(Shape{}));
    });
    expect_failure(IoError(""), {"'bn.num_batches_tracked' has dtype F32, expected I64"});
  }
  SECTION("a dtype the format has but compressor does not hold (F16)") {
    SafetensorsWriter all;
    add_state(all, *good);
    std::string bytes = all.bytes();
    // Rewrite fc.bias (2 x F32 = 8 bytes) as 4 x F16 (8 bytes): still a valid file.
    const std::string from = R"("fc.bias":{"dtype":"F32","shape":[2])";
    const auto at = bytes.find(from);
    REQUIRE(at != std::string::npos);
    bytes.replace(at, from.size(), R"("fc.bias":{"dtype":"F16","shape":[4])");
    compressor::testing::write_bytes(path, bytes);
    expect_failure(IoError(""), {"'fc.bias' has dtype F16, expected F32"});
  }

  // File-level corruption of an otherwise good checkpoint.
  SafetensorsWriter all;
  add_state(all, *good);
  const std::string bytes = all.bytes();
  const std::string header = all.header();
  auto write_corrupt = [&](std::string b) { compressor::testing::write_bytes(path, b); };
  auto replace = [&](std::string b, const std::string& from, const std::string& to) {
    const auto at = b.find(from);
    REQUIRE(at != std::string::npos);
    b.replace(at, from.size(), to);
    return b;
  };
  SECTION("truncated data") {
    write_corrupt(bytes.substr(0, bytes.size() - 4));
    expect_failure(IoError(""), {"tensor 'bn.num_batches_tracked'", "truncated"});
  }
  SECTION("truncated header") {
    write_corrupt(bytes.substr(0, 8 + header.size() / 2));
    expect_failure(IoError(""), {"header length", "runs past the end of the file"});
  }
  SECTION("header length beyond the file") {
    std::string b = bytes;
    REQUIRE(b[2] == '\0');
    b[2] = '\x01';  // adds 65536 to the length
    write_corrupt(b);
    expect_failure(IoError(""), {"header length", "runs past the end of the file"});
  }
  SECTION("absurd header length") {
    std::string b = bytes;
    b[5] = '\x01';  // adds 2^40 to the length
    write_corrupt(b);
    expect_failure(IoError(""), {"header length", "exceeds the limit"});
  }
  SECTION("bad JSON") {
    write_corrupt(replace(bytes, R"("fc.bias":{)", R"("fc.bias"={)"));
    expect_failure(IoError(""), {"malformed safetensors header", "expected ':'", "at byte"});
  }
  SECTION("offsets out of range") {
    // Make the last tensor (the I64 scalar) claim a longer range.
    const auto tail = bytes.size() - 8 - header.size();
    write_corrupt(replace(bytes, "[" + std::to_string(tail - 8) + "," + std::to_string(tail) + "]",
                          "[" + std::to_string(tail - 8) + "," + std::to_string(tail + 8) + "]"));
    expect_failure(IoError(""), {"tensor 'bn.num_batches_tracked'"});
  }
  SECTION("overlapping offsets") {
    // fc.bias [a, a+8] -> also claimed by shifting num_batches_tracked onto it.
    const auto tail = bytes.size() - 8 - header.size();
    write_corrupt(replace(bytes, "[" + std::to_string(tail - 8) + "," + std::to_string(tail) + "]",
                          "[" + std::to_string(tail - 16) + "," + std::to_string(tail - 8) + "]"));
    expect_failure(IoError(""), {"overlap tensor"});
  }
  SECTION("offsets not covering the data") {
    write_corrupt(bytes + std::string(8, '\0'));
    expect_failure(IoError(""), {"trailing bytes no tensor owns"});
  }
  SECTION("not a safetensors file at all") {
    write_corrupt("PK\x03\x04 this is a zip file, not safetensors");
    expect_failure(IoError(""), {"header length"});
  }
  SECTION("missing file") {
    std::filesystem::remove(path);
    expect_failure(IoError(""), {"no such file"});
  }
}

TEST_CASE("checkpoint writes are atomic", "[io][checkpoint]") {
  const auto dir = io_test_dir("atomic");
  auto m = small_model(1);
  SECTION("a directory that does not exist") {
    const auto p = dir / "no_such_dir" / "m.safetensors";
    CHECK_THROWS_WITH(save_checkpoint(*m, p), Catch::Contains(p.string()));
    CHECK(compressor::testing::list_dir(dir).empty());
  }
  SECTION("a target that is a directory: the rename fails after the data was written") {
    std::filesystem::create_directory(dir / "taken");
    try {
      save_checkpoint(*m, dir / "taken");
      FAIL("no exception");
    } catch (const IoError& e) {
      CHECK_THAT(e.what(), Catch::Contains((dir / "taken").string()) && Catch::Contains("rename"));
    }
    CHECK(compressor::testing::list_dir(dir) == std::vector<std::string>{"taken"});  // no temp file
  }
  SECTION("a failed write leaves the previous checkpoint intact") {
    const auto p = dir / "m.safetensors";
    save_checkpoint(*m, p);
    const std::string old = compressor::testing::read_bytes(p);
    // A file size limit makes write() fail with EFBIG part-way through.
    auto big = std::make_unique<nn::Linear>(64, 64);
    struct rlimit saved {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = saved;
    lim.rlim_cur = 4096;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &lim) == 0);
    std::string msg;
    try {
      save_checkpoint(*big, p);
    } catch (const IoError& e) {
      msg = e.what();
    }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    std::signal(SIGXFSZ, old_handler);
    CHECK_THAT(msg, Catch::Contains("cannot write") && Catch::Contains(p.string()));
    CHECK(compressor::testing::read_bytes(p) == old);
    CHECK(compressor::testing::list_dir(dir) == std::vector<std::string>{"m.safetensors"});
  }
}

TEST_CASE("glob patterns match whole names", "[io][checkpoint]") {
  CHECK(glob_match("fc.*", "fc.weight"));
  CHECK_FALSE(glob_match("fc.*", "layer1.fc.weight"));
  CHECK(glob_match("*.num_batches_tracked", "layer1.0.bn1.num_batches_tracked"));
  CHECK(glob_match("layer?.0.*", "layer3.0.conv1.weight"));
  CHECK_FALSE(glob_match("layer?.0.*", "layer10.0.conv1.weight"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("a*b*c", "aXXbYYbc"));
  CHECK_FALSE(glob_match("a*b*c", "aXXbYYbd"));
  CHECK_FALSE(glob_match("", "x"));
}

TEST_CASE("layout helpers permute NCHW/NHWC and OIHW/OHWI", "[io][layout]") {
  Rng rng(7);
  const auto x = compressor::testing::random_tensor(Shape{2, 3, 4, 5}, rng);  // NCHW
  const auto y = to_channels_last(x.view());
  REQUIRE(y.shape() == Shape{2, 4, 5, 3});
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 4; ++h)
        for (int w = 0; w < 5; ++w) CHECK(y(n, h, w, c) == x(n, c, h, w));
  const auto back = to_channels_first(y.view());
  CHECK(back.shape() == x.shape());
  CHECK(std::equal(back.flat().begin(), back.flat().end(), x.flat().begin()));
  CHECK(channels_first_shape(Shape{8, 3, 3, 16}) == Shape{8, 16, 3, 3});
  CHECK_THROWS_AS(to_channels_last(Tensor<float>(Shape{2, 3}).view()), ShapeError);
}
