// Inline SVG charts for the experiment reports: a scatter chart (a metric
// against model size or latency, one labelled point per model) and a grouped
// horizontal bar chart (per-layer sparsity, sparsity before and after
// fine-tuning, quantization sensitivity). Every chart sets its width, height
// and viewBox, uses no script, font file or external reference, and escapes
// its text, so a report that inlines it is one self-contained file.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace compressor::report {

/// Text safe inside SVG/HTML elements and attribute values.
inline std::string escape_xml(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

/// A number for a coordinate or a tick label ("%.4g").
inline std::string fmt_num(double v, const char* format = "%.4g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

/// Colours of the series, distinguishable in print and for common colour blindness.
inline const char* series_colour(std::size_t i) {
  static const char* c[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                            "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  return c[i % 8];
}

namespace detail {

/// About n "nice" ticks (1, 2, 5 x 10^k) covering [lo, hi].
inline std::vector<double> nice_ticks(double lo, double hi, int n = 5) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / n;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  std::vector<double> t;
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  return t;
}

/// [lo, hi] widened by 5% each side (or around a single value).
inline void pad_range(double& lo, double& hi) {
  if (!(hi > lo)) {
    const double d = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= d;
    hi += d;
    return;
  }
  const double d = (hi - lo) * 0.05;
  lo -= d;
  hi += d;
}

inline std::string svg_open(int w, int h, const std::string& title) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(w) + "\" height=\"" +
         std::to_string(h) + "\" viewBox=\"0 0 " + std::to_string(w) + " " + std::to_string(h) +
         "\" role=\"img\" aria-label=\"" + escape_xml(title) +
         "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" "
         "fill=\"white\"/>\n<text x=\"" +
         std::to_string(w / 2) +
         "\" y=\"16\" text-anchor=\"middle\" font-size=\"13\" font-weight=\"bold\">" +
         escape_xml(title) + "</text>\n";
}

inline std::string text(double x, double y, const std::string& s, const char* anchor = "middle",
                        const std::string& extra = "") {
  return "<text x=\"" + fmt_num(x, "%.1f") + "\" y=\"" + fmt_num(y, "%.1f") + "\" text-anchor=\"" +
         anchor + "\"" + extra + ">" + escape_xml(s) + "</text>\n";
}

inline std::string line(double x1, double y1, double x2, double y2, const char* stroke) {
  return "<line x1=\"" + fmt_num(x1, "%.1f") + "\" y1=\"" + fmt_num(y1, "%.1f") + "\" x2=\"" +
         fmt_num(x2, "%.1f") + "\" y2=\"" + fmt_num(y2, "%.1f") + "\" stroke=\"" + stroke +
         "\"/>\n";
}

}  // namespace detail

/// A labelled point of a scatter chart; points of one series share a colour.
struct ScatterPoint {
  double x = 0, y = 0;
  std::string label;
  std::string series;
};

struct ScatterChart {
  std::string title, x_label, y_label;
  bool log_x = false;  ///< sizes and latencies spanning decades
  int width = 640, height = 400;
  std::vector<ScatterPoint> points;

  std::string svg() const {
    std::string s = detail::svg_open(width, height, title);
    const double left = 64, right = width - 150.0, top = 30, bottom = height - 46.0;
    std::vector<ScatterPoint> pts;
    for (const ScatterPoint& p : points)
      if (std::isfinite(p.x) && std::isfinite(p.y) && (!log_x || p.x > 0)) pts.push_back(p);
    if (pts.empty()) {
      s += detail::text(width / 2.0, height / 2.0, "no data");
      return s + "</svg>\n";
    }
    const auto fx = [&](double x) { return log_x ? std::log10(x) : x; };
    double x0 = fx(pts[0].x), x1 = x0, y0 = pts[0].y, y1 = y0;
    for (const ScatterPoint& p : pts) {
      x0 = std::min(x0, fx(p.x));
      x1 = std::max(x1, fx(p.x));
      y0 = std::min(y0, p.y);
      y1 = std::max(y1, p.y);
    }
    detail::pad_range(x0, x1);
    detail::pad_range(y0, y1);
    const auto px = [&](double x) { return left + (fx(x) - x0) / (x1 - x0) * (right - left); };
    const auto py = [&](double y) { return bottom - (y - y0) / (y1 - y0) * (bottom - top); };
    // Axes, grid and ticks.
    s += detail::line(left, bottom, right, bottom, "#333") +
         detail::line(left, top, left, bottom, "#333");
    for (double t : detail::nice_ticks(y0, y1)) {
      s += detail::line(left, py(t), right, py(t), "#eee");
      s += detail::text(left - 4, py(t) + 4, fmt_num(t), "end");
    }
    if (log_x) {
      for (int e = static_cast<int>(std::floor(x0)); e <= static_cast<int>(std::ceil(x1)); ++e)
        for (double m : {1.0, 2.0, 5.0}) {
          const double v = m * std::pow(10.0, e);
          if (std::log10(v) < x0 || std::log10(v) > x1) continue;
          s += detail::line(px(v), top, px(v), bottom, "#eee");
          s += detail::text(px(v), bottom + 14, fmt_num(v, "%.3g"));
        }
    } else {
      for (double t : detail::nice_ticks(x0, x1)) {
        const double x = left + (t - x0) / (x1 - x0) * (right - left);
        s += detail::line(x, top, x, bottom, "#eee");
        s += detail::text(x, bottom + 14, fmt_num(t));
      }
    }
    s += detail::text((left + right) / 2, height - 10.0, x_label + (log_x ? " (log scale)" : ""));
    s += detail::text(14, (top + bottom) / 2, y_label, "middle",
                      " transform=\"rotate(-90 14 " + fmt_num((top + bottom) / 2, "%.1f") + ")\"");
    // Points, labels and the legend.
    std::vector<std::string> series;
    for (const ScatterPoint& p : pts)
      if (std::find(series.begin(), series.end(), p.series) == series.end())
        series.push_back(p.series);
    for (const ScatterPoint& p : pts) {
      const std::size_t k = static_cast<std::size_t>(
          std::find(series.begin(), series.end(), p.series) - series.begin());
      s += "<circle cx=\"" + fmt_num(px(p.x), "%.1f") + "\" cy=\"" + fmt_num(py(p.y), "%.1f") +
           "\" r=\"4\" fill=\"" + series_colour(k) + "\"><title>" + escape_xml(p.label) + ": " +
           fmt_num(p.x) + ", " + fmt_num(p.y) + "</title></circle>\n";
      // Labels point away from the nearer edge, so they stay inside the plot.
      const bool right_half = px(p.x) > (left + right) / 2;
      s += detail::text(px(p.x) + (right_half ? -6 : 6), py(p.y) - 5, p.label,
                        right_half ? "end" : "start", " font-size=\"9\"");
    }
    for (std::size_t k = 0; k < series.size(); ++k) {
      const double y = top + 14.0 * static_cast<double>(k);
      s += "<circle cx=\"" + fmt_num(right + 16, "%.1f") + "\" cy=\"" + fmt_num(y, "%.1f") +
           "\" r=\"4\" fill=\"" + series_colour(k) + "\"/>\n";
      s += detail::text(right + 24, y + 4, series[k], "start");
    }
    return s + "</svg>\n";
  }
};

/// Horizontal bars: one group per category (a layer, a model), one bar per series.
struct BarChart {
  std::string title, value_label;
  std::vector<std::string> categories;
  std::vector<std::string> series;
  /// values[series][category]; NaN leaves a bar out.
  std::vector<std::vector<double>> values;
  int width = 640;

  int height() const {
    const int per = 6 + 12 * static_cast<int>(std::max<std::size_t>(1, series.size()));
    return 86 + per * static_cast<int>(std::max<std::size_t>(1, categories.size()));
  }

  std::string svg() const {
    const int h = height();
    std::string s = detail::svg_open(width, h, title);
    const double left = 170, right = width - 20.0, top = 30, bottom = h - 56.0;
    double lo = 0, hi = 0;
    bool any = false;
    for (const auto& row : values)
      for (double v : row)
        if (std::isfinite(v)) {
          lo = std::min(lo, v);
          hi = std::max(hi, v);
          any = true;
        }
    if (!any || categories.empty()) {
      s += detail::text(width / 2.0, h / 2.0, "no data");
      return s + "</svg>\n";
    }
    if (!(hi > lo)) hi = lo + 1;
    const auto px = [&](double v) { return left + (v - lo) / (hi - lo) * (right - left); };
    for (double t : detail::nice_ticks(lo, hi)) {
      s += detail::line(px(t), top, px(t), bottom, "#eee");
      s += detail::text(px(t), bottom + 14, fmt_num(t));
    }
    s += detail::line(px(0), top, px(0), bottom, "#333");
    s += detail::text((left + right) / 2, h - 8.0, value_label);
    const double group = (bottom - top) / static_cast<double>(categories.size());
    const double bar =
        std::min(12.0, (group - 4) / static_cast<double>(std::max<std::size_t>(1, series.size())));
    for (std::size_t c = 0; c < categories.size(); ++c) {
      const double g0 = top + group * static_cast<double>(c);
      s += detail::text(left - 4, g0 + group / 2 + 4, categories[c], "end", " font-size=\"9\"");
      for (std::size_t k = 0; k < values.size(); ++k) {
        if (c >= values[k].size() || !std::isfinite(values[k][c])) continue;
        const double v = values[k][c];
        const double x = std::min(px(0), px(v)), w = std::abs(px(v) - px(0));
        s += "<rect x=\"" + fmt_num(x, "%.1f") + "\" y=\"" +
             fmt_num(g0 + 2 + bar * static_cast<double>(k), "%.1f") + "\" width=\"" +
             fmt_num(std::max(w, 0.5), "%.1f") + "\" height=\"" + fmt_num(bar - 1, "%.1f") +
             "\" fill=\"" + series_colour(k) + "\"><title>" +
             escape_xml(categories[c] + (k < series.size() ? " / " + series[k] : "")) + ": " +
             fmt_num(v) + "</title></rect>\n";
      }
    }
    if (series.size() > 1)
      for (std::size_t k = 0; k < series.size(); ++k) {
        const double x = left + 120.0 * static_cast<double>(k);
        s += "<rect x=\"" + fmt_num(x, "%.1f") + "\" y=\"" + fmt_num(h - 34.0, "%.1f") +
             "\" width=\"10\" height=\"10\" fill=\"" + series_colour(k) + "\"/>\n";
        s += detail::text(x + 14, h - 25.0, series[k], "start");
      }
    return s + "</svg>\n";
  }
};

}  // namespace compressor::report
