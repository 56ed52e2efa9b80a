// HistogramObserver: a fixed number of equal bins over the range of
// everything observed (widened to include 0), from which range() chooses a
// clipping range by percentiles, by least expected squared quantization
// error, or by TensorRT's KL entropy calibration (quant/histogram.hpp has the
// rules; docs/quantization.md, "Observers").
//
// observe(x): one vectorised min/max pass (rejects NaN and inf); if x lies
// outside the current range, the range grows to the new extremes and the old
// counts are re-binned onto it (rebin_histogram: the old cumulative count
// sampled at the new edges, so the total is kept exactly); then one pass that
// computes bin indices in vectorised blocks and counts them into four
// interleaved 32-bit sub-histograms (consecutive values rarely wait for the
// same counter), added to the int64 "histogram" buffer at the end of the
// batch. All memory is allocated by the constructor; observe() allocates
// nothing.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/quant/extrema_observer.hpp"
#include "compressor/quant/histogram.hpp"

namespace compressor::quant {

/// How HistogramObserver::range() chooses the range (quant/histogram.hpp).
enum class HistogramMethod : std::uint8_t {
  percentile,  ///< [(100 - p)-th, p-th] percentiles
  mse,         ///< least expected squared uint8 quantization error
  kl,          ///< TensorRT's entropy calibration (least KL divergence)
  minmax,      ///< the observed extremes, as MinMaxObserver (no clipping)
};

inline std::string_view to_string(HistogramMethod m) {
  switch (m) {
    case HistogramMethod::percentile:
      return "percentile";
    case HistogramMethod::mse:
      return "mse";
    case HistogramMethod::kl:
      return "kl";
    case HistogramMethod::minmax:
      return "minmax";
  }
  return "?";
}

class HistogramObserver : public ExtremaObserver {
 public:
  /// bins in [1, 2^24] (at least kKlLevels for kl); percentile in (50, 100],
  /// used by the percentile method.
  explicit HistogramObserver(std::int64_t bins = 2048,
                             HistogramMethod method = HistogramMethod::percentile,
                             double percentile = 99.99)
      : bins_(bins), method_(method), percentile_(percentile) {
    require(bins >= 1 && bins <= (std::int64_t{1} << 24),
            "HistogramObserver: bins must be in [1, 2^24], got ", bins);
    require(method != HistogramMethod::kl || bins >= kKlLevels,
            "HistogramObserver: the kl method needs at least ", kKlLevels, " bins, got ", bins);
    require(percentile > 50.0 && percentile <= 100.0,
            "HistogramObserver: percentile must be in (50, 100], got ", percentile);
    histogram_ = Tensor<std::int64_t>(Shape{bins}, 0);
    register_buffer("histogram", histogram_);
    sub_.assign(static_cast<std::size_t>(kSubHistograms * bins), 0);
    scratch_.assign(static_cast<std::size_t>(bins + 1), 0);
  }

  std::string_view type_name() const override { return "HistogramObserver"; }

  std::int64_t bins() const { return bins_; }
  HistogramMethod method() const { return method_; }
  /// Changes the rule range() applies to the same counts (the counts do not
  /// depend on it): one calibration serves every rule (quant/choose_rule.hpp).
  void set_method(HistogramMethod m) {
    require(m != HistogramMethod::kl || bins_ >= kKlLevels,
            "HistogramObserver: the kl method needs at least ", kKlLevels, " bins, this one has ",
            bins_);
    method_ = m;
  }
  double percentile() const { return percentile_; }

  /// The counts with the observed extremes. Throws before the first tensor.
  HistogramRef histogram() const {
    check_observed("histogram()");
    return {std::span<const std::int64_t>(histogram_.data(), static_cast<std::size_t>(bins_)),
            min_val_[0], max_val_[0]};
  }

