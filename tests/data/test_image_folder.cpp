#include <stb_image_write.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <cstdint>
#include <string>
#include <vector>

#include "compressor/data/image_folder.hpp"
#include "data/data_test_util.hpp"

using namespace compressor;
using namespace compressor::data;
using Catch::Matchers::Contains;

namespace {

std::vector<std::uint8_t> pattern(int w, int h, int seed) {
  std::vector<std::uint8_t> px(std::size_t(w * h * 3));
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = std::uint8_t((i * 13 + seed * 41) % 256);
  return px;
}

void write_image(const std::filesystem::path& file, int w, int h, int seed) {
  std::filesystem::create_directories(file.parent_path());
  const auto px = pattern(w, h, seed);
  std::string ext = file.extension().string();
  for (auto& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
  int ok = 0;
  if (ext == ".png")
    ok = stbi_write_png(file.c_str(), w, h, 3, px.data(), w * 3);
  else if (ext == ".bmp")
    ok = stbi_write_bmp(file.c_str(), w, h, 3, px.data());
  else
    ok = stbi_write_jpg(file.c_str(), w, h, 3, px.data(), 95);
  REQUIRE(ok != 0);
}

}  // namespace

TEST_CASE("image folder: classes sorted, labels, exact pixels for png and bmp", "[data][image]") {
  const auto root = testing::scratch_dir("imgf_basic");
  write_image(root / "zebra" / "b.png", 8, 6, 1);
  write_image(root / "zebra" / "a.bmp", 8, 6, 2);
  write_image(root / "ant" / "x.PNG", 8, 6, 3);
  write_image(root / "mole" / "1.jpg", 8, 6, 4);
  testing::write_bytes(root / "mole" / "notes.txt", "not an image");
  std::filesystem::create_directories(root / ".hidden");

  const ImageSet s = load_image_folder(root);
  REQUIRE(s.classes == std::vector<std::string>{"ant", "mole", "zebra"});
  REQUIRE(s.images.shape() == Shape{4, 6, 8, 3});
  CHECK(std::vector<int>(s.labels.flat().begin(), s.labels.flat().end()) ==
        std::vector<int>{0, 1, 2, 2});
  auto check_exact = [&](std::int64_t i, int seed) {
    const auto want = pattern(8, 6, seed);
    const auto got = s.images.slice(i);
    INFO("image " << i);
    for (std::int64_t k = 0; k < got.numel(); ++k) REQUIRE(got[k] == want[std::size_t(k)]);
  };
  check_exact(0, 3);
  check_exact(2, 2);  // a.bmp sorts before b.png
  check_exact(3, 1);
  const auto jpg = pattern(8, 6, 4);  // lossy: close on average
  double err = 0;
  for (std::int64_t k = 0; k < 8 * 6 * 3; ++k)
    err += std::abs(s.images.slice(1)[k] - jpg[std::size_t(k)]);
  CHECK(err / (8 * 6 * 3) < 40);

  ImageFolderOptions grey;
  grey.channels = 1;
  grey.max_per_class = 1;
  const ImageSet g = load_image_folder(root, grey);
  CHECK(g.images.shape() == Shape{3, 6, 8, 1});
  CHECK(g.labels[2] == 2);
}

TEST_CASE("image folder: unreadable and wrongly sized images", "[data][image]") {
  const auto root = testing::scratch_dir("imgf_bad");
  write_image(root / "a" / "0.png", 4, 4, 1);
  write_image(root / "a" / "1.png", 4, 4, 2);
  testing::write_bytes(root / "b" / "broken.png", "\x89PNG\r\n\x1a\n garbage");
  write_image(root / "b" / "wide.png", 5, 4, 3);
  write_image(root / "b" / "ok.png", 4, 4, 4);

  CHECK_THROWS_AS(load_image_folder(root), IoError);
  CHECK_THROWS_WITH(load_image_folder(root), Contains("broken.png") && Contains("cannot decode"));
  std::filesystem::remove(root / "b" / "broken.png");
  CHECK_THROWS_WITH(load_image_folder(root),
                    Contains("wide.png") && Contains("5x4") && Contains("expected 4x4"));
  testing::write_bytes(root / "b" / "broken.png", "\x89PNG\r\n\x1a\n garbage");

  testing::WarningLog log;
  ImageFolderOptions opt;
  opt.errors = log.skip_policy();
  const ImageSet s = load_image_folder(root, opt);
  CHECK(s.size() == 3);
  CHECK(s.skipped == 2);
  CHECK(log.messages.size() == 2);
  CHECK(log.any_contains("broken.png"));
  CHECK(log.any_contains("wide.png"));
  CHECK(s.labels[2] == 1);
  CHECK(s.images(2, 0, 0, 0) == pattern(4, 4, 4)[0]);
}

TEST_CASE("image folder: missing or empty root", "[data][image]") {
  const auto root = testing::scratch_dir("imgf_empty");
  CHECK_THROWS_WITH(load_image_folder(root / "nope"), Contains("nope") && Contains("not found"));
  std::filesystem::create_directories(root / "cls");
  CHECK_THROWS_WITH(load_image_folder(root), Contains("no images found"));
  ImageFolderOptions bad;
  bad.channels = 2;
  CHECK_THROWS_AS(load_image_folder(root, bad), ValueError);
}
