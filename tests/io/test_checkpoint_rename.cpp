// Checkpoint rename rules (LoadOptions::rename): glob captures, exact and glob
// renames, a whole ResNet-18 saved under other names, the order against
// ignore and the prefixes, rule validation, two file tensors on one model
// name, rules that match nothing, and LoadReport::renamed.
#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "compressor/io/checkpoint.hpp"
#include "compressor/models.hpp"
#include "compressor/nn.hpp"
#include "io/io_test_util.hpp"

using namespace compressor;
using namespace compressor::io;
using compressor::testing::io_test_dir;
using compressor::testing::perturb_buffers;
using compressor::testing::snapshot;

namespace {

using Rules = std::vector<std::pair<std::string, std::string>>;
using Pairs = std::vector<std::pair<std::string, std::string>>;
using Caps = std::vector<std::string>;

/// glob_captures as owning strings, for comparisons.
std::optional<Caps> captures(std::string_view pattern, std::string_view name) {
  const auto c = glob_captures(pattern, name);
  if (!c) return std::nullopt;
  return Caps(c->begin(), c->end());
}

/// Model names conv1.*, bn1.*, fc.* (as a torchvision stem and classifier).
std::unique_ptr<nn::Sequential> torchvision_names_model(std::uint64_t seed) {
  nn::init::manual_seed(seed);
  auto m = std::make_unique<nn::Sequential>();
  m->add("conv1", std::make_unique<nn::Conv2d>(2, 3, 3, 1, 1, true));
  m->add("bn1", std::make_unique<nn::BatchNorm2d>(3));
  m->add("fc", std::make_unique<nn::Linear>(3, 2));
  perturb_buffers(*m, seed);
  return m;
}

/// Writes m's state (PyTorch layout) to path with every name passed through
/// rename, then the extra tensors.
void save_renamed(nn::Module& m, const std::filesystem::path& path,
                  const std::function<std::string(const std::string&)>& rename,
                  const std::function<void(SafetensorsWriter&)>& extra = {}) {
  SafetensorsWriter all;
  add_state(all, m);
  auto f = SafetensorsFile::from_bytes(all.bytes());
  SafetensorsWriter w;
  for (const auto& t : f.tensors()) {
    io::detail::dispatch_dtype(*t.dtype,
                               [&]<class T>() { w.add<T>(rename(t.name), f.read<T>(t)); });
  }
  if (extra) extra(w);
  w.write(path);
}

/// "conv1.*" -> "stem.conv.*", "bn1.*" -> "stem.bn.*", "fc.*" -> "classifier.*",
/// "layerL.B.rest" -> "stages.L.blocks.B.rest".
std::string other_name(const std::string& n) {
  auto starts = [&](const std::string& p) { return n.rfind(p, 0) == 0; };
  if (starts("conv1.")) return "stem.conv." + n.substr(6);
  if (starts("bn1.")) return "stem.bn." + n.substr(4);
  if (starts("fc.")) return "classifier." + n.substr(3);
  if (starts("layer")) {
    const auto dot = n.find('.', 7);  // "layerL.B.rest": the dot after B
    return "stages." + n.substr(5, 1) + ".blocks." + n.substr(7, dot - 7) + n.substr(dot);
  }
  return n;
}

/// The rules that undo other_name.
Rules other_name_rules() {
  return {{"stem.conv.*", "conv1.*"},
          {"stem.bn.*", "bn1.*"},
          {"stages.*.blocks.*.*", "layer*.*.*"},
          {"classifier.weight", "fc.weight"},
          {"classifier.bias", "fc.bias"}};
}

/// All ways pattern matches name, as the captures' lengths; the smallest
/// (lexicographically) is the leftmost-shortest match.
void all_matches(std::string_view p, std::string_view n, std::vector<std::size_t>& lens,
                 std::vector<std::vector<std::size_t>>& out) {
  if (p.empty()) {
    if (n.empty()) out.push_back(lens);
    return;
  }
  if (p[0] == '*') {
    for (std::size_t k = 0; k <= n.size(); ++k) {
      lens.push_back(k);
      all_matches(p.substr(1), n.substr(k), lens, out);
      lens.pop_back();
    }
  } else if (!n.empty() && (p[0] == '?' || p[0] == n[0])) {
    all_matches(p.substr(1), n.substr(1), lens, out);
  }
}

/// The brute-force leftmost-shortest captures, or nullopt.
std::optional<Caps> oracle_captures(std::string_view p, std::string_view n) {
  std::vector<std::size_t> lens;
  std::vector<std::vector<std::size_t>> all;
  all_matches(p, n, lens, all);
  if (all.empty()) return std::nullopt;
  const auto best = *std::min_element(all.begin(), all.end());
  // Rebuild the captures from the lengths by walking the pattern.
  Caps caps;
  std::size_t at = 0, k = 0;
  for (const char c : p) {
    if (c == '*') {
      caps.emplace_back(n.substr(at, best[k]));
      at += best[k++];
    } else {
      ++at;
    }
  }
  return caps;
}

}  // namespace

