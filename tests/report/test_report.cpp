// The experiment results and report: results.json round trip and errors,
// results.csv columns, and report.html self-contained with sized charts.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "compressor/report/html.hpp"
#include "compressor/report/results.hpp"
#include "support/test_util.hpp"

namespace fs = std::filesystem;
using namespace compressor;
using namespace compressor::report;

namespace {

Results sample_results() {
  Results r;
  r.config = {{"epochs", 3}, {"data_root", "/data/<echo>"}, {"mode", "all"}};
  r.machine = machine_info();
  Row base;
  base.name = "baseline";
  base.method = "baseline";
  base.precision = "fp32";
  base.params_total = base.params_nonzero = 11'177'025;
  base.macs = 1'820'000'000;
  base.file_bytes = 44'700'000;
  base.file = "baseline.safetensors";
  base.latency_ms_median = 40.5;
  base.latency_ms_p90 = 42.0;
  base.threads = 2;
  base.kernel_path = "avx512_vnni";
  base.metrics = {{"mae", 2.0}, {"rmse", 2.75}, {"r2", 0.942}};
  Row pruned = base;
  pruned.name = "unstructured 0.9, \"fine-tuned\"";
  pruned.method = "unstructured";
  pruned.prune_ratio = 0.9;
  pruned.sparsity_before_finetune = 0.9;
  pruned.sparsity_after_finetune = 0.9;
  pruned.params_nonzero = 1'200'000;
  pruned.file_bytes = 9'000'000;
  pruned.file = "unstructured, 0.9.safetensors";
  pruned.metrics = {{"mae", 2.4}, {"rmse", 3.1}, {"r2", 0.91}};
  Row int8 = base;
  int8.name = "ptq";
  int8.method = "ptq";
  int8.precision = "int8";
  int8.file_bytes = 11'300'000;
  int8.file = "ptq.int8.safetensors";
  int8.latency_ms_median = 14.0;
  int8.metrics = {{"mae", 2.05}, {"rmse", 2.8}, {"r2", 0.94}};
  Row mean;
  mean.name = "mean predictor";
  mean.method = "mean_predictor";
  mean.precision = "fp32";
  mean.metrics = {{"mae", 8.57}, {"rmse", 11.51}, {"r2", -0.01}};
  for (Row* row : {&base, &pruned, &int8, &mean}) r.put(*row);
  r.extras["layer_sparsity"] = {{"unstructured 0.9", {{"layer1.0.conv1", 0.91}, {"fc", 0.0}}}};
  r.extras["sensitivity"] = Json::array({{{"point", "quant"}, {"sqnr_db", 38.5}, {"metric", 2.01}},
                                         {{"point", "fc"}, {"sqnr_db", 30.1}}});
  return r;
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("compressor_test_report_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("results.json round-trips every field, metrics in order", "[report]") {
  const Results r = sample_results();
  const fs::path dir = temp_dir("json");
  write_results_json(dir / "results.json", r);
  const Results back = read_results_json(dir / "results.json");
  REQUIRE(back.rows.size() == 4);
  CHECK(to_json(back).dump() == to_json(r).dump());
  const Row& p = back.rows[1];
  CHECK(p.name == "unstructured 0.9, \"fine-tuned\"");
  CHECK(p.prune_ratio == 0.9);
  CHECK(p.metrics.front().first == "mae");
  CHECK(p.file == "unstructured, 0.9.safetensors");
  CHECK(back.rows[3].file.empty());
  CHECK_FALSE(back.rows[3].latency_ms_median.has_value());
  CHECK(back.config["data_root"] == "/data/<echo>");
  CHECK(back.machine.contains("kernel_path"));
  CHECK(back.machine.contains("date"));
}

TEST_CASE("put() replaces a row of the same name", "[report]") {
  Results r = sample_results();
  Row again = r.rows[0];
  again.metrics = {{"mae", 1.5}};
  r.put(again);
  REQUIRE(r.rows.size() == 4);
  CHECK(r.find("baseline")->metric("mae") == 1.5);
}

TEST_CASE("a bad results.json is an IoError naming the file and the field", "[report]") {
  const fs::path dir = temp_dir("bad");
  const fs::path f = dir / "results.json";
  const auto expect = [&](const std::string& text, const std::string& needle) {
    io::write_file_atomic(f, text);
    CHECK_THROWS_AS(read_results_json(f), IoError);
    CHECK_THROWS_WITH(read_results_json(f),
                      Catch::Matchers::Contains(f.string()) && Catch::Matchers::Contains(needle));
  };
  expect("{\"rows\": [", "not valid JSON");
  expect("{\"config\": {}}", "'rows' array");
  Json row = to_json(sample_results().rows[0]);
  row.erase("macs");
  expect(Json{{"rows", Json::array({row})}}.dump(), "'macs'");
  row = to_json(sample_results().rows[0]);
  row["mae"] = "two";
  expect(Json{{"rows", Json::array({row})}}.dump(), "metric 'mae'");
  row = to_json(sample_results().rows[0]);
  row["file"] = 3;
  expect(Json{{"rows", Json::array({row})}}.dump(), "'file'");
  // Written before rows named their file: read as no file.
  row.erase("file");
  io::write_file_atomic(f, Json{{"rows", Json::array({row})}}.dump());
  CHECK(read_results_json(f).rows.at(0).file.empty());
  CHECK_THROWS_AS(read_results_json(dir / "missing.json"), IoError);
  CHECK_THROWS_WITH(read_results_json(dir / "missing.json"),
                    Catch::Matchers::Contains("missing.json"));
}

TEST_CASE("results.csv has the fixed columns, the metric union, and quotes", "[report]") {
  const std::string csv = results_csv(sample_results());
  std::istringstream in(csv);
  std::string header;
  std::getline(in, header);
  CHECK(header ==
        "name,method,precision,prune_ratio,sparsity_before_finetune,sparsity_after_finetune,"
        "params_total,params_nonzero,macs,file_bytes,file,latency_ms_median,latency_ms_p90,"
        "threads,kernel_path,mae,rmse,r2");
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) ++lines;
  CHECK(lines == 4);
  CHECK(csv.find("\"unstructured 0.9, \"\"fine-tuned\"\"\",unstructured,fp32,0.9,0.9,0.9,") !=
        std::string::npos);
  CHECK(csv.find(",9000000,\"unstructured, 0.9.safetensors\",") != std::string::npos);
  CHECK(csv.find("mean predictor,mean_predictor,fp32,,,,0,0,0,0,,,,0,,8.57,11.51,-0.01") !=
        std::string::npos);
}

TEST_CASE("report.html is self-contained and every chart has its size", "[report]") {
  const fs::path dir = temp_dir("html");
  write_all(dir, sample_results(),
            {.title = "EF <pruning> & quantization",
             .metric = "mae",
             .metric_label = "test MAE (EF points)",
             .lower_is_better = true});
  for (const char* f : {"results.json", "results.csv", "report.html"}) CHECK(fs::exists(dir / f));
  const std::string html = read_text(dir / "report.html");
  CHECK(html.find("<title>EF &lt;pruning&gt; &amp; quantization</title>") != std::string::npos);
  for (const char* banned : {"<script", "<link", "<img", "<iframe", "@import", "url(", "src="})
    CHECK(html.find(banned) == std::string::npos);
  // The only URL is the SVG namespace, which no browser fetches.
  const std::regex url(R"(https?://[^"' <>]*)");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), url); it != std::sregex_iterator();
       ++it)
    CHECK(it->str() == "http://www.w3.org/2000/svg");
  const std::regex svg(R"(<svg [^>]*>)");
  int charts = 0;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), svg); it != std::sregex_iterator();
       ++it, ++charts) {
    INFO(it->str());
    CHECK(std::regex_search(it->str(), std::regex(R"(width="\d+")")));
    CHECK(std::regex_search(it->str(), std::regex(R"(height="\d+")")));
    CHECK(std::regex_search(it->str(), std::regex(R"(viewBox="0 0 \d+ \d+")")));
  }
  // size, latency, before/after, per-layer sparsity, SQNR, metric per point
  CHECK(charts == 6);
  // Every model with a file is a point of the size chart; the mean predictor has none.
  CHECK(html.find("<title>ptq: 11.3, 2.05</title>") != std::string::npos);
  CHECK(html.find("<title>mean predictor:") == std::string::npos);
}

TEST_CASE("charts without data say so instead of drawing empty axes", "[report]") {
  ScatterChart c;
  c.title = "empty";
  c.points.push_back({std::nan(""), 1.0, "a", "s"});
  const std::string s = c.svg();
  CHECK(s.find("no data") != std::string::npos);
  CHECK(s.find("<circle") == std::string::npos);
  BarChart b;
  b.title = "empty";
  CHECK(b.svg().find("no data") != std::string::npos);
}
