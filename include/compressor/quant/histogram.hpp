// The histogram behind HistogramObserver and the range rules computed from it
// (docs/quantization.md, "Observers").
//
// A Histogram is `counts.size()` equal bins over [lo, hi] = [min(0, min_val),
// max(0, max_val)]: the observed extremes widened to include 0, as every
// activation range is (choose_activation_params), so the search below looks
// only at ranges the uint8 scheme can use. Bin i covers [lo + i*w, lo + (i+1)*w)
// (the last one is closed). Inside a bin the values are taken as uniformly
// spread over the bin, narrowed to the observed [min_val, max_val] (so the
// edge bins do not smear the exact extremes; a bin narrowed to a point holds
// a point mass). Everything below (the cumulative count, percentiles, the
// expected quantization error, the re-binning) uses this one model.
//
// The range rules:
// - percentile: the (100 - p)-th and p-th percentiles (both tails clipped).
// - mse: the range [a, b] whose uint8 parameters minimise the expected
//   squared error of fake quantization under the model: rounding error inside
//   the grid, clipping error outside, with the real grid of
//   choose_activation_params(a, b) (0 exactly on the grid, the zero point
//   rounded). a and b run over the bin edges (a <= 0 <= b), by coordinate
//   descent from the observed extremes: b is chosen for the current a, then a
//   for that b, until neither moves; each one-dimensional search scans ~128
//   evenly spaced edges and then every edge around the best one (the error
//   is smooth in a and b; each try is O(bins)).
// - kl: TensorRT's entropy calibration, made asymmetric: for a window of bins
//   [l, r) holding 0, the reference distribution P is the window with the
//   counts outside it added to its first and last bin; its quantized version Q
//   merges the window's counts into 255 groups (one per uint8 step, group j
//   = bins [l + floor(j*W/255), l + floor((j+1)*W/255)), W = r - l) and
//   spreads each group's count evenly over the group's bins where P is
//   nonzero. The window minimising KL(P || Q) wins; windows are at least 255
//   bins wide (narrower ones would quantize without loss and always win).
//   The bin holding 0 counts as the mean of its neighbours, as in NVIDIA's
//   calibrator: the exact zeros of ReLU outputs, exactly representable, would
//   otherwise decide the divergence. The divergence is not smooth in the
//   window: the search starts at the best pair of a ~64 x 64 grid of edges
//   and the coordinate descent tries every edge (each try is O(255) with
//   prefix sums).
// In every rule ties go to the wider range, and the result is intersected
// with the observed [min_val, max_val] (which leaves its uint8 parameters
// unchanged: they include 0 anyway).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/kernels/int8_traits.hpp"
#include "compressor/quant/qparams.hpp"

namespace compressor::quant {

/// A read-only histogram: counts over [min(0, min_val), max(0, max_val)].
struct HistogramRef {
  std::span<const std::int64_t> counts;
  float min_val = 0.f;  ///< the smallest value observed
  float max_val = 0.f;  ///< the largest value observed