TEST_CASE("glob_captures: what each '*' matched, leftmost-shortest", "[io][checkpoint][rename]") {
  CHECK(captures("stem.conv.*", "stem.conv.weight") == Caps{"weight"});
  CHECK(captures("stages.*.blocks.*.*", "stages.2.blocks.0.downsample.1.running_var") ==
        Caps{"2", "0", "downsample.1.running_var"});
  // Several ways to match: each '*' in turn takes the shortest run.
  CHECK(captures("*.*", "layer1.0.conv1.weight") == Caps{"layer1", "0.conv1.weight"});
  CHECK(captures("*.*.*", "a.b.c.d") == Caps{"a", "b", "c.d"});
  CHECK(captures("a*b*c", "aXXbYYbc") == Caps{"XX", "YYb"});
  CHECK(captures("*aa*", "aaa") == Caps{"", "a"});
  CHECK(captures("**", "ab") == Caps{"", "ab"});
  CHECK(captures("*", "") == Caps{""});
  CHECK(captures("layer?.*.*", "layer3.1.bn2.running_var") == Caps{"1", "bn2.running_var"});
  CHECK(captures("*.weight", "fc.weight") == Caps{"fc"});
  // No '*': a plain glob match, nothing captured.
  CHECK(captures("fc.weight", "fc.weight") == Caps{});
  CHECK(captures("fc.weigh?", "fc.weight") == Caps{});
  // No match.
  CHECK_FALSE(captures("*.weight", "fc.bias"));
  CHECK_FALSE(captures("fc.*", "layer1.fc.weight"));
  CHECK_FALSE(captures("a*a", "a"));
  CHECK_FALSE(captures("layer?.*", "layer10.0.conv1.weight"));
  CHECK_FALSE(captures("fc.weight", "fc.weights"));
  CHECK_FALSE(captures("", "x"));
}

TEST_CASE("glob_captures agrees with glob_match and a brute-force leftmost-shortest oracle",
          "[io][checkpoint][rename]") {
  Rng rng(11);
  const std::string pattern_chars = "ab.*?";
  const std::string name_chars = "ab.";
  int matched = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string p, n;
    const auto plen = rng.below(7), nlen = rng.below(8);
    for (std::uint64_t i = 0; i < plen; ++i) p += pattern_chars[rng.below(pattern_chars.size())];
    for (std::uint64_t i = 0; i < nlen; ++i) n += name_chars[rng.below(name_chars.size())];
    const auto got = captures(p, n);
    const auto want = oracle_captures(p, n);
    INFO("pattern '" << p << "', name '" << n << "'");
    REQUIRE(got.has_value() == glob_match(p, n));
    REQUIRE(got == want);
    matched += got.has_value();
  }
  CHECK(matched > 2000);  // the random cases are not all misses
}

