// The results of an experiment run: one row per model, with the run's options
// and the machine, written as results.json (nlohmann::json) and results.csv,
// atomically, and read back for --resume (docs/experiments.md).
//
// results.json: {"config": {...every option...}, "machine": {...},
//                "rows": [{"name", "method", "precision", ...}, ...],
//                "extras": {...per-layer tables the report charts...}}
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "compressor/core/error.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/io/atomic_file.hpp"
#include "compressor/kernels/isa.hpp"

namespace compressor::report {

using Json = nlohmann::ordered_json;

/// One model of a run. Optional fields are null in JSON and empty in CSV when
/// they do not apply (no pruning, no latency measured).
struct Row {
  std::string name;       ///< unique in a run, e.g. "structured 0.5 + ptq"
  std::string method;     ///< baseline, ptq, qat, unstructured, structured, a+b, mean_predictor
  std::string precision;  ///< fp32 or int8
  std::optional<double> prune_ratio;
  std::optional<double> sparsity_before_finetune;  ///< over the pruned layers
  std::optional<double> sparsity_after_finetune;
  std::int64_t params_total = 0;
  std::int64_t params_nonzero = 0;
  std::int64_t macs = 0;        ///< per image (CIFAR) or per clip (EF)
  std::int64_t file_bytes = 0;  ///< the saved model file
  std::string file;             ///< its name in the output folder; empty: no file (mean predictor)
  std::optional<double> latency_ms_median;  ///< per image or clip at batch 1, deploy model
  std::optional<double> latency_ms_p90;
  int threads = 0;
  std::string kernel_path;
  /// top1 (CIFAR) or mae, rmse, r2 (EF), in insertion order.
  std::vector<std::pair<std::string, double>> metrics;

  std::optional<double> metric(const std::string& key) const {
    for (const auto& [k, v] : metrics)
      if (k == key) return v;
    return std::nullopt;
  }
};

namespace detail {

template <class T>
Json opt(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

template <class T>
std::optional<T> get_opt(const Json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  require<IoError>(j.at(key).is_number(), where, ": field '", key, "' must be a number or null");
  return j.at(key).get<T>();
}

}  // namespace detail

inline Json to_json(const Row& r) {
  Json j;
  j["name"] = r.name;
  j["method"] = r.method;
  j["precision"] = r.precision;
  j["prune_ratio"] = detail::opt(r.prune_ratio);
  j["sparsity_before_finetune"] = detail::opt(r.sparsity_before_finetune);
  j["sparsity_after_finetune"] = detail::opt(r.sparsity_after_finetune);
  j["params_total"] = r.params_total;
  j["params_nonzero"] = r.params_nonzero;
  j["macs"] = r.macs;
  j["file_bytes"] = r.file_bytes;
  j["file"] = r.file;
  j["latency_ms_median"] = detail::opt(r.latency_ms_median);
  j["latency_ms_p90"] = detail::opt(r.latency_ms_p90);
  j["threads"] = r.threads;
  j["kernel_path"] = r.kernel_path;
  for (const auto& [k, v] : r.metrics) j[k] = std::isfinite(v) ? Json(v) : Json(nullptr);
  return j;
}

/// The fields every row has; anything else numeric is a metric.
inline const std::set<std::string>& row_fields() {
  static const std::set<std::string> f = {"name",
                                          "method",
                                          "precision",
                                          "prune_ratio",
                                          "sparsity_before_finetune",
                                          "sparsity_after_finetune",
                                          "params_total",
                                          "params_nonzero",
                                          "macs",
                                          "file_bytes",
                                          "file",
                                          "latency_ms_median",
                                          "latency_ms_p90",
                                          "threads",
                                          "kernel_path"};
  return f;
}

inline Row row_from_json(const Json& j, const std::string& where) {
  require<IoError>(j.is_object(), where, ": a row must be an object");
  for (const char* key : {"name", "method", "precision", "kernel_path"})
    require<IoError>(j.contains(key) && j.at(key).is_string(), where, ": field '", key,
                     "' is missing or not a string");
  for (const char* key : {"params_total", "params_nonzero", "macs", "file_bytes", "threads"})
    require<IoError>(j.contains(key) && j.at(key).is_number_integer(), where, ": field '", key,
                     "' is missing or not an integer");
  Row r;
  r.name = j.at("name").get<std::string>();
  r.method = j.at("method").get<std::string>();
  r.precision = j.at("precision").get<std::string>();
  r.kernel_path = j.at("kernel_path").get<std::string>();
  r.prune_ratio = detail::get_opt<double>(j, "prune_ratio", where);
  r.sparsity_before_finetune = detail::get_opt<double>(j, "sparsity_before_finetune", where);
  r.sparsity_after_finetune = detail::get_opt<double>(j, "sparsity_after_finetune", where);
  r.params_total = j.at("params_total").get<std::int64_t>();
  r.params_nonzero = j.at("params_nonzero").get<std::int64_t>();
  r.macs = j.at("macs").get<std::int64_t>();
  r.file_bytes = j.at("file_bytes").get<std::int64_t>();
  if (j.contains("file")) {  // absent in results.json of earlier versions
    require<IoError>(j.at("file").is_string(), where, ": field 'file' must be a string");
    r.file = j.at("file").get<std::string>();
  }
  r.threads = j.at("threads").get<int>();
  r.latency_ms_median = detail::get_opt<double>(j, "latency_ms_median", where);
  r.latency_ms_p90 = detail::get_opt<double>(j, "latency_ms_p90", where);
  for (const auto& [k, v] : j.items()) {
    if (row_fields().count(k)) continue;
    require<IoError>(v.is_number() || v.is_null(), where, ": metric '", k,
                     "' must be a number or null");
    r.metrics.emplace_back(k, v.is_null() ? std::nan("") : v.get<double>());
  }
  return r;
}

/// A run: its options, the machine, the rows so far, and per-layer tables.
struct Results {
  Json config = Json::object();
  Json machine = Json::object();
  std::vector<Row> rows;
  /// Named tables for the report, e.g. "layer_sparsity", "sensitivity".
  Json extras = Json::object();