  std::int64_t bins() const { return static_cast<std::int64_t>(counts.size()); }
  double lo() const { return std::min(0.0, static_cast<double>(min_val)); }
  double hi() const { return std::max(0.0, static_cast<double>(max_val)); }
  double width() const { return (hi() - lo()) / static_cast<double>(bins()); }
  /// Edge i of the bins, i in [0, bins]; edge 0 is lo() and edge bins() is hi() exactly.
  double edge(std::int64_t i) const { return i == bins() ? hi() : lo() + width() * i; }
};

/// The bin of a value, as HistogramObserver counts it: floor((x - lo) * inv)
/// in float, clamped into [0, bins - 1] before the conversion (so nothing is
/// out of range, NaN included). inv is 0 for an empty range (all values 0).
struct BinMap {
  float lo, inv, top;
  BinMap(std::int64_t bins, float min_val, float max_val)
      : lo(std::min(0.f, min_val)),  // exact: the bins' lower end
        inv(max_val > 0.f || min_val < 0.f
                ? static_cast<float>(static_cast<double>(bins) / (std::max(0.0, double(max_val)) -
                                                                  std::min(0.0, double(min_val))))
                : 0.f),
        top(static_cast<float>(bins - 1)) {}
  explicit BinMap(const HistogramRef& h) : BinMap(h.bins(), h.min_val, h.max_val) {}
  std::int32_t operator()(float x) const {
    float t = (x - lo) * inv;
    t = t > 0.f ? t : 0.f;
    t = t < top ? t : top;
    return static_cast<std::int32_t>(t);
  }
};

// Not quant::detail: other quant headers call compressor's detail::concat
// unqualified, which a quant::detail declared before them would hide.
namespace histogram_detail {

/// The histogram model of the file comment: prefix counts and each bin's
/// support. Built, it reads only its prefix counts (in `scratch` if that has
/// bins + 1 elements, else its own), so the counts may be overwritten.
class HistogramModel {
 public:
  explicit HistogramModel(HistogramRef h, std::span<std::int64_t> scratch = {}) : h_(h) {
    require(h.bins() > 0, "histogram: no bins");
    require(h.min_val <= h.max_val, "histogram: empty (nothing observed)");
    const auto n = static_cast<std::size_t>(h.bins() + 1);
    if (scratch.size() < n) {
      own_.resize(n);
      scratch = own_;
    }
    cum_ = scratch.first(n);
    cum_[0] = 0;
    for (std::int64_t i = 0; i < h.bins(); ++i) cum_[i + 1] = cum_[i] + h.counts[i];
    h_.counts = {};  // from here on: cum_ only
    bins_ = h.bins();
  }
  HistogramModel(const HistogramModel&) = delete;  // cum_ may point into own_
  HistogramModel& operator=(const HistogramModel&) = delete;

  std::int64_t bins() const { return bins_; }
  std::int64_t total() const { return cum_.back(); }
  /// Values in bins [0, i).
  std::int64_t below_bin(std::int64_t i) const { return cum_[static_cast<std::size_t>(i)]; }
  std::int64_t count(std::int64_t i) const { return below_bin(i + 1) - below_bin(i); }

  /// The model's count of values below x (0 at lo(), total() past hi()).
  double below(double x) const {
    const double w = width();
    std::int64_t k = 0;
    if (w > 0)
      k = std::clamp<std::int64_t>(
          static_cast<std::int64_t>(std::floor(std::clamp((x - h_.lo()) / w, -1.0, double(bins_)))),
          0, bins_ - 1);
    const auto [a, b] = support(k);
    const double f = b > a ? std::clamp((x - a) / (b - a), 0.0, 1.0) : (x > a ? 1.0 : 0.0);
    return static_cast<double>(below_bin(k)) + static_cast<double>(count(k)) * f;
  }

  /// Where bin i's values lie: its edges narrowed to [min_val, max_val]. a == b
  /// is a point mass (also for a bin that lies outside the observed range).
  std::pair<double, double> support(std::int64_t i) const {
    const double a = std::max(edge(i), static_cast<double>(h_.min_val));
    const double b = std::min(edge(i + 1), static_cast<double>(h_.max_val));
    return {a, std::max(a, b)};
  }

  /// The value below which `t` of the counts lie (t in [0, total]). lower:
  /// the smallest such value, else the largest (they differ only across
  /// empty bins).
  double quantile(double t, bool lower) const {
    std::int64_t k = -1;
    if (lower) {
      for (std::int64_t i = 0; i < bins() && k < 0; ++i)
        if (count(i) > 0 && static_cast<double>(cum_[i + 1]) >= t) k = i;
    } else {
      for (std::int64_t i = bins(); i-- > 0 && k < 0;)
        if (count(i) > 0 && static_cast<double>(cum_[i]) <= t) k = i;
    }
    require(k >= 0, "histogram: empty (nothing observed)");
    const auto [a, b] = support(k);
    const double f = std::clamp((t - static_cast<double>(cum_[k])) / count(k), 0.0, 1.0);
    return a + f * (b - a);
  }

 private:
  double width() const { return (h_.hi() - h_.lo()) / static_cast<double>(bins_); }
  double edge(std::int64_t i) const { return i == bins_ ? h_.hi() : h_.lo() + width() * i; }