TEST_CASE("rename rules: exact names, captures in order, first matching rule",
          "[io][checkpoint][rename]") {
  using io::detail::apply_rename;
  CHECK(apply_rename({{"classifier.weight", "fc.weight"}}, "classifier.weight") == "fc.weight");
  CHECK_FALSE(apply_rename({{"classifier.weight", "fc.weight"}}, "classifier.bias"));
  // A rule without '*' is one exact name: its '?' is not a wildcard.
  CHECK_FALSE(apply_rename({{"fc.weigh?", "x"}}, "fc.weight"));
  CHECK(apply_rename({{"fc.weigh?", "x"}}, "fc.weigh?") == "x");
  // Captures go into the '*'s of 'to' in order, leftmost-shortest.
  CHECK(apply_rename({{"*.*", "*_*"}}, "a.b.c") == "a_b.c");
  CHECK(apply_rename({{"stages.*.blocks.*.*", "layer*.*.*"}}, "stages.4.blocks.1.bn2.bias") ==
        "layer4.1.bn2.bias");
  CHECK(apply_rename({{"blk*.*", "*.layer*"}}, "blk3.conv") == "3.layerconv");
  // Fewer '*' in 'to' than in 'from': the first captures are used.
  CHECK(apply_rename({{"*.stem.*", "conv1.*"}}, "m.stem.w") == "conv1.m");
  CHECK(apply_rename({{"old.*", "fc.weight"}}, "old.anything") == "fc.weight");
  // The first rule that matches wins; later ones are not tried.
  const Rules rules{{"stem.conv.weight", "conv1.weight"}, {"stem.*", "nope.*"}, {"*", "all.*"}};
  CHECK(apply_rename(rules, "stem.conv.weight") == "conv1.weight");
  CHECK(apply_rename(rules, "stem.conv.bias") == "nope.conv.bias");
  CHECK(apply_rename(rules, "fc.bias") == "all.fc.bias");
  CHECK_FALSE(apply_rename({}, "fc.bias"));
}

TEST_CASE("an exact rename loads a tensor saved under another name", "[io][checkpoint][rename]") {
  const auto dir = io_test_dir("rename_exact");
  auto src = torchvision_names_model(1);
  auto dst = torchvision_names_model(2);
  const auto before = snapshot(*dst);
  REQUIRE(before != snapshot(*src));
  save_renamed(*src, dir / "m.safetensors", [](const std::string& n) {
    return n == "fc.weight" ? std::string("classifier.weight") : n;
  });

  SECTION("without the rule the load fails and changes nothing") {
    CHECK_THROWS_WITH(load_checkpoint(*dst, dir / "m.safetensors"),
                      Catch::Contains("missing from the file") && Catch::Contains("'fc.weight'"));
    CHECK(snapshot(*dst) == before);
  }
  SECTION("with the rule every tensor loads") {
    LoadOptions o;
    o.rename = {{"classifier.weight", "fc.weight"}};
    const LoadReport r = load_checkpoint(*dst, dir / "m.safetensors", o);
    CHECK(snapshot(*dst) == snapshot(*src));
    CHECK(r.renamed == Pairs{{"classifier.weight", "fc.weight"}});
    CHECK(r.loaded.size() == 9);
    CHECK(std::find(r.loaded.begin(), r.loaded.end(), "fc.weight") != r.loaded.end());
    CHECK(r.unexpected.empty());
    CHECK(r.missing.empty());
    CHECK_THAT(r.summary(), Catch::EndsWith("loaded 9, ignored 0, unexpected 0, missing 0, "
                                            "renamed 1"));
  }
  SECTION("an exact rule does not treat '?' as a wildcard") {
    LoadOptions o;
    o.rename = {{"classifier.weigh?", "fc.weight"}};
    CHECK_THROWS_WITH(load_checkpoint(*dst, dir / "m.safetensors", o),
                      Catch::Contains("missing from the file") && Catch::Contains("'fc.weight'"));
    CHECK(snapshot(*dst) == before);
  }
}

