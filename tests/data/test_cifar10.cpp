#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "compressor/data/cifar10.hpp"
#include "compressor/data/image_set.hpp"
#include "data/data_test_util.hpp"

using namespace compressor;
using namespace compressor::data;
using Catch::Matchers::Contains;

namespace {

/// n CIFAR-10 records; record r has label labels[r] and pixel p of plane c
/// equal to (r * 7 + c * 50 + p) % 256.
std::string cifar_records(const std::vector<int>& labels) {
  std::string out;
  for (std::size_t r = 0; r < labels.size(); ++r) {
    out += static_cast<char>(labels[r]);
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) out += static_cast<char>((int(r) * 7 + c * 50 + p) % 256);
  }
  return out;
}

std::uint8_t expected_pixel(int r, int c, int p) {
  return std::uint8_t((r * 7 + c * 50 + p) % 256);
}

}  // namespace

TEST_CASE("cifar10: planes become NHWC pixels, labels kept", "[data][cifar]") {
  const auto dir = testing::scratch_dir("cifar_basic");
  testing::write_bytes(dir / "b.bin", cifar_records({3, 0, 9}));
  const ImageSet s = read_cifar10_binary(dir / "b.bin");
  REQUIRE(s.images.shape() == Shape{3, 32, 32, 3});
  CHECK(s.labels[0] == 3);
  CHECK(s.labels[1] == 0);
  CHECK(s.labels[2] == 9);
  CHECK(s.classes.size() == 10);
  CHECK(s.classes[3] == "cat");
  for (int r : {0, 2})
    for (int y : {0, 5, 31})
      for (int x : {0, 17, 31})
        for (int c = 0; c < 3; ++c) CHECK(s.images(r, y, x, c) == expected_pixel(r, c, y * 32 + x));
}

TEST_CASE("cifar10: truncated file is an error naming it; skip keeps whole records",
          "[data][cifar]") {
  const auto dir = testing::scratch_dir("cifar_trunc");
  std::string bytes = cifar_records({1, 2, 3});
  bytes.resize(bytes.size() - 1000);
  testing::write_bytes(dir / "t.bin", bytes);
  CHECK_THROWS_AS(read_cifar10_binary(dir / "t.bin"), IoError);
  CHECK_THROWS_WITH(read_cifar10_binary(dir / "t.bin"),
                    Contains("t.bin") && Contains("truncated") && Contains("3073"));

  testing::WarningLog log;
  const ImageSet s = read_cifar10_binary(dir / "t.bin", log.skip_policy());
  CHECK(s.size() == 2);
  CHECK(s.skipped == 1);
  CHECK(log.messages.size() == 1);
  CHECK(log.any_contains("t.bin"));
  CHECK(s.labels[1] == 2);
}

TEST_CASE("cifar10: label above 9, empty file", "[data][cifar]") {
  const auto dir = testing::scratch_dir("cifar_bad");
  testing::write_bytes(dir / "l.bin", cifar_records({1, 200, 4}));
  CHECK_THROWS_WITH(read_cifar10_binary(dir / "l.bin"),
                    Contains("l.bin") && Contains("record 1") && Contains("label 200"));
  testing::WarningLog log;
  const ImageSet s = read_cifar10_binary(dir / "l.bin", log.skip_policy());
  REQUIRE(s.size() == 2);
  CHECK(s.labels[1] == 4);
  CHECK(s.images(1, 0, 0, 0) == expected_pixel(2, 0, 0));  // record 2 moved up
  CHECK(s.skipped == 1);

  testing::write_bytes(dir / "e.bin", "");
  CHECK_THROWS_WITH(read_cifar10_binary(dir / "e.bin"), Contains("e.bin") && Contains("empty"));
  CHECK_THROWS_WITH(read_cifar10_binary(dir / "absent.bin"), Contains("absent.bin"));
}

TEST_CASE("cifar10: load_cifar10 reads the batch files of a folder", "[data][cifar]") {
  const auto dir = testing::scratch_dir("cifar_dir");
  const auto bin = dir / "cifar-10-batches-bin";
  for (int i = 1; i <= 5; ++i)
    testing::write_bytes(bin / ("data_batch_" + std::to_string(i) + ".bin"),
                         cifar_records({i, i + 1}));
  testing::write_bytes(bin / "test_batch.bin", cifar_records({7}));
  const ImageSet train = load_cifar10(dir, CifarSplit::train);
  REQUIRE(train.size() == 10);
  CHECK(train.labels[0] == 1);
  CHECK(train.labels[9] == 6);
  CHECK(load_cifar10(bin, CifarSplit::test).labels[0] == 7);
  const auto counts = train.class_counts();
  CHECK(counts[0] == 0);
  CHECK(counts[2] == 2);

  std::filesystem::remove(bin / "data_batch_4.bin");
  CHECK_THROWS_WITH(load_cifar10(dir, CifarSplit::train),
                    Contains("data_batch_4.bin") && Contains("not found"));
}

TEST_CASE("class_interleaved_order takes the classes in turn; select copies those images",
          "[data][cifar]") {
  // Class by class, as an image folder lists them, with uneven counts.
  ImageSet s;
  s.classes = {"a", "b", "c"};
  const std::vector<std::int32_t> labels = {0, 0, 0, 1, 2, 2};
  s.labels = Tensor<std::int32_t>(Shape{6});
  s.images = Tensor<std::uint8_t>(Shape{6, 1, 1, 2});
  for (std::int64_t i = 0; i < 6; ++i) {
    s.labels[i] = labels[static_cast<std::size_t>(i)];
    s.images[2 * i] = static_cast<std::uint8_t>(10 * i);
    s.images[2 * i + 1] = static_cast<std::uint8_t>(10 * i + 1);
  }
  const std::vector<std::int64_t> order = class_interleaved_order(s);
  CHECK(order == std::vector<std::int64_t>{0, 3, 4, 1, 5, 2});
  const ImageSet picked = select(s, {4, 1});
  REQUIRE(picked.size() == 2);
  CHECK(picked.classes == s.classes);
  CHECK(picked.labels[0] == 2);
  CHECK(picked.labels[1] == 0);
  CHECK(picked.images[0] == 40);
  CHECK(picked.images[1] == 41);
  CHECK(picked.images[2] == 10);
  CHECK(picked.images[3] == 11);
  CHECK_THROWS_WITH(select(s, {6}), Contains("index 6 outside the set's [0, 6)"));
  s.labels[5] = 3;
  CHECK_THROWS_WITH(class_interleaved_order(s), Contains("image 5 has label 3"));
}