  HistogramRef h_;  // extremes only (counts emptied)
  std::int64_t bins_ = 0;
  std::vector<std::int64_t> own_;
  std::span<std::int64_t> cum_;
};

/// s^3 * integral of r(t)^2 over [t0, t1], r(t) = t - round(t): the rounding
/// error of a grid of step s in grid units.
inline double sawtooth_sq_integral(double t0, double t1, double s) {
  const auto prim = [](double t) {
    const double n = std::floor(t + 0.5), r = t - n;
    return n / 12.0 + r * r * r / 3.0 + 1.0 / 24.0;
  };
  return s * s * s * (prim(t1) - prim(t0));
}

/// The uint8 grid of a parameter set, in double: points rmin + k*step, k in [0, steps].
struct Grid {
  double rmin, rmax, step;
  int steps;
  explicit Grid(QuantParams q)
      : rmin(static_cast<double>(q.scale) * (kernels::Int8Traits::kActivationMin - q.zero_point)),
        rmax(static_cast<double>(q.scale) * (kernels::Int8Traits::kActivationMax - q.zero_point)),
        step(q.scale),
        steps(kernels::Int8Traits::kActivationMax - kernels::Int8Traits::kActivationMin) {}
};

/// Expected squared error (times the count) of fake-quantizing with grid g the
/// values the model puts in bin i: clipping error below rmin and above rmax,
/// rounding error in between.
inline double bin_sq_error(const HistogramModel& m, std::int64_t i, const Grid& g) {
  const auto [a, b] = m.support(i);
  const double n = static_cast<double>(m.count(i));
  const double rmin = g.rmin, rmax = g.rmax, s = g.step;
  if (b <= a) {  // a point mass
    const double k = std::clamp(std::nearbyint((a - rmin) / s), 0.0, double(g.steps));
    const double e = a - (rmin + k * s);
    return n * e * e;
  }
  const auto cube = [](double v) { return v * v * v; };
  double sum = 0;
  if (a < rmin) sum += (cube(std::min(b, rmin) - rmin) - cube(a - rmin)) / 3.0;
  if (b > rmax) sum += (cube(b - rmax) - cube(std::max(a, rmax) - rmax)) / 3.0;
  const double a2 = std::max(a, rmin), b2 = std::min(b, rmax);
  if (b2 > a2) sum += sawtooth_sq_integral((a2 - rmin) / s, (b2 - rmin) / s, s);
  return n * sum / (b - a);
}

/// Sum of bin_sq_error over the bins.
inline double sq_error(const HistogramModel& m, QuantParams q) {
  const Grid g(q);
  double sum = 0;
  for (std::int64_t i = 0; i < m.bins(); ++i)
    if (m.count(i) > 0) sum += bin_sq_error(m, i, g);
  return sum;
}

/// Argmin of cost(i) over the integers [first, last]: with `coarse`, ~128
/// evenly spaced candidates, then every one within a stride of the best (for
/// smooth costs); else every one. The scan starts at `from_first ? first :
/// last` and only a strictly lower cost replaces the best, so ties go to that end.
template <class Cost>
std::int64_t scan_argmin(std::int64_t first, std::int64_t last, bool from_first, bool coarse,
                         Cost&& cost) {
  const std::int64_t n = last - first;
  const std::int64_t stride = coarse ? std::max<std::int64_t>(1, n / 128) : 1;
  std::int64_t best = from_first ? first : last;
  double best_cost = cost(best);
  const auto consider = [&](std::int64_t i) {
    const double c = cost(i);
    if (c < best_cost) {
      best_cost = c;
      best = i;
    }
  };
  for (std::int64_t k = stride; k < n; k += stride) consider(from_first ? first + k : last - k);
  consider(from_first ? last : first);
  if (stride > 1) {
    const std::int64_t centre = best;
    for (std::int64_t d = 1; d < stride; ++d) {
      const std::int64_t i = from_first ? centre - stride + d : centre + stride - d;
      if (i >= first && i <= last) consider(i);
    }
    for (std::int64_t d = 1; d < stride; ++d) {
      const std::int64_t i = from_first ? centre + d : centre - d;
      if (i >= first && i <= last) consider(i);
    }
  }
  return best;
}

/// Coordinate descent over edge pairs (l, r): r in [r_first, bins] (ties to
/// larger r), l in [0, l_last] (ties to smaller l), from (l, r), at most 8
/// rounds; `coarse` as in scan_argmin. feasible(l, r) restricts the pairs.
template <class Cost, class Feasible>
std::pair<std::int64_t, std::int64_t> descend(std::int64_t bins, std::int64_t l_last,
                                              std::int64_t r_first, bool coarse, Cost&& cost,
                                              Feasible&& feasible, std::int64_t l = 0,
                                              std::int64_t r = -1) {
  if (r < 0) r = bins;
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (int round = 0; round < 8; ++round) {
    const std::int64_t l0 = l, r0 = r;
    if (r_first < bins)
      r = scan_argmin(r_first, bins, false, coarse,
                      [&](std::int64_t j) { return feasible(l, j) ? cost(l, j) : kInf; });
    if (l_last > 0)
      l = scan_argmin(0, l_last, true, coarse,
                      [&](std::int64_t i) { return feasible(i, r) ? cost(i, r) : kInf; });
    if (l == l0 && r == r0) break;
  }
  return {l, r};
}

/// The range [a, b] intersected with the observed [min_val, max_val].
inline Range clip_to_observed(double a, double b, const HistogramRef& h) {
  const float lo = std::max(static_cast<float>(a), h.min_val);
  const float hi = std::min(static_cast<float>(b), h.max_val);
  return {std::min(lo, hi), hi};
}

}  // namespace histogram_detail

/// Expected squared error of fake-quantizing the histogram's values with q,
/// summed over the values (divide by the total count for the mean).
inline double histogram_sq_error(HistogramRef h, QuantParams q) {
  return histogram_detail::sq_error(histogram_detail::HistogramModel(h), q);
}

/// [the (100 - p)-th percentile, the p-th percentile] of the histogram's
/// values, p in (50, 100]; p = 100 gives [min_val, max_val].
inline Range histogram_percentile_range(HistogramRef h, double p) {
  require(p > 50.0 && p <= 100.0, "percentile must be in (50, 100], got ", p);
  const histogram_detail::HistogramModel m(h);
  const double total = static_cast<double>(m.total());
  const double a = m.quantile(total * (100.0 - p) / 100.0, true);
  const double b = m.quantile(total * p / 100.0, false);
  return histogram_detail::clip_to_observed(a, b, h);
}

/// The range whose uint8 parameters minimise histogram_sq_error (file comment).
inline Range histogram_mse_range(HistogramRef h) {
  const histogram_detail::HistogramModel m(h);
  const std::int64_t bins = m.bins();
  const double w = h.width();
  if (w == 0.0) return histogram_detail::clip_to_observed(h.lo(), h.hi(), h);
  // Edges up to the first one >= 0 (as a lower end it means 0), and from the
  // last one <= 0.
  const double z = -h.lo() / w;  // where 0 is, in bins
  const std::int64_t l_last =
      std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(z)), 0, bins);
  const std::int64_t r_first =
      std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor(z)), 0, bins);
  const auto cost = [&](std::int64_t l, std::int64_t r) {
    const Range cand{static_cast<float>(std::min(h.edge(l), 0.0)),
                     static_cast<float>(std::max(h.edge(r), 0.0))};
    return histogram_detail::sq_error(m, choose_activation_params(cand));
  };
  const auto [l, r] = histogram_detail::descend(bins, l_last, r_first, true, cost,
                                                [](std::int64_t, std::int64_t) { return true; });
  return histogram_detail::clip_to_observed(std::min(h.edge(l), 0.0), std::max(h.edge(r), 0.0), h);
}