  const Row* find(const std::string& name) const {
    for (const Row& r : rows)
      if (r.name == name) return &r;
    return nullptr;
  }
  /// Adds a row, or replaces the row of the same name (a resumed stage).
  void put(Row r) {
    for (Row& old : rows)
      if (old.name == r.name) {
        old = std::move(r);
        return;
      }
    rows.push_back(std::move(r));
  }
};

inline Json to_json(const Results& r) {
  Json j;
  j["config"] = r.config;
  j["machine"] = r.machine;
  j["rows"] = Json::array();
  for (const Row& row : r.rows) j["rows"].push_back(to_json(row));
  j["extras"] = r.extras;
  return j;
}

/// The CPU model, its features, the kernel path, threads and the date (UTC).
inline Json machine_info() {
  Json m;
  std::string cpu = "unknown";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) cpu = line.substr(line.find_first_not_of(' ', colon + 1));
      break;
    }
  m["cpu"] = cpu;
  m["cpu_features"] = kernels::cpu_features().str();
  m["kernel_path"] = std::string(kernels::path_name(kernels::kernel_path()));
  m["threads"] = num_threads();
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
  m["date"] = date;
  return m;
}

inline void write_results_json(const std::filesystem::path& path, const Results& r) {
  io::write_file_atomic(path, to_json(r).dump(1) + "\n");
}

/// Reads a results.json written by write_results_json; throws IoError naming
/// the file and the field for anything else.
inline Results read_results_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  require<IoError>(static_cast<bool>(in), "cannot open results file ", path.string());
  Json j;
  try {
    j = Json::parse(in);
  } catch (const Json::parse_error& e) {
    throw IoError(compressor::detail::concat(path.string(), ": not valid JSON (", e.what(), ")"));
  }
  const std::string where = path.string();
  require<IoError>(j.is_object() && j.contains("rows") && j.at("rows").is_array(), where,
                   ": expected an object with a 'rows' array");
  Results r;
  if (j.contains("config")) r.config = j.at("config");
  if (j.contains("machine")) r.machine = j.at("machine");
  if (j.contains("extras")) r.extras = j.at("extras");
  for (std::size_t i = 0; i < j.at("rows").size(); ++i)
    r.rows.push_back(row_from_json(j.at("rows")[i], where + ": rows[" + std::to_string(i) + "]"));
  return r;
}

namespace detail {

inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

inline std::string csv_number(std::optional<double> v) {
  if (!v || !std::isfinite(*v)) return "";
  std::ostringstream os;
  os.precision(10);
  os << *v;
  return os.str();
}

}  // namespace detail

/// One line per row; the metric columns are the union over the rows, in first-seen order.
inline std::string results_csv(const Results& r) {
  std::vector<std::string> metrics;
  for (const Row& row : r.rows)
    for (const auto& [k, v] : row.metrics)
      if (std::find(metrics.begin(), metrics.end(), k) == metrics.end()) metrics.push_back(k);
  std::ostringstream os;
  os << "name,method,precision,prune_ratio,sparsity_before_finetune,sparsity_after_finetune,"
        "params_total,params_nonzero,macs,file_bytes,file,latency_ms_median,latency_ms_p90,"
        "threads,kernel_path";
  for (const std::string& m : metrics) os << ',' << detail::csv_field(m);
  os << '\n';
  for (const Row& row : r.rows) {
    os << detail::csv_field(row.name) << ',' << detail::csv_field(row.method) << ','
       << row.precision << ',' << detail::csv_number(row.prune_ratio) << ','
       << detail::csv_number(row.sparsity_before_finetune) << ','
       << detail::csv_number(row.sparsity_after_finetune) << ',' << row.params_total << ','
       << row.params_nonzero << ',' << row.macs << ',' << row.file_bytes << ','
       << detail::csv_field(row.file) << ',' << detail::csv_number(row.latency_ms_median) << ','
       << detail::csv_number(row.latency_ms_p90) << ',' << row.threads << ','
       << detail::csv_field(row.kernel_path);
    for (const std::string& m : metrics) os << ',' << detail::csv_number(row.metric(m));
    os << '\n';
  }
  return os.str();
}

inline void write_results_csv(const std::filesystem::path& path, const Results& r) {
  io::write_file_atomic(path, results_csv(r));
}

}  // namespace compressor::report