TEST_CASE("glob rename rules load a ResNet-18 saved under other names bit-exactly",
          "[io][checkpoint][rename]") {
  const auto dir = io_test_dir("rename_resnet");
  models::ResNetOptions ro;
  ro.width = 0.25;
  nn::init::manual_seed(3);
  models::ResNet18 src(ro);
  perturb_buffers(src, 3);
  save_renamed(src, dir / "other.safetensors", other_name);
  nn::init::manual_seed(4);
  models::ResNet18 dst(ro);
  perturb_buffers(dst, 4);
  const auto before = snapshot(dst);
  REQUIRE(before != snapshot(src));

  // The file really has other names.
  auto f = SafetensorsFile::open(dir / "other.safetensors");
  REQUIRE(f.find("stem.conv.weight") != nullptr);
  REQUIRE(f.find("stages.2.blocks.0.downsample.1.running_var") != nullptr);
  REQUIRE(f.find("conv1.weight") == nullptr);
  CHECK_THROWS_WITH(load_checkpoint(dst, dir / "other.safetensors"),
                    Catch::Contains("missing from the file"));
  CHECK(snapshot(dst) == before);

  LoadOptions o;
  o.rename = other_name_rules();
  const LoadReport r = load_checkpoint(dst, dir / "other.safetensors", o);
  CHECK(snapshot(dst) == snapshot(src));  // every parameter and buffer, bit for bit
  CHECK(r.loaded.size() == 62 + 60);
  CHECK(r.renamed.size() == 62 + 60);  // every name in the file was renamed
  CHECK(r.unexpected.empty());
  CHECK(r.missing.empty());
  CHECK(r.renamed.front() ==
        std::pair<std::string, std::string>{"stem.conv.weight", "conv1.weight"});
  auto target_of = [&](const std::string& file_name) {
    for (const auto& [from, to] : r.renamed)
      if (from == file_name) return to;
    return std::string("<not renamed>");
  };
  CHECK(target_of("stem.bn.running_mean") == "bn1.running_mean");
  CHECK(target_of("stages.2.blocks.0.downsample.1.running_var") ==
        "layer2.0.downsample.1.running_var");
  CHECK(target_of("stages.4.blocks.1.conv2.weight") == "layer4.1.conv2.weight");
  CHECK(target_of("classifier.weight") == "fc.weight");
  // The OIHW -> OHWI conversion still applies to renamed conv weights.
  auto& conv = dynamic_cast<nn::Conv2d&>(*dst.find("conv1"));
  const auto w = f.read<float>("stem.conv.weight");
  CHECK(w(5, 2, 6, 1) == conv.weight()(5, 6, 1, 2));
}