/// The number of uint8 steps a KL window is quantized into.
inline constexpr std::int64_t kKlLevels =
    kernels::Int8Traits::kActivationMax - kernels::Int8Traits::kActivationMin;

namespace histogram_detail {

/// What the KL rule works on: the histogram's counts, except that the bin
/// holding 0 takes the mean count of its neighbours (NVIDIA's TensorRT
/// calibrator does the same on its |x| histogram): ReLU outputs put a spike
/// of exact zeros there, which the uint8 grid represents exactly but which
/// would dominate any divergence computed from bins. Prefix sums of the
/// counts, of the nonzero bins and of c*log(c) make one divergence O(levels).
class KlModel {
 public:
  explicit KlModel(HistogramRef h) : bins_(h.bins()) {
    const auto n = static_cast<std::size_t>(bins_);
    std::vector<double> a(n);
    for (std::size_t i = 0; i < n; ++i) a[i] = static_cast<double>(h.counts[i]);
    if (bins_ >= 2) {
      const std::int64_t z = BinMap(h)(0.f);
      double sum = 0;
      int k = 0;
      for (const std::int64_t j : {z - 1, z + 1})
        if (j >= 0 && j < bins_) sum += a[static_cast<std::size_t>(j)], ++k;
      a[static_cast<std::size_t>(z)] = sum / k;
    }
    count_.assign(n + 1, 0.0);
    nonzero_.assign(n + 1, 0.0);
    clogc_.assign(n + 1, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
      count_[i + 1] = count_[i] + a[i];
      nonzero_[i + 1] = nonzero_[i] + (a[i] > 0 ? 1 : 0);
      clogc_[i + 1] = clogc_[i] + plogp(a[i]);
    }
    counts_ = std::move(a);
  }

