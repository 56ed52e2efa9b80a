#include <catch2/catch.hpp>
#include <string>

#include "compressor/data/csv.hpp"
#include "data/data_test_util.hpp"

using namespace compressor;
using namespace compressor::data;
using Catch::Matchers::Contains;

TEST_CASE("csv: plain file, columns found by name in any order and case", "[data][csv]") {
  const auto t = parse_csv("b,A , c\n1,2,3\n4,5,6\n", "x.csv");
  REQUIRE(t.header.size() == 3);
  REQUIRE(t.rows.size() == 2);
  CHECK(t.column("a") == 1);
  CHECK(t.column("C") == 2);
  CHECK(t.rows[1][0] == "4");
  CHECK(t.row_lines == std::vector<std::int64_t>{2, 3});
  CHECK_FALSE(t.find_column("d").has_value());
  CHECK_THROWS_WITH(t.column("EF"), Contains("x.csv") && Contains("missing column 'EF'"));
}

TEST_CASE("csv: quotes, doubled quotes, delimiters and line breaks in fields", "[data][csv]") {
  const auto t = parse_csv("name,note\n\"a,b\",\"say \"\"hi\"\"\"\n\"multi\nline\",x\n", "q.csv");
  REQUIRE(t.rows.size() == 2);
  CHECK(t.rows[0][0] == "a,b");
  CHECK(t.rows[0][1] == "say \"hi\"");
  CHECK(t.rows[1][0] == "multi\nline");
  CHECK(t.rows[1][1] == "x");
  CHECK(t.row_lines[1] == 3);
}

TEST_CASE("csv: CRLF, CR-only, BOM, blank lines, no final newline", "[data][csv]") {
  const std::string variants[] = {
      "\xEF\xBB\xBFh1,h2\r\n1,2\r\n\r\n3,4",
      "h1,h2\r1,2\r3,4\r",
      "\n\nh1,h2\n1,2\n   \n3,4\n\n",
  };
  for (const auto& text : variants) {
    const auto t = parse_csv(text);
    REQUIRE(t.header == std::vector<std::string>{"h1", "h2"});
    REQUIRE(t.rows.size() == 2);
    CHECK(t.rows[0] == std::vector<std::string>{"1", "2"});
    CHECK(t.rows[1] == std::vector<std::string>{"3", "4"});
  }
}

TEST_CASE("csv: empty fields and ragged rows are kept for the caller", "[data][csv]") {
  const auto t = parse_csv("a,b,c\n,,\n1\n\"\",2,3,4\n");
  REQUIRE(t.rows.size() == 3);
  CHECK(t.rows[0] == std::vector<std::string>{"", "", ""});
  CHECK(t.rows[1].size() == 1);
  CHECK(t.rows[2].size() == 4);
}

TEST_CASE("csv: syntax errors name the source and line", "[data][csv]") {
  CHECK_THROWS_AS(parse_csv("a,b\n\"open,1\n2,3\n", "f.csv"), IoError);
  CHECK_THROWS_WITH(parse_csv("a,b\n1,\"open\n2,3\n", "f.csv"),
                    Contains("f.csv:2") && Contains("not closed"));
  CHECK_THROWS_WITH(parse_csv("a,b\n1,\"x\"y\n", "f.csv"),
                    Contains("f.csv:2") && Contains("after a closing quote"));
  CHECK_THROWS_WITH(parse_csv("a,b\n1,x\"y\"\n", "f.csv"), Contains("f.csv:2"));
  CHECK_THROWS_WITH(parse_csv("", "empty.csv"), Contains("empty.csv") && Contains("header"));
  CHECK_THROWS_WITH(parse_csv("\xEF\xBB\xBF\r\n\r\n", "blank.csv"), Contains("blank.csv"));
}

TEST_CASE("csv: read_csv names a missing file", "[data][csv]") {
  const auto dir = testing::scratch_dir("csv_missing");
  CHECK_THROWS_WITH(read_csv(dir / "nope.csv"), Contains("nope.csv") && Contains("not found"));
  testing::write_bytes(dir / "ok.csv", "x,y\n1,2\n");
  CHECK(read_csv(dir / "ok.csv").rows.size() == 1);
}