TEST_CASE("rename rules apply after ignore and before the prefixes", "[io][checkpoint][rename]") {
  const auto dir = io_test_dir("rename_prefix");
  models::ResNetOptions ro;
  ro.width = 0.25;
  nn::init::manual_seed(3);
  models::ResNet18 src(ro);
  perturb_buffers(src, 3);
  save_renamed(src, dir / "other.safetensors", other_name);

  models::EfRegressorOptions eo;
  eo.width = 0.25;
  nn::init::manual_seed(4);
  models::EfRegressor ef(eo);
  const auto before = snapshot(ef);
  const auto head_before = snapshot(ef.head());

  SECTION("rename, then add_prefix, with ignore on the names as written in the file") {
    LoadOptions o;
    o.rename = other_name_rules();
    o.add_prefix = "backbone.";
    o.ignore = {"classifier.*"};  // the file's name: the rule to "fc.*" never sees them
    o.allow_missing = {"head.*"};
    const LoadReport r = load_checkpoint(ef, dir / "other.safetensors", o);
    CHECK(r.ignored == std::vector<std::string>{"classifier.weight", "classifier.bias"});
    CHECK(r.loaded.size() == 60 + 60);
    CHECK(r.renamed.size() == 60 + 60);
    CHECK(r.renamed.front() ==
          std::pair<std::string, std::string>{"stem.conv.weight", "backbone.conv1.weight"});
    auto src_state = snapshot(src);
    src_state.erase(src_state.begin() + 60, src_state.begin() + 62);  // fc.weight, fc.bias
    CHECK(snapshot(ef.backbone()) == src_state);
    CHECK(snapshot(ef.head()) == head_before);
  }
  SECTION("ignore does not see renamed names; the error says what they became") {
    LoadOptions o;
    o.rename = other_name_rules();
    o.add_prefix = "backbone.";
    o.ignore = {"fc.*"};  // matches no name in the file
    o.allow_missing = {"head.*"};
    try {
      (void)load_checkpoint(ef, dir / "other.safetensors", o);
      FAIL("no exception");
    } catch (const IoError& e) {
      const std::string msg = e.what();
      CHECK_THAT(msg, Catch::Contains((dir / "other.safetensors").string()));
      CHECK_THAT(msg, Catch::Contains("2 tensor(s) in the file match no model tensor after the "
                                      "LoadOptions::rename rules and the name prefix mapping"));
      CHECK_THAT(msg, Catch::Contains("'classifier.weight' (renamed 'backbone.fc.weight')"));
      CHECK_THAT(msg, Catch::Contains("'classifier.bias' (renamed 'backbone.fc.bias')"));
    }
    CHECK(snapshot(ef) == before);
  }
  SECTION("strip_prefix applies to the renamed name, rules see the name as written") {
    auto m = torchvision_names_model(5);
    auto m_before = snapshot(*m);
    auto small_src = torchvision_names_model(6);
    save_renamed(*small_src, dir / "module.safetensors",
                 [](const std::string& n) { return "module." + other_name(n); });
    LoadOptions o;
    o.strip_prefix = "module.";
    o.rename = {{"stem.conv.*", "conv1.*"},  // written for the stripped name: matches nothing
                {"module.stem.bn.*", "module.bn1.*"},
                {"module.classifier.*", "fc.*"}};  // loses "module.": matches nothing after
    try {
      (void)load_checkpoint(*m, dir / "module.safetensors", o);
      FAIL("no exception");
    } catch (const IoError& e) {
      CHECK_THAT(e.what(), Catch::Contains("missing from the file") &&
                               Catch::Contains("'conv1.weight'") && Catch::Contains("'fc.bias'"));
      CHECK_THAT(e.what(), !Catch::Contains("'bn1.running_var'"));
    }
    CHECK(snapshot(*m) == m_before);
    o.rename = {{"module.stem.conv.*", "module.conv1.*"},
                {"module.stem.bn.*", "module.bn1.*"},
                {"module.classifier.*", "module.fc.*"}};
    const LoadReport r = load_checkpoint(*m, dir / "module.safetensors", o);
    CHECK(snapshot(*m) == snapshot(*small_src));
    CHECK(r.renamed.size() == 9);
    const std::pair<std::string, std::string> fc_bias{"module.classifier.bias", "fc.bias"};
    const std::pair<std::string, std::string> nbt{"module.stem.bn.num_batches_tracked",
                                                  "bn1.num_batches_tracked"};
    CHECK(std::find(r.renamed.begin(), r.renamed.end(), fc_bias) != r.renamed.end());
    CHECK(std::find(r.renamed.begin(), r.renamed.end(), nbt) != r.renamed.end());
  }
}