  std::int64_t bins() const { return bins_; }

  /// KL(P || Q) of the window [l, r) (the file comment), r - l >= kKlLevels.
  double divergence(std::int64_t l, std::int64_t r) const {
    // A window holding no counts clips everything: never a candidate (its
    // smoothed Q would match the folded P exactly).
    if (count_[r] - count_[l] <= 0) return std::numeric_limits<double>::infinity();
    const std::int64_t w = r - l;
    const double out_l = count_[l], out_r = count_[bins_] - count_[r];
    const double total = count_[bins_];
    // TensorRT's smoothing: a bin where P > 0 but Q = 0 (its group has no
    // counts inside the window, only folded outliers) gets Q = kEps.
    constexpr double kEps = 1e-4;
    double kl_sum = 0;  // sum over the window of p * log(p / q), unnormalised p and q
    double smoothed = 0;
    for (std::int64_t j = 0; j < kKlLevels; ++j) {
      const std::int64_t g0 = l + j * w / kKlLevels, g1 = l + (j + 1) * w / kKlLevels;
      const double group = count_[g1] - count_[g0];  // Q's mass: no outliers
      double nonzero = nonzero_[g1] - nonzero_[g0];
      double p_sum = group, plogp_sum = clogc_[g1] - clogc_[g0];
      // The window's end bins hold the outliers in P.
      const auto fold = [&](std::int64_t i, double out) {
        if (out <= 0) return;
        const double c = counts_[static_cast<std::size_t>(i)];
        if (c == 0) nonzero += 1;
        p_sum += out;
        plogp_sum += plogp(c + out) - plogp(c);
      };
      if (g0 == l) fold(l, out_l);
      if (g1 == r) fold(r - 1, out_r);
      if (nonzero == 0) continue;
      double q = group / nonzero;
      if (group == 0) {
        q = kEps;
        smoothed += nonzero;
      }
      kl_sum += plogp_sum - p_sum * std::log(q);
    }
    // sum (p/P) log((p/P) / (q/Qn)) = kl_sum / P + log(Qn / P)
    const double q_norm = count_[r] - count_[l] + kEps * smoothed;
    return kl_sum / total + std::log(q_norm / total);
  }

 private:
  static double plogp(double c) { return c > 0 ? c * std::log(c) : 0.0; }

  std::int64_t bins_;
  std::vector<double> counts_, count_, nonzero_, clogc_;
};

}  // namespace histogram_detail