  void observe(TensorView<const float> x) override {
    if (x.numel() == 0) return;
    const MinMax b = finite_min_max(x, type_name());
    const bool first = observed() == 0;
    const float old_min = min_val_[0], old_max = max_val_[0];
    const float new_min = first ? b.min : std::min(old_min, b.min);
    const float new_max = first ? b.max : std::max(old_max, b.max);
    // The bins span [min(0, min), max(0, max)]: re-bin only when that grows.
    if (!first && (std::min(0.f, new_min) < std::min(0.f, old_min) ||
                   std::max(0.f, new_max) > std::max(0.f, old_max))) {
      const std::span<std::int64_t> counts(histogram_.data(), static_cast<std::size_t>(bins_));
      rebin_histogram(HistogramRef{counts, old_min, old_max}, new_min, new_max, counts, scratch_);
    }
    min_val_[0] = new_min;
    max_val_[0] = new_max;
    add_counts(x.data(), x.numel());
    num_observed_[0] += 1;
  }

  Range range() const override {
    check_observed("range()");
    const HistogramRef h = histogram();
    switch (method_) {
      case HistogramMethod::percentile:
        return histogram_percentile_range(h, percentile_);
      case HistogramMethod::mse:
        return histogram_mse_range(h);
      case HistogramMethod::kl:
        return histogram_kl_range(h);
      case HistogramMethod::minmax:
        return observed_range();
    }
    throw ValueError("HistogramObserver: unknown method");
  }

  /// Histograms are not combined across replicas: a non-null reducer is a
  /// ValueError (Observer's).
  void set_range_reducer(std::shared_ptr<RangeReducer> r) override {
    Observer::set_range_reducer(std::move(r));
  }

  void reset() override {
    ExtremaObserver::reset();
    histogram_.fill(0);
  }

 protected:
  std::unique_ptr<Module> clone_shell() const override {
    return std::make_unique<HistogramObserver>(bins_, method_, percentile_);
  }

 private:
  static constexpr std::int64_t kSubHistograms = 4;
  static constexpr std::int64_t kBlock = 512;  // indices computed per vectorised block
  // Values counted between two flushes of the 32-bit sub-histograms: no
  // sub-histogram counter can pass 2^31.
  static constexpr std::int64_t kFlush = std::int64_t{1} << 31;

  COMPRESSOR_QUANT_SIMD_BEGIN
  /// Counts n values, all inside [min_val, max_val], into the histogram.
  void add_counts(const float* x, std::int64_t n) {
    const BinMap map(bins_, min_val_[0], max_val_[0]);
    std::uint32_t* s0 = sub_.data();
    std::uint32_t* s1 = s0 + bins_;
    std::uint32_t* s2 = s1 + bins_;
    std::uint32_t* s3 = s2 + bins_;
    alignas(64) std::int32_t idx[kBlock];
    for (std::int64_t base = 0; base < n; base += kFlush) {
      const std::int64_t end = std::min(n, base + kFlush);
      for (std::int64_t start = base; start < end; start += kBlock) {
        const std::int64_t m = std::min(kBlock, end - start);
        const float* xs = x + start;
#pragma omp simd
        for (std::int64_t i = 0; i < m; ++i) idx[i] = map(xs[i]);
        std::int64_t i = 0;
        for (; i + 4 <= m; i += 4) {
          ++s0[idx[i]];
          ++s1[idx[i + 1]];
          ++s2[idx[i + 2]];
          ++s3[idx[i + 3]];
        }
        for (; i < m; ++i) ++s0[idx[i]];
      }
      std::int64_t* h = histogram_.data();
      for (std::int64_t k = 0; k < bins_; ++k) {
        h[k] += std::int64_t{s0[k]} + s1[k] + s2[k] + s3[k];
        s0[k] = s1[k] = s2[k] = s3[k] = 0;
      }
    }
  }

  COMPRESSOR_QUANT_SIMD_END

  std::int64_t bins_;
  HistogramMethod method_;
  double percentile_;
  Tensor<std::int64_t> histogram_;
  std::vector<std::uint32_t> sub_;     // kSubHistograms x bins, zero between batches
  std::vector<std::int64_t> scratch_;  // bins + 1 prefix counts for re-binning
};

}  // namespace compressor::quant