TEST_CASE("a rename rule with more '*' in 'to' than in 'from' is a ValueError",
          "[io][checkpoint][rename]") {
  const auto dir = io_test_dir("rename_bad_rule");
  auto src = torchvision_names_model(1);
  auto dst = torchvision_names_model(2);
  const auto before = snapshot(*dst);
  save_renamed(*src, dir / "other.safetensors", other_name);
  LoadOptions o;
  o.rename = {{"stem.conv.*", "conv1.*"}, {"stem.bn.*", "bn1.*.*"}};
  CHECK_THROWS_AS(load_checkpoint(*dst, dir / "other.safetensors", o), ValueError);
  CHECK_THROWS_WITH(load_checkpoint(*dst, dir / "other.safetensors", o),
                    Catch::Contains("LoadOptions::rename[1] = {\"stem.bn.*\", \"bn1.*.*\"}") &&
                        Catch::Contains("2 '*' in 'to' but 1 in 'from'"));
  o.rename = {{"classifier.weight", "fc.*"}};
  CHECK_THROWS_WITH(load_checkpoint(*dst, dir / "other.safetensors", o),
                    Catch::Contains("rename[0] = {\"classifier.weight\", \"fc.*\"}") &&
                        Catch::Contains("1 '*' in 'to' but 0 in 'from'"));
  // Checked before any matching: a bad rule that matches no name is still an error.
  o.rename = {{"nothing.*", "a**"}};
  o.strict = false;
  CHECK_THROWS_AS(load_checkpoint(*dst, dir / "other.safetensors", o), ValueError);
  CHECK(snapshot(*dst) == before);
  // As many '*' as 'from', or fewer, is fine.
  o.rename = {{"stem.*.*", "*1.*"}, {"classifier.*", "fc.*"}};
  o.strict = true;
  (void)load_checkpoint(*dst, dir / "other.safetensors", o);
  CHECK(snapshot(*dst) == snapshot(*src));
}

TEST_CASE("two file tensors on one model name are an IoError and change nothing",
          "[io][checkpoint][rename]") {
  const auto dir = io_test_dir("rename_collision");
  auto src = torchvision_names_model(1);
  auto dst = torchvision_names_model(2);
  const auto before = snapshot(*dst);
  const auto path = dir / "c.safetensors";
  auto expect_collision = [&](const LoadOptions& o, const std::string& a, const std::string& b,
                              const std::string& target) {
    try {
      (void)load_checkpoint(*dst, path, o);
      FAIL("no exception");
    } catch (const IoError& e) {
      const std::string msg = e.what();
      CHECK_THAT(msg, Catch::Contains(path.string()));
      CHECK_THAT(msg, Catch::Contains("tensors '" + a + "' and '" + b +
                                      "' in the file both map to model tensor '" + target + "'"));
    }
    CHECK(snapshot(*dst) == before);
  };

  SECTION("a renamed tensor onto a name the file already has") {
    save_renamed(
        *src, path, [](const std::string& n) { return n; },
        [](SafetensorsWriter& w) {
          w.add<float>("classifier.weight", Tensor<float>(Shape{2, 3}));
        });
    LoadOptions o;
    o.rename = {{"classifier.weight", "fc.weight"}};
    expect_collision(o, "fc.weight", "classifier.weight", "fc.weight");
    o.strict = false;  // not a strictness question: which value would win?
    expect_collision(o, "fc.weight", "classifier.weight", "fc.weight");
  }
  SECTION("a glob rule that sends several names to one") {
    save_renamed(*src, path, other_name);
    LoadOptions o;
    o.rename = {{"stem.conv.*", "conv1.weight"}};
    expect_collision(o, "stem.conv.weight", "stem.conv.bias", "conv1.weight");
  }
  SECTION("two rules onto one name, with a prefix") {
    save_renamed(*src, path, [](const std::string& n) { return "m." + other_name(n); });
    LoadOptions o;
    o.strip_prefix = "m.";
    o.rename = {{"m.classifier.bias", "m.fc.weight"}, {"m.classifier.*", "m.fc.*"}};
    expect_collision(o, "m.classifier.weight", "m.classifier.bias", "fc.weight");
  }
}