/// KL(P || Q) of the window of bins [l, r) (file comment), r - l >= kKlLevels.
inline double histogram_kl_divergence(HistogramRef h, std::int64_t l, std::int64_t r) {
  require(l >= 0 && r <= h.bins() && r - l >= kKlLevels, "histogram_kl_divergence: window [", l,
          ", ", r, ") of a ", h.bins(), "-bin histogram is not ", kKlLevels, " bins or more");
  return histogram_detail::KlModel(h).divergence(l, r);
}

/// TensorRT's entropy calibration, asymmetric (file comment). The histogram
/// needs at least kKlLevels bins.
inline Range histogram_kl_range(HistogramRef h) {
  const std::int64_t bins = h.bins();
  require(bins >= kKlLevels, "the KL range needs a histogram of at least ", kKlLevels,
          " bins, got ", bins);
  require(h.min_val <= h.max_val, "histogram: empty (nothing observed)");
  const double w = h.width();
  if (w == 0.0) return histogram_detail::clip_to_observed(h.lo(), h.hi(), h);
  const histogram_detail::KlModel m(h);
  // The window must hold 0: edge l <= 0 <= edge r.
  const double z = -h.lo() / w;
  const std::int64_t l_last =
      std::clamp<std::int64_t>(static_cast<std::int64_t>(std::floor(z)), 0, bins);
  const std::int64_t r_first =
      std::clamp<std::int64_t>(static_cast<std::int64_t>(std::ceil(z)), 0, bins);
  const auto cost = [&](std::int64_t a, std::int64_t b) { return m.divergence(a, b); };
  const auto feasible = [&](std::int64_t a, std::int64_t b) { return b - a >= kKlLevels; };
  // The start: the best pair of a grid of ~64 x 64 (coordinate descent alone,
  // started at one end, would settle for lopsided windows on symmetric data).
  std::int64_t l0 = 0, r0 = bins;
  double best = cost(l0, r0);
  const std::int64_t sl = std::max<std::int64_t>(1, l_last / 64);
  const std::int64_t sr = std::max<std::int64_t>(1, (bins - r_first) / 64);
  for (std::int64_t a = 0; a <= l_last; a += sl)
    for (std::int64_t b = bins; b >= r_first; b -= sr)
      if (feasible(a, b)) {
        const double c = cost(a, b);
        if (c < best) best = c, l0 = a, r0 = b;
      }
  const auto [l, r] =
      histogram_detail::descend(bins, l_last, r_first, false, cost, feasible, l0, r0);
  return histogram_detail::clip_to_observed(h.edge(l), h.edge(r), h);
}

/// Re-bins a histogram onto the range of new observed extremes [new_min,
/// new_max], which must contain [h.min_val, h.max_val]: with C(x) the model's
/// count of values below x, new bin j gets round(C(e_{j+1})) - round(C(e_j))
/// at the new edges e (round half to even; C(e_0) = 0 and C(e_bins) = the
/// total). So the total is kept exactly, no count is negative, and each new
/// bin holds what the old model put in it up to one count. `out` has as many
/// bins as h and may be h's own counts; `scratch` holds bins + 1 prefix
/// counts (nothing is allocated).
inline void rebin_histogram(HistogramRef h, float new_min, float new_max,
                            std::span<std::int64_t> out, std::span<std::int64_t> scratch) {
  require(new_min <= h.min_val && new_max >= h.max_val && out.size() == h.counts.size() &&
              scratch.size() > h.counts.size(),
          "rebin_histogram: [", new_min, ", ", new_max, "] does not contain [", h.min_val, ", ",
          h.max_val, "] or the spans do not fit");
  const histogram_detail::HistogramModel m(h, scratch);
  const HistogramRef to{out, new_min, new_max};
  const std::int64_t bins = m.bins();
  std::int64_t prev = 0;
  for (std::int64_t j = 0; j < bins; ++j) {
    const std::int64_t next =
        j + 1 == bins ? m.total()
                      : static_cast<std::int64_t>(std::nearbyint(m.below(to.edge(j + 1))));
    out[static_cast<std::size_t>(j)] = next - prev;
    prev = next;
  }
}

}  // namespace compressor::quant
