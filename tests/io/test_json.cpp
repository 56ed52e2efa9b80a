// The strict JSON parser and writer of include/compressor/io/json.hpp.
#include <catch2/catch.hpp>
#include <string>

#include "compressor/io/json.hpp"

using namespace compressor;
namespace json = compressor::io::json;

namespace {
std::string parse_error(std::string_view text) {
  try {
    (void)json::parse(text);
  } catch (const json::JsonError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST_CASE("JSON parses values, keeps key order and exact 64-bit integers", "[io][json]") {
  const auto v = json::parse(
      R"( {"b": [1, -2, 3.5, 1e3, true, false, null], "a": {"x": "y\n\u00e9\ud83d\ude00"},)"
      R"( "big": 18446744073709551615, "neg": -9223372036854775808} )");
  REQUIRE(v.is_object());
  const auto& o = v.as_object();
  REQUIRE(o.size() == 4);
  CHECK(o[0].first == "b");
  CHECK(o[1].first == "a");
  const auto& b = v.find("b")->as_array();
  CHECK(b[0].as_uint64() == 1);
  CHECK(b[1].as_int64() == -2);
  CHECK_FALSE(b[1].is_uint64());
  CHECK(b[2].as_double() == 3.5);
  CHECK_FALSE(b[2].is_int64());
  CHECK(b[3].as_double() == 1000.0);
  CHECK_FALSE(b[3].is_uint64());  // an exponent makes it a non-integer literal
  CHECK(b[4].as_bool());
  CHECK(b[6].is_null());
  CHECK(v.find("a")->find("x")->as_string() == "y\n\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.find("big")->as_uint64() == 18446744073709551615ull);
  CHECK_FALSE(v.find("big")->is_int64());
  CHECK(v.find("neg")->as_int64() == INT64_MIN);
  CHECK(v.find("missing") == nullptr);
}

TEST_CASE("JSON rejects malformed input with the position", "[io][json]") {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case c : {
           Case{"", "unexpected end of input"},
           Case{"{", "expected a string key"},
           Case{"{\"a\":1,}", "expected a string key"},
           Case{"[1,]", "unexpected character ']'"},
           Case{"[1 2]", "expected ',' or ']'"},
           Case{"{\"a\" 1}", "expected ':'"},
           Case{"{\"a\":1} x", "unexpected content after"},
           Case{"01", "leading zero"},
           Case{"-", "expected a digit"},
           Case{"1.", "expected a digit after '.'"},
           Case{"1e", "expected a digit in exponent"},
           Case{"1e999", "number out of range"},
           Case{"tru", "invalid literal"},
           Case{"\"abc", "unterminated string"},
           Case{"\"a\x01\"", "control character"},
           Case{"\"\\x\"", "invalid escape"},
           Case{"\"\\u12\"", "truncated \\u escape"},
           Case{"\"\\u12zz\"", "invalid hex digit"},
           Case{"\"\\ud800\"", "high surrogate without a low surrogate"},
           Case{"\"\\udc00\"", "lone low surrogate"},
           Case{"\"\xff\"", "invalid UTF-8 byte"},
           Case{"\"\xc3", "truncated UTF-8"},
           Case{"\"\xc3(\"", "invalid UTF-8 continuation"},
           Case{"\"\xed\xa0\x80\"", "invalid UTF-8 sequence"},  // encoded surrogate
           Case{"\"\xc0\xaf\"", "invalid UTF-8 byte"},          // overlong
           Case{"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
           Case{"// c\n1", "unexpected character '/'"},
       }) {
    INFO(c.text);
    const std::string msg = parse_error(c.text);
    CHECK_THAT(msg, Catch::Contains(c.message));
    CHECK_THAT(msg, Catch::Contains("at byte"));
  }
  // Line and column are counted from 1.
  CHECK_THAT(parse_error("{\n  \"a\": 1,\n  ]"), Catch::Contains("line 3, column 3"));
}

TEST_CASE("JSON bounds the nesting depth instead of recursing without limit", "[io][json]") {
  const std::string deep_ok = std::string(64, '[') + std::string(64, ']');
  CHECK_NOTHROW(json::parse(deep_ok));
  const std::string too_deep = std::string(65, '[') + std::string(65, ']');
  CHECK_THAT(parse_error(too_deep), Catch::Contains("nesting deeper than 64"));
  // A million opening brackets fail fast at the limit, without a stack overflow.
  CHECK_THAT(parse_error(std::string(1'000'000, '[')), Catch::Contains("nesting deeper"));
  CHECK_THAT(parse_error(std::string(100'000, '{') + "}"), Catch::Contains("at byte"));
}

TEST_CASE("JSON writer escapes strings and round-trips through the parser", "[io][json]") {
  json::Object o;
  o.emplace_back("s", json::Value("q\"b\\n\n\t\x01\xc3\xa9"));
  o.emplace_back("n", json::Value(std::int64_t{-5}));
  o.emplace_back("u", json::Value(std::uint64_t{18446744073709551615ull}));
  o.emplace_back("d", json::Value(0.1));
  o.emplace_back("a", json::Value(json::Array{json::Value(true), json::Value(nullptr)}));
  const std::string text = json::dump(json::Value(o));
  CHECK(text ==
        "{\"s\":\"q\\\"b\\\\n\\n\\t\\u0001\xc3\xa9\",\"n\":-5,\"u\":18446744073709551615,"
        "\"d\":0.1,\"a\":[true,null]}");
  const auto back = json::parse(text);
  CHECK(back.find("s")->as_string() == "q\"b\\n\n\t\x01\xc3\xa9");
  CHECK(back.find("d")->as_double() == 0.1);
  CHECK(back.find("u")->as_uint64() == 18446744073709551615ull);
  CHECK_THROWS_AS(json::dump(json::Value(std::numeric_limits<double>::infinity())), ValueError);
}

TEST_CASE("JSON accessors name the kinds on a type mismatch", "[io][json]") {
  const auto v = json::parse("[1]");
  CHECK_THROWS_WITH(v.as_object(), Catch::Contains("is of kind array, expected object"));
  CHECK_THROWS_AS(v.as_array()[0].as_string(), ValueError);
  CHECK_THROWS_AS(json::parse("-1").as_uint64(), ValueError);
  CHECK_THROWS_AS(json::parse("1.5").as_int64(), ValueError);
}
