// The safetensors reader and writer: the exact byte layout, round trips of
// every dtype, and rejection of malformed files with messages that name the
// file and the tensor.
#include <catch2/catch.hpp>
#include <string>

#include "compressor/io/safetensors.hpp"
#include "io/io_test_util.hpp"

using namespace compressor;
using namespace compressor::io;
using compressor::testing::raw_safetensors;

namespace {
/// The IoError message of opening bytes as a file named "bad.safetensors".
std::string open_error(const std::string& bytes) {
  try {
    (void)SafetensorsFile::from_bytes(bytes, "bad.safetensors");
  } catch (const IoError& e) {
    return e.what();
  }
  return "(no error)";
}

const std::string k8(8, '\0');  // 8 data bytes
}  // namespace

TEST_CASE("safetensors writer produces the documented byte layout", "[io][safetensors]") {
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.add<float>("w", Tensor<float>::from(Shape{2}, {1.f, -2.f}));
  w.add<std::int64_t>("n", Tensor<std::int64_t>(Shape{}, 7));
  const std::string b = w.bytes();
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(b[static_cast<std::size_t>(i)]);
  const std::string header = b.substr(8, n);
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("n":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})";
  CHECK(header.substr(0, json.size()) == json);
  CHECK(header.size() - json.size() < 8);  // padded with at most 7 spaces
  CHECK(header.find_first_not_of(' ', json.size()) == std::string::npos);
  CHECK((8 + n) % 8 == 0);  // so the data starts 8-byte aligned
  REQUIRE(b.size() == 8 + n + 16);
  float f[2];
  std::memcpy(f, b.data() + 8 + n, 8);
  CHECK(f[0] == 1.f);
  CHECK(f[1] == -2.f);
  std::int64_t i64 = 0;
  std::memcpy(&i64, b.data() + 8 + n + 8, 8);
  CHECK(i64 == 7);
}

TEST_CASE("safetensors round-trips every dtype, scalars and empty tensors", "[io][safetensors]") {
  const auto dir = compressor::testing::io_test_dir("st_roundtrip");
  SafetensorsWriter w;
  w.add<float>("f", Tensor<float>::from(Shape{2, 3}, {1, 2, 3, 4, 5, -6.5f}));
  w.add<std::int8_t>("i8", Tensor<std::int8_t>::from(Shape{3}, {-128, 0, 127}));
  w.add<std::uint8_t>("u8", Tensor<std::uint8_t>::from(Shape{2}, {0, 255}));
  w.add<std::int32_t>("i32", Tensor<std::int32_t>::from(Shape{1, 1, 1, 1, 2}, {INT32_MIN, 5}));
  w.add<std::int64_t>("i64", Tensor<std::int64_t>(Shape{}, INT64_MAX));
  w.add<float>("empty", Tensor<float>(Shape{0, 4}));
  w.set_metadata("note", "\"quoted\" \xc3\xa9");
  w.write(dir / "t.safetensors");
  CHECK(compressor::testing::list_dir(dir) == std::vector<std::string>{"t.safetensors"});

  auto f = SafetensorsFile::open(dir / "t.safetensors");
  CHECK(f.tensors().size() == 6);
  REQUIRE(f.metadata_value("note") != nullptr);
  CHECK(*f.metadata_value("note") == "\"quoted\" \xc3\xa9");
  const auto tf = f.read<float>("f");
  CHECK(tf.shape() == Shape{2, 3});
  CHECK(tf(1, 2) == -6.5f);
  CHECK(f.read<std::int8_t>("i8")[0] == -128);
  CHECK(f.read<std::uint8_t>("u8")[1] == 255);
  CHECK(f.read<std::int32_t>("i32")[0] == INT32_MIN);
  const auto s = f.read<std::int64_t>("i64");
  CHECK(s.rank() == 0);
  CHECK(s[0] == INT64_MAX);
  CHECK(f.read<float>("empty").shape() == Shape{0, 4});
  // The in-memory image reads the same.
  auto m = SafetensorsFile::from_bytes(w.bytes());
  CHECK(m.read<float>("f")(0, 1) == 2.f);
}

