// Progress lines for long loops: step, loss, metric, throughput and ETA,
// printed at most every `interval` seconds (and at the end).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ostream>
#include <string>

namespace compressor::train {

/// "1:05" or "1:02:03".
inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const auto s = static_cast<std::int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

class Progress {
 public:
  using Clock = std::chrono::steady_clock;

  Progress(std::ostream* out, std::string label, std::int64_t total_steps, double interval = 2.0)
      : out_(out),
        label_(std::move(label)),
        total_(total_steps),
        interval_(interval),
        start_(Clock::now()),
        last_(start_) {}

  double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  /// Reports step `done` (1-based) of total; `detail` is e.g. "loss 0.1234 acc 91.2%".
  void update(std::int64_t done, std::int64_t samples, const std::string& detail) {
    if (!out_) return;
    const auto now = Clock::now();
    const bool last = done >= total_;
    if (!last && std::chrono::duration<double>(now - last_).count() < interval_) return;
    last_ = now;
    const double t = elapsed();
    const double eta =
        done > 0 ? t / static_cast<double>(done) * static_cast<double>(total_ - done) : 0;
    char buf[96];
    std::snprintf(buf, sizeof buf, " | %.1f samples/s | %s elapsed, ETA %s",
                  t > 0 ? static_cast<double>(samples) / t : 0.0, format_duration(t).c_str(),
                  format_duration(eta).c_str());
    *out_ << label_ << " step " << done << "/" << total_ << " " << detail << buf << '\n';
    out_->flush();
  }

 private:
  std::ostream* out_;
  std::string label_;
  std::int64_t total_;
  double interval_;
  Clock::time_point start_, last_;
};

}  // namespace compressor::train