TEST_CASE("rename rules that match nothing leave strict loading as it was",
          "[io][checkpoint][rename]") {
  const auto dir = io_test_dir("rename_no_match");
  auto src = torchvision_names_model(1);
  auto dst = torchvision_names_model(2);
  const auto before = snapshot(*dst);
  LoadOptions o;
  o.rename = {{"nothing.*", "conv1.*"}, {"stem.conv", "conv1"}};

  SECTION("a file with the model's names loads as without rules") {
    save_renamed(*src, dir / "same.safetensors", [](const std::string& n) { return n; });
    const LoadReport r = load_checkpoint(*dst, dir / "same.safetensors", o);
    CHECK(snapshot(*dst) == snapshot(*src));
    CHECK(r.renamed.empty());
    CHECK_THAT(r.summary(), Catch::EndsWith("loaded 9, ignored 0, unexpected 0, missing 0"));
  }
  SECTION("a file with other names fails as without rules") {
    save_renamed(*src, dir / "other.safetensors", other_name);
    CHECK_THROWS_WITH(load_checkpoint(*dst, dir / "other.safetensors", o),
                      Catch::Contains("9 tensor(s) of the model are missing from the file") &&
                          Catch::Contains("'conv1.weight'"));
    o.allow_missing = {"*"};
    try {
      (void)load_checkpoint(*dst, dir / "other.safetensors", o);
      FAIL("no exception");
    } catch (const IoError& e) {
      const std::string msg = e.what();
      CHECK_THAT(msg, Catch::Contains("9 tensor(s) in the file match no model tensor after the "
                                      "LoadOptions::rename rules: 'stem.conv.weight', "));
      CHECK_THAT(msg, !Catch::Contains("(renamed"));
      CHECK_THAT(msg, Catch::Contains("and 3 more (LoadOptions::ignore skips them"));
    }
    CHECK(snapshot(*dst) == before);
  }
  SECTION("an unexpected tensor in an otherwise good file") {
    save_renamed(
        *src, dir / "extra.safetensors", [](const std::string& n) { return n; },
        [](SafetensorsWriter& w) { w.add<float>("bn1.extra", Tensor<float>(Shape{3})); });
    CHECK_THROWS_WITH(load_checkpoint(*dst, dir / "extra.safetensors", o),
                      Catch::Contains("1 tensor(s) in the file match no model tensor after the "
                                      "LoadOptions::rename rules: 'bn1.extra' (LoadOptions::"));
    CHECK(snapshot(*dst) == before);
  }
}

TEST_CASE("LoadReport::renamed lists every renamed file tensor, loaded or not",
          "[io][checkpoint][rename]") {
  const auto dir = io_test_dir("rename_report");
  auto src = torchvision_names_model(1);
  auto dst = torchvision_names_model(2);
  const auto before = snapshot(*dst);
  save_renamed(*src, dir / "other.safetensors", other_name);
  LoadOptions o;
  o.strict = false;
  o.rename = {{"stem.conv.*", "conv1.*"}, {"classifier.weight", "head.weight"}};
  const LoadReport r = load_checkpoint(*dst, dir / "other.safetensors", o);
  CHECK(r.renamed == Pairs{{"stem.conv.weight", "conv1.weight"},
                           {"stem.conv.bias", "conv1.bias"},
                           {"classifier.weight", "head.weight"}});
  CHECK(r.loaded == std::vector<std::string>{"conv1.weight", "conv1.bias"});
  CHECK(std::find(r.unexpected.begin(), r.unexpected.end(), "classifier.weight") !=
        r.unexpected.end());
  CHECK(r.unexpected.size() == 7);  // 5 stem.bn.*, classifier.weight, classifier.bias
  CHECK(r.missing.size() == 7);
  CHECK_THAT(r.summary(), Catch::EndsWith("loaded 2, ignored 0, unexpected 7, missing 7, "
                                          "renamed 3"));
  // Only the loaded tensors changed.
  CHECK(snapshot(dst->child(0)) == snapshot(src->child(0)));
  CHECK(snapshot(dst->child(1)) != snapshot(src->child(1)));
  auto after = snapshot(*dst);
  auto expect = before;
  const auto conv_src = snapshot(src->child(0));
  expect[0] = conv_src[0];
  expect[1] = conv_src[1];
  CHECK(after == expect);
}