TEST_CASE("safetensors reading checks the name, dtype and rank", "[io][safetensors]") {
  SafetensorsWriter w;
  w.add<float>("f", Tensor<float>(Shape{2}));
  auto f = SafetensorsFile::from_bytes(w.bytes(), "x.safetensors");
  CHECK_THROWS_WITH(f.read<float>("g"), Catch::Contains("x.safetensors") && Catch::Contains("'g'"));
  CHECK_THROWS_WITH(f.read<std::int64_t>("f"), Catch::Contains("'f' has dtype F32, expected I64"));
  const auto six =
      raw_safetensors(R"({"t":{"dtype":"U8","shape":[1,1,1,1,1,2],"data_offsets":[0,2]}})", "ab");
  auto g = SafetensorsFile::from_bytes(six, "six.safetensors");
  CHECK(g.tensors()[0].dims.size() == 6);                                   // listed,
  CHECK_THROWS_WITH(g.read<std::uint8_t>("t"), Catch::Contains("rank 6"));  // but not readable
  const auto half =
      raw_safetensors(R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", "abcd");
  auto h = SafetensorsFile::from_bytes(half, "h.safetensors");
  CHECK_THROWS_WITH(h.read<float>("h"), Catch::Contains("'h' has dtype F16, expected F32"));
}

TEST_CASE("safetensors writer rejects duplicate and reserved names", "[io][safetensors]") {
  SafetensorsWriter w;
  w.add<float>("a", Tensor<float>(Shape{1}));
  CHECK_THROWS_AS(w.add<float>("a", Tensor<float>(Shape{1})), ValueError);
  CHECK_THROWS_AS(w.add<float>("__metadata__", Tensor<float>(Shape{1})), ValueError);
}

TEST_CASE("safetensors rejects malformed files naming the file and the tensor",
          "[io][safetensors]") {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::size_t ok_len = ok_entry.size() + 2;  // the header "{" + ok_entry + "}"
  REQUIRE_NOTHROW(SafetensorsFile::from_bytes(raw_safetensors("{" + ok_entry + "}", k8)));
  // Padding with spaces after the JSON is allowed.
  REQUIRE_NOTHROW(SafetensorsFile::from_bytes(raw_safetensors("{" + ok_entry + "}    ", k8)));

  struct Case {
    const char* what;
    std::string bytes;
    std::vector<std::string> message;
  };
  const std::vector<Case> cases = {
      {"shorter than the length field", std::string(5, '\0'), {"5 bytes is too short"}},
      {"header length beyond the file",
       raw_safetensors("{" + ok_entry + "}", k8).substr(0, 30),
       {"header length " + std::to_string(ok_len) + " runs past the end of the file (30 bytes"}},
      {"absurd header length",
       std::string("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 10),
       {"exceeds the limit"}},
      {"header not an object", raw_safetensors("[1]", ""), {"does not start with '{'"}},
      {"bad JSON",
       raw_safetensors(R"({"a":{"dtype":"F32",,}})", ""),
       {"malformed safetensors header", "at byte 20"}},
      {"duplicate tensor",
       raw_safetensors("{" + ok_entry + "," + ok_entry + "}", k8),
       {"duplicate key \"a\""}},
      {"entry not an object",
       raw_safetensors(R"({"a":[1]})", ""),
       {"tensor 'a'", "expected an object"}},
      {"missing field",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[2]}})", k8),
       {"tensor 'a'", "missing field \"data_offsets\""}},
      {"unknown field",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0],"x":1}})", ""),
       {"tensor 'a'", "unexpected field \"x\""}},
      {"unknown dtype",
       raw_safetensors(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", k8),
       {"tensor 'a'", "unknown dtype \"F33\""}},
      {"negative dim",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", k8),
       {"tensor 'a'", "not a non-negative integer"}},
      {"fractional dim",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", k8),
       {"tensor 'a'", "not a non-negative integer"}},
      {"shape overflow",
       raw_safetensors(
           R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", k8),
       {"tensor 'a'", "too many elements"}},
      {"int64 overflow in an empty shape",
       raw_safetensors(
           R"({"a":{"dtype":"F32","shape":[4611686018427387904,2,0],"data_offsets":[0,0]}})", ""),
       {"tensor 'a'", "too many elements"}},
      {"byte size overflow",
       raw_safetensors(
           R"({"a":{"dtype":"I64","shape":[4611686018427387904],"data_offsets":[0,8]}})", k8),
       {"tensor 'a'", "too large"}},
      {"offsets not a pair",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", k8),
       {"tensor 'a'", "not a pair"}},
      {"offsets reversed",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", k8),
       {"tensor 'a'", "end before they begin"}},
      {"size mismatch",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", k8),
       {"tensor 'a'", "span 8 bytes", "need 12 bytes"}},
      {"offsets out of range",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", k8),
       {"tensor 'a'", "past the end of the data (8 bytes"}},
      {"truncated data",
       raw_safetensors("{" + ok_entry + "}", k8).substr(0, 8 + ok_len + 5),
       {"tensor 'a'", "past the end of the data (5 bytes", "truncated"}},
      {"overlap",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                       k8),
       {"tensor 'b'", "overlap tensor 'a'"}},
      {"hole",
       raw_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                       std::string(12, '\0')),
       {"tensor 'b'", "leave a hole", "begin at 4"}},
      {"trailing bytes",
       raw_safetensors("{" + ok_entry + "}", k8 + "xx"),
       {"cover 8 of the 10 data bytes"}},
      {"metadata not an object",
       raw_safetensors(R"({"__metadata__":[]})", ""),
       {"\"__metadata__\" is not an object"}},
      {"metadata value not a string",
       raw_safetensors(R"({"__metadata__":{"k":1}})", ""),
       {"metadata \"k\" is not a string"}},
      {"deep nesting",
       raw_safetensors("{\"a\":" + std::string(10000, '['), ""),
       {"nesting deeper"}},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const std::string msg = open_error(c.bytes);
    CHECK_THAT(msg, Catch::Contains("bad.safetensors"));
    for (const auto& part : c.message) CHECK_THAT(msg, Catch::Contains(part));
  }
}

TEST_CASE("safetensors names the path of a missing or truncated file", "[io][safetensors]") {
  const auto dir = compressor::testing::io_test_dir("st_files");
  CHECK_THROWS_WITH(SafetensorsFile::open(dir / "nope.safetensors"),
                    Catch::Contains("nope.safetensors") && Catch::Contains("no such file"));
  CHECK_THROWS_WITH(SafetensorsFile::open(dir),
                    Catch::Contains(dir.string()) && Catch::Contains("not a regular file"));
  SafetensorsWriter w;
  w.add<float>("weight", Tensor<float>(Shape{16}));
  w.write(dir / "t.safetensors");
  const std::string full = compressor::testing::read_bytes(dir / "t.safetensors");
  compressor::testing::write_bytes(dir / "t.safetensors", full.substr(0, full.size() - 3));
  CHECK_THROWS_WITH(SafetensorsFile::open(dir / "t.safetensors"),
                    Catch::Contains((dir / "t.safetensors").string()) &&
                        Catch::Contains("tensor 'weight'") && Catch::Contains("truncated"));
}
