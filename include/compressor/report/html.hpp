// report.html: one self-contained page per experiment run (no script, no
// external URL, no web font; the charts are inline SVG with their sizes set):
// the results table, the metric against model size and against latency,
// per-layer sparsity, sparsity before and after fine-tuning, and the
// quantization sensitivity per layer, then the run's options and machine.
//
// Per-layer tables come from Results::extras:
//   "layer_sparsity": {"<row name>": {"<layer>": sparsity, ...}, ...}
//   "sensitivity":    [{"point": "...", "sqnr_db": x, "metric": y}, ...]
//                     ("metric": the run's metric with only that point
//                     quantized; optional)
#pragma once

#include <cmath>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "compressor/io/atomic_file.hpp"
#include "compressor/report/results.hpp"
#include "compressor/report/svg.hpp"

namespace compressor::report {

/// What the report plots.
struct ReportSpec {
  std::string title = "compressor experiment";
  std::string metric = "top1";  ///< the row metric on the y axes
  std::string metric_label = "top-1 accuracy (%)";
  bool lower_is_better = false;  ///< said in the captions (MAE: lower is better)
};

namespace detail {

inline double nan() {
  return std::numeric_limits<double>::quiet_NaN();
}

inline std::string cell(std::optional<double> v, const char* format = "%.4g") {
  return v && std::isfinite(*v) ? fmt_num(*v, format) : "&ndash;";
}

inline std::string results_table(const Results& r) {
  std::vector<std::string> metrics;
  for (const Row& row : r.rows)
    for (const auto& [k, v] : row.metrics)
      if (std::find(metrics.begin(), metrics.end(), k) == metrics.end()) metrics.push_back(k);
  std::string s =
      "<table>\n<tr><th>model</th><th>method</th><th>precision</th><th>prune ratio</th>"
      "<th>sparsity before / after fine-tuning</th><th>params (nonzero)</th><th>MMACs</th>"
      "<th>file (MB)</th><th>latency ms (median / p90)</th><th>threads, path</th>";
  for (const std::string& m : metrics) s += "<th>" + escape_xml(m) + "</th>";
  s += "</tr>\n";
  for (const Row& row : r.rows) {
    s += "<tr><td>" + escape_xml(row.name) + "</td><td>" + escape_xml(row.method) + "</td><td>" +
         escape_xml(row.precision) + "</td><td>" + cell(row.prune_ratio) + "</td><td>" +
         cell(row.sparsity_before_finetune) + " / " + cell(row.sparsity_after_finetune) +
         "</td><td>" + std::to_string(row.params_total) + " (" +
         std::to_string(row.params_nonzero) + ")</td><td>" +
         cell(static_cast<double>(row.macs) * 1e-6, "%.1f") + "</td><td>" +
         cell(row.file_bytes > 0 ? std::optional<double>(row.file_bytes * 1e-6) : std::nullopt,
              "%.3f") +
         "</td><td>" + cell(row.latency_ms_median, "%.3f") + " / " +
         cell(row.latency_ms_p90, "%.3f") + "</td><td>" +
         (row.threads > 0 ? std::to_string(row.threads) + ", " + escape_xml(row.kernel_path)
                          : "&ndash;") +
         "</td>";
    for (const std::string& m : metrics) s += "<td>" + cell(row.metric(m)) + "</td>";
    s += "</tr>\n";
  }
  return s + "</table>\n";
}

inline std::string json_table(const Json& j) {
  std::string s = "<table>\n";
  for (const auto& [k, v] : j.items())
    s += "<tr><th>" + escape_xml(k) + "</th><td>" +
         escape_xml(v.is_string() ? v.get<std::string>() : v.dump()) + "</td></tr>\n";
  return s + "</table>\n";
}

/// The series of a row in the scatter charts: its method family.
inline std::string family(const Row& row) {
  return row.precision == "int8" ? row.method + " (int8)" : row.method;
}

inline std::string scatter(const Results& r, const ReportSpec& spec, bool latency) {
  ScatterChart c;
  c.title = spec.metric_label + (latency ? " vs latency" : " vs model size");
  c.x_label = latency ? "latency per sample at batch 1 (ms)" : "saved model file (MB)";
  c.y_label = spec.metric_label + (spec.lower_is_better ? " (lower is better)" : "");
  c.log_x = true;
  for (const Row& row : r.rows) {
    const auto y = row.metric(spec.metric);
    if (!y) continue;
    const double x = latency ? row.latency_ms_median.value_or(nan())
                             : (row.file_bytes > 0 ? row.file_bytes * 1e-6 : nan());
    c.points.push_back({x, *y, row.name, family(row)});
  }
  return c.svg();
}

inline std::string layer_sparsity(const Results& r) {
  if (!r.extras.contains("layer_sparsity") || !r.extras["layer_sparsity"].is_object()) return "";
  BarChart c;
  c.title = "Sparsity per layer";
  c.value_label = "zeros / weights";
  for (const auto& [model, layers] : r.extras["layer_sparsity"].items()) {
    if (!layers.is_object()) continue;
    c.series.push_back(model);
    for (const auto& [layer, v] : layers.items())
      if (std::find(c.categories.begin(), c.categories.end(), layer) == c.categories.end())
        c.categories.push_back(layer);
  }
  for (const auto& [model, layers] : r.extras["layer_sparsity"].items()) {
    if (!layers.is_object()) continue;
    std::vector<double> v;
    for (const std::string& layer : c.categories)
      v.push_back(layers.contains(layer) && layers[layer].is_number() ? layers[layer].get<double>()
                                                                      : nan());
    c.values.push_back(std::move(v));
  }
  return c.svg();
}

inline std::string sparsity_before_after(const Results& r) {
  BarChart c;
  c.title = "Sparsity of the pruned layers before and after fine-tuning";
  c.value_label = "zeros / weights (pruned layers)";
  c.series = {"before fine-tuning", "after fine-tuning"};
  c.values.resize(2);
  for (const Row& row : r.rows) {
    if (!row.sparsity_before_finetune && !row.sparsity_after_finetune) continue;
    c.categories.push_back(row.name);
    c.values[0].push_back(row.sparsity_before_finetune.value_or(nan()));
    c.values[1].push_back(row.sparsity_after_finetune.value_or(nan()));
  }
  return c.categories.empty() ? "" : c.svg();
}

inline std::string sensitivity(const Results& r, const ReportSpec& spec) {
  if (!r.extras.contains("sensitivity") || !r.extras["sensitivity"].is_array()) return "";
  BarChart sqnr, metric;
  sqnr.title = "Quantization sensitivity: SQNR per quantization point";
  sqnr.value_label = "SQNR (dB), higher is better";
  sqnr.values.resize(1);
  metric.title = spec.metric_label + " with only this point quantized";
  metric.value_label = spec.metric_label;
  metric.values.resize(1);
  for (const Json& e : r.extras["sensitivity"]) {
    if (!e.is_object() || !e.contains("point")) continue;
    const std::string point = e["point"].is_string() ? e["point"].get<std::string>() : e.dump();
    sqnr.categories.push_back(point);
    sqnr.values[0].push_back(
        e.contains("sqnr_db") && e["sqnr_db"].is_number() ? e["sqnr_db"].get<double>() : nan());
    if (e.contains("metric") && e["metric"].is_number()) {
      metric.categories.push_back(point);
      metric.values[0].push_back(e["metric"].get<double>());
    }
  }
  std::string s = sqnr.svg();
  if (!metric.categories.empty()) s += metric.svg();
  return s;
}

}  // namespace detail

inline std::string report_html(const Results& r, const ReportSpec& spec) {
  std::string s = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" +
                  escape_xml(spec.title) +
                  "</title>\n<style>\n"
                  "body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}\n"
                  "table{border-collapse:collapse;margin:8px 0 24px;font-size:13px}\n"
                  "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}\n"
                  "th{background:#f3f3f3}\n"
                  ".charts svg{margin:0 16px 16px 0;border:1px solid #ddd;vertical-align:top}\n"
                  "</style>\n</head>\n<body>\n<h1>" +
                  escape_xml(spec.title) + "</h1>\n";
  if (r.machine.contains("date") && r.machine["date"].is_string())
    s += "<p>Run of " + escape_xml(r.machine["date"].get<std::string>()) + ".</p>\n";
  s += "<h2>Results</h2>\n" + detail::results_table(r);
  s += "<h2>Charts</h2>\n<div class=\"charts\">\n";
  s += detail::scatter(r, spec, false) + detail::scatter(r, spec, true);
  s += detail::sparsity_before_after(r) + detail::layer_sparsity(r) + detail::sensitivity(r, spec);
  s += "</div>\n<h2>Options</h2>\n" + detail::json_table(r.config);
  s += "<h2>Machine</h2>\n" + detail::json_table(r.machine);
  return s + "</body>\n</html>\n";
}

inline void write_report_html(const std::filesystem::path& path, const Results& r,
                              const ReportSpec& spec) {
  io::write_file_atomic(path, report_html(r, spec));
}

/// results.json, results.csv and report.html in dir, each written atomically.
inline void write_all(const std::filesystem::path& dir, const Results& r, const ReportSpec& spec) {
  write_results_json(dir / "results.json", r);
  write_results_csv(dir / "results.csv", r);
  write_report_html(dir / "report.html", r, spec);
}

}  // namespace compressor::report
