// Observers (quant/observers.hpp) and the quantization parameters they feed
// (quant/qparams.hpp): known distributions give known ranges, clipping rules
// beat min/max on heavy tails, the histogram survives growing ranges, the
// uint8 / int8 parameter rules, observers as output hooks (no copy, freeze,
// clone, buffers, checkpoints, NaN), and no allocation per batch.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <new>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/io/checkpoint.hpp"
#include "compressor/nn/activation.hpp"
#include "compressor/nn/identity.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/sequential.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/observers.hpp"
#include "compressor/quant/qat.hpp"
#include "compressor/quant/qparams.hpp"
#include "support/test_util.hpp"

// ---- allocation counting (not under AddressSanitizer, which owns operator new) ----
#if defined(__SANITIZE_ADDRESS__)
#define COMPRESSOR_COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COMPRESSOR_COUNT_ALLOCS 0
#endif
#endif
#ifndef COMPRESSOR_COUNT_ALLOCS
#define COMPRESSOR_COUNT_ALLOCS 1
#endif

#if COMPRESSOR_COUNT_ALLOCS
namespace {
std::atomic<std::int64_t> g_allocations{0};
void* counted_alloc(std::size_t n, std::size_t align) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  n = std::max<std::size_t>(n, 1);
  void* p = align <= alignof(std::max_align_t)
                ? std::malloc(n)
                : std::aligned_alloc(align, (n + align - 1) / align * align);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace
void* operator new(std::size_t n) {
  return counted_alloc(n, 0);
}
void* operator new[](std::size_t n) {
  return counted_alloc(n, 0);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  std::free(p);
}
#endif

using namespace compressor;
using namespace compressor::quant;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

Tensor<float> from_vector(const std::vector<float>& v) {
  return Tensor<float>::from(Shape{static_cast<std::int64_t>(v.size())}, std::span<const float>(v));
}

std::vector<float> uniform(std::size_t n, double lo, double hi, Rng& rng) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.uniform(lo, hi));
  return v;
}

/// Student's t with 3 degrees of freedom: heavy tails (the largest of 1M is ~100).
std::vector<float> student_t3(std::size_t n, Rng& rng) {
  std::vector<float> v(n);
  for (auto& x : v) {
    double chi2 = 0;
    for (int k = 0; k < 3; ++k) {
      const double z = rng.normal();
      chi2 += z * z;
    }
    x = static_cast<float>(rng.normal() / std::sqrt(chi2 / 3.0));
  }
  return v;
}

/// Feeds v to the observer in `batches` contiguous pieces.
void feed(Observer& o, const std::vector<float>& v, int batches) {
  const std::size_t n = v.size();
  for (int b = 0; b < batches; ++b) {
    const std::size_t begin = n * b / batches, end = n * (b + 1) / batches;
    o.observe(
        TensorView<const float>(v.data() + begin, Shape{static_cast<std::int64_t>(end - begin)}));
  }
}

/// Mean squared error of fake-quantizing v with the parameters of range r.
double quant_mse(const std::vector<float>& v, Range r) {
  const QuantParams q = choose_activation_params(r);
  double s = 0;
  for (const float x : v) {
    const double e = double(fake_quantize_activation(x, q)) - x;
    s += e * e;
  }
  return s / static_cast<double>(v.size());
}

std::int64_t histogram_total(const HistogramObserver& h) {
  std::int64_t t = 0;
  for (const auto c : h.histogram().counts) t += c;
  return t;
}

std::unique_ptr<HistogramObserver> histogram_observer(HistogramMethod m, double p = 99.99,
                                                      std::int64_t bins = 2048) {
  return std::make_unique<HistogramObserver>(bins, m, p);
}

}  // namespace

// ---- known distributions ---------------------------------------------------------

TEST_CASE("MinMaxObserver: uniform [-2, 3] gives [-2, 3] exactly", "[quant][observers]") {
  Rng rng(1);
  std::vector<float> v = uniform(100000, -2, 3, rng);
  v[123] = -2.f;
  v[77777] = 3.f;
  MinMaxObserver o;
  CHECK(o.type_name() == "MinMaxObserver");
  feed(o, v, 7);
  CHECK(o.observed() == 7);
  CHECK(o.range().min == -2.f);
  CHECK(o.range().max == 3.f);
  const QuantParams q = o.qparams();
  CHECK(q.scale == Approx(5.0 / 255).epsilon(1e-6));
  CHECK(q.zero_point == 102);  // round(2 / (5/255)) = round(102.0)
}

TEST_CASE("MovingAverageMinMaxObserver follows PyTorch's recurrence", "[quant][observers]") {
  SECTION("c = 0.5 on three batches, exact binary fractions") {
    MovingAverageMinMaxObserver o(0.5f);
    CHECK(o.type_name() == "MovingAverageMinMaxObserver");
    o.observe(from_vector({-1.f, 0.25f, 1.f}));
    CHECK(o.range().min == -1.f);
    CHECK(o.range().max == 1.f);
    o.observe(from_vector({2.f, -3.f}));  // -1 + (-3 + 1)/2, 1 + (2 - 1)/2
    CHECK(o.range().min == -2.f);
    CHECK(o.range().max == 1.5f);
    o.observe(from_vector({0.5f, 4.f, 1.f}));  // -2 + (0.5 + 2)/2, 1.5 + (4 - 1.5)/2
    CHECK(o.range().min == -0.75f);
    CHECK(o.range().max == 2.75f);
    CHECK(o.observed() == 3);
  }
  SECTION("default c = 0.01 over 50 random batches") {
    Rng rng(2);
    MovingAverageMinMaxObserver o;
    CHECK(o.averaging_constant() == 0.01f);
    double mn = 0, mx = 0;
    for (int b = 0; b < 50; ++b) {
      const double scale = 1.0 + b * 0.1;
      std::vector<float> v = uniform(1000, -scale, 2 * scale, rng);
      const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
      if (b == 0) {
        mn = *lo;
        mx = *hi;
      } else {
        const double c = 0.01f;
        mn = static_cast<float>(mn + c * (*lo - mn));
        mx = static_cast<float>(mx + c * (*hi - mx));
      }
      o.observe(from_vector(v));
      INFO("batch " << b);
      REQUIRE(o.range().min == Approx(mn).epsilon(1e-6));
      REQUIRE(o.range().max == Approx(mx).epsilon(1e-6));
    }
    // The average lags the growing extremes.
    CHECK(o.range().max < 2 * 5.9 * 0.9);
  }
  SECTION("c = 1 keeps the last batch") {
    MovingAverageMinMaxObserver o(1.f);
    o.observe(from_vector({-5.f, 5.f}));
    o.observe(from_vector({-1.f, 2.f}));
    CHECK(o.range().min == -1.f);
    CHECK(o.range().max == 2.f);
  }
  CHECK_THROWS_AS(MovingAverageMinMaxObserver(0.f), ValueError);
  CHECK_THROWS_AS(MovingAverageMinMaxObserver(1.5f), ValueError);
}

namespace {
/// Stands in for another replica whose tensor spans [other_lo, other_hi]
/// (+inf / -inf: a replica without values).
struct OtherReplica final : RangeReducer {
  OtherReplica(float lo, float hi) : lo(lo), hi(hi) {}
  void reduce(float& l, float& h) override {
    ++calls;
    l = std::min(l, lo);
    h = std::max(h, hi);
  }
  float lo, hi;
  int calls = 0;
};
}  // namespace

TEST_CASE("Min/max observers record extremes over replicas through a RangeReducer",
          "[quant][observers]") {
  const float inf = std::numeric_limits<float>::infinity();
  SECTION("MinMaxObserver") {
    MinMaxObserver o;
    auto other = std::make_shared<OtherReplica>(-4.f, 0.5f);
    o.set_range_reducer(other);
    CHECK(o.reduces_across_replicas());
    o.observe(from_vector({-1.f, 2.f}));
    CHECK(o.range().min == -4.f);
    CHECK(o.range().max == 2.f);
    // An empty tensor here still joins the reduction, and the other
    // replica's values count.
    other->lo = -6.f;
    o.observe(from_vector({}));
    CHECK(other->calls == 2);
    CHECK(o.range().min == -6.f);
    CHECK(o.observed() == 2);
    // Empty on every replica: nothing recorded.
    other->lo = inf;
    other->hi = -inf;
    o.observe(from_vector({}));
    CHECK(other->calls == 3);
    CHECK(o.observed() == 2);
    // Frozen: no observing, no reduction.
    o.freeze();
    CHECK_FALSE(o.reduces_across_replicas());
    (void)o.forward(from_vector({100.f}));
    CHECK(other->calls == 3);
    // A NaN is an error before any reduction.
    o.unfreeze();
    CHECK_THROWS_AS(o.observe(from_vector({std::nanf("")})), ValueError);
    CHECK(other->calls == 3);
    o.set_range_reducer(nullptr);
    CHECK_FALSE(o.reduces_across_replicas());
  }
  SECTION("MovingAverageMinMaxObserver moves towards the extremes over replicas") {
    MovingAverageMinMaxObserver o(0.5f);
    o.set_range_reducer(std::make_shared<OtherReplica>(-3.f, 1.f));
    o.observe(from_vector({-1.f, 0.25f}));  // over replicas: [-3, 1]
    CHECK(o.range().min == -3.f);
    CHECK(o.range().max == 1.f);
    o.observe(from_vector({4.f}));  // [-3, 4]: -3 + 0 / 2, 1 + (4 - 1) / 2
    CHECK(o.range().min == -3.f);
    CHECK(o.range().max == 2.5f);
  }
  SECTION("HistogramObserver refuses, naming its point") {
    HistogramObserver h;
    h.set_label("features.2");
    CHECK_THROWS_WITH(h.set_range_reducer(std::make_shared<OtherReplica>(0.f, 1.f)),
                      Catch::Contains("quantization point 'features.2': HistogramObserver cannot "
                                      "combine its statistics across replicas"));
    h.set_range_reducer(nullptr);  // per-replica: fine
    CHECK_FALSE(h.reduces_across_replicas());
  }
}

TEST_CASE("HistogramObserver percentiles of a uniform distribution", "[quant][observers]") {
  Rng rng(3);
  const std::vector<float> v = uniform(1 << 20, -2, 3, rng);
  const double bin = 5.0 / 2048;
  for (const double p : {99.99, 99.0, 90.0}) {
    HistogramObserver o(2048, HistogramMethod::percentile, p);
    feed(o, v, 4);
    const Range r = o.range();
    const double lo = -2 + 5 * (1 - p / 100), hi = -2 + 5 * p / 100;
    // one bin, plus four standard deviations of the sample quantile
    const double sd = std::sqrt((1 - p / 100) * (p / 100) / double(v.size())) / 0.2;
    INFO("p = " << p << ": got [" << r.min << ", " << r.max << "], expected [" << lo << ", " << hi
                << "] +- " << bin + 4 * sd);
    CHECK(std::abs(r.min - lo) <= bin + 4 * sd);
    CHECK(std::abs(r.max - hi) <= bin + 4 * sd);
    CHECK(histogram_total(o) == static_cast<std::int64_t>(v.size()));
  }
  SECTION("p = 100 is the observed range") {
    HistogramObserver o(2048, HistogramMethod::percentile, 100.0);
    feed(o, v, 3);
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    CHECK(o.range().min == *lo);
    CHECK(o.range().max == *hi);
  }
}

TEST_CASE("HistogramObserver re-bins when the range grows, keeping every count",
          "[quant][observers]") {
  // The same uniform [-2, 3] values, fed in batches of growing range: the
  // inner ones first, then wider shells. The percentiles must not move by
  // more than the sampling error and a couple of bins.
  Rng rng(4);
  const std::vector<float> v = uniform(1 << 20, -2, 3, rng);
  std::vector<std::vector<float>> shells(5);
  for (const float x : v) {
    const float a = std::abs(x - 0.5f);  // the range grows on both sides
    const int s = a < 0.1f ? 0 : a < 0.5f ? 1 : a < 1.2f ? 2 : a < 2.f ? 3 : 4;
    shells[s].push_back(x);
  }
  for (const double p : {99.99, 99.0}) {
    HistogramObserver grown(2048, HistogramMethod::percentile, p);
    HistogramObserver direct(2048, HistogramMethod::percentile, p);
    for (const auto& s : shells) grown.observe(from_vector(s));
    feed(direct, v, 1);
    CHECK(histogram_total(grown) == static_cast<std::int64_t>(v.size()));
    CHECK(grown.observed() == 5);
    const double bin = 5.0 / 2048;
    const double lo = -2 + 5 * (1 - p / 100), hi = -2 + 5 * p / 100;
    const double sd = std::sqrt((1 - p / 100) * (p / 100) / double(v.size())) / 0.2;
    INFO("p = " << p << ": grown [" << grown.range().min << ", " << grown.range().max
                << "], direct [" << direct.range().min << ", " << direct.range().max
                << "], expected [" << lo << ", " << hi << "]");
    CHECK(std::abs(grown.range().min - lo) <= 2 * bin + 4 * sd);
    CHECK(std::abs(grown.range().max - hi) <= 2 * bin + 4 * sd);
    CHECK(std::abs(grown.range().min - direct.range().min) <= 2 * bin);
    CHECK(std::abs(grown.range().max - direct.range().max) <= 2 * bin);
  }
  SECTION("the re-binned histogram matches a direct one bin by bin, up to neighbours") {
    HistogramObserver grown, direct;
    for (const auto& s : shells) grown.observe(from_vector(s));
    feed(direct, v, 1);
    const auto g = grown.histogram().counts, d = direct.histogram().counts;
    // Compare cumulative counts: re-binning moves counts by a fraction of a bin
    // (measured: 34 counts, a bin holding ~512).
    std::int64_t cg = 0, cd = 0, worst = 0;
    for (std::size_t i = 0; i < g.size(); ++i) {
      cg += g[i];
      cd += d[i];
      worst = std::max(worst, std::abs(cg - cd));
    }
    INFO("largest difference of the cumulative counts: " << worst << " (a bin holds ~"
                                                         << v.size() / 2048 << ")");
    CHECK(worst <= static_cast<std::int64_t>(v.size() / 2048) / 4);
  }
}

TEST_CASE("All values equal: every observer gives the point, every grid holds it exactly",
          "[quant][observers]") {
  for (const float c : {2.5f, -1.5f, 0.f}) {
    const std::vector<float> v(5000, c);
    for (const std::string_view name : kObserverNames) {
      auto o = make_observer(name);
      feed(*o, v, 3);
      INFO(name << " on " << c);
      const Range r = o->range();
      CHECK(r.min == c);
      CHECK(r.max == c);
      const QuantParams q = o->qparams();
      CHECK(q.scale > 0.f);
      CHECK(std::isfinite(q.scale));
      CHECK(fake_quantize_activation(c, q) == Approx(c).margin(1e-6));
      CHECK(fake_quantize_activation(0.f, q) == 0.f);
    }
  }
  // The histogram after a constant batch grows correctly when the next differs.
  HistogramObserver h;
  h.observe(from_vector(std::vector<float>(1000, 0.f)));
  h.observe(from_vector({4.f}));
  CHECK(histogram_total(h) == 1001);
  CHECK(h.histogram().counts[0] == 1000);
  CHECK(h.histogram().counts[2047] == 1);
}

TEST_CASE("Only positive data (ReLU outputs): zero point 0, sensible upper ends",
          "[quant][observers]") {
  Rng rng(5);
  std::vector<float> v(1 << 20);
  for (auto& x : v) x = std::max(0.f, static_cast<float>(rng.normal()));
  const float top = *std::max_element(v.begin(), v.end());
  for (const std::string_view name : kObserverNames) {
    auto o = make_observer(name);
    feed(*o, v, 4);
    const Range r = o->range();
    const QuantParams q = o->qparams();
    INFO(name << ": [" << r.min << ", " << r.max << "], zero point " << q.zero_point);
    CHECK(r.min >= 0.f);
    CHECK(q.zero_point == 0);
    CHECK(r.max <= top);
    CHECK(r.max > 2.5f);  // a real clip keeps the bulk (99.4% lie below 2.5)
  }
  // The 99.99th percentile of max(0, N(0, 1)) is the 99.99th of N(0, 1): 3.719.
  HistogramObserver p;
  feed(p, v, 4);
  CHECK(p.range().max == Approx(3.719).margin(0.05));
}

namespace {

/// Quantization MSE on v of MinMax's range and of each histogram rule's; checks
/// that the MSE rule is the best of them (it minimises this very quantity on
/// the histogram model) and returns {minmax, percentile, mse, kl}.
std::vector<double> compare_rules(const std::vector<float>& v) {
  MinMaxObserver mm;
  feed(mm, v, 4);
  std::vector<double> e = {quant_mse(v, mm.range())};
  std::string report = "min/max [" + std::to_string(mm.range().min) + ", " +
                       std::to_string(mm.range().max) + "] MSE " + std::to_string(e[0]);
  for (const auto m : {HistogramMethod::percentile, HistogramMethod::mse, HistogramMethod::kl}) {
    auto o = histogram_observer(m);
    feed(*o, v, 4);
    const Range r = o->range();
    e.push_back(quant_mse(v, r));
    report += "; " + std::string(to_string(m)) + " [" + std::to_string(r.min) + ", " +
              std::to_string(r.max) + "] MSE " + std::to_string(e.back());
  }
  INFO(report);
  CHECK(e[2] <= 1.02 * std::min({e[0], e[1], e[3]}));
  WARN(report);  // the numbers, for docs/quantization.md
  return e;
}

}  // namespace

TEST_CASE("Heavy tails: percentile, MSE and KL ranges quantize better than min/max",
          "[quant][observers]") {
  Rng rng(6);
  SECTION("Student-t(3)") {
    const auto e = compare_rules(student_t3(1 << 20, rng));
    CHECK(e[1] < e[0]);
    CHECK(e[2] < 0.5 * e[0]);
    CHECK(e[3] < e[0]);
  }
  SECTION("Laplace") {
    std::vector<float> v(1 << 20);
    for (auto& x : v) {
      const double u = rng.uniform() - 0.5;
      x = static_cast<float>(-std::copysign(1.0, u) * std::log(1 - 2 * std::abs(u)));
    }
    const auto e = compare_rules(v);
    CHECK(e[1] < e[0]);
    CHECK(e[2] < e[0]);
    CHECK(e[3] < e[0]);
  }
  SECTION("Laplace with two outliers at +-300") {
    // Two values in 1M: clipping them near 10 costs 2e-6 * 290^2 = 0.17 of
    // MSE, keeping them costs min/max's rounding error, ~(600 / 255)^2 / 12 = 0.46.
    std::vector<float> v(1 << 20);
    for (auto& x : v) {
      const double u = rng.uniform() - 0.5;
      x = static_cast<float>(-std::copysign(1.0, u) * std::log(1 - 2 * std::abs(u)));
    }
    v[4242] = 300.f;
    v[424242] = -300.f;
    const auto e = compare_rules(v);
    CHECK(e[1] < 0.5 * e[0]);
    CHECK(e[2] < 0.5 * e[0]);
    CHECK(e[3] < 0.5 * e[0]);
  }
  SECTION("Student-t(3), ReLU'd: only the MSE rule is sure to beat min/max") {
    // Half the values are exact zeros (no error on any grid), so the clipped
    // tail weighs twice as much against the rounding error: the 99.99th
    // percentile and KL clip too hard here, the MSE rule does not.
    std::vector<float> v = student_t3(1 << 20, rng);
    for (auto& x : v) x = std::max(0.f, x);
    const auto e = compare_rules(v);
    CHECK(e[2] < 0.75 * e[0]);
  }
  SECTION("Gaussian plus 0.01% outliers at 100 sigma: clipping them costs more than it saves") {
    // 105 values at +-100: clipped at c they cost ~1e-4 * (100 - c)^2 of MSE,
    // more than min/max's whole rounding error ((200 / 255)^2 / 12 = 0.05).
    // The MSE rule sees that and keeps them; percentile and KL clip them.
    std::vector<float> v(1 << 20);
    for (auto& x : v) x = static_cast<float>(rng.normal());
    for (std::size_t i = 0; i < v.size(); i += 10000) v[i] = (i / 10000) % 2 ? 100.f : -100.f;
    const auto e = compare_rules(v);
    CHECK(e[2] <= 1.01 * e[0]);
  }
}

TEST_CASE("The MSE search finds the best pair of bin edges", "[quant][observers]") {
  // Exhaustively over every (lower, upper) pair of edges of a 64-bin
  // histogram: coordinate descent must land on (or next to) the optimum.
  Rng rng(7);
  std::vector<float> v = student_t3(200000, rng);
  for (auto& x : v) x = x * 0.5f + 1.f;
  HistogramObserver o(64, HistogramMethod::mse);
  feed(o, v, 2);
  const HistogramRef h = o.histogram();
  const double found = histogram_sq_error(h, o.qparams());
  double best = std::numeric_limits<double>::infinity();
  for (std::int64_t l = 0; l <= 64; ++l)
    for (std::int64_t r = 0; r <= 64; ++r) {
      const Range c{static_cast<float>(std::min(h.edge(l), 0.0)),
                    static_cast<float>(std::max(h.edge(r), 0.0))};
      best = std::min(best, histogram_sq_error(h, choose_activation_params(c)));
    }
  INFO("found " << found << ", exhaustive best " << best);
  CHECK(found <= best * (1 + 1e-9));
  // And it is far better than the full range.
  CHECK(found < 0.9 * histogram_sq_error(h, choose_activation_params({h.min_val, h.max_val})));
}

TEST_CASE("The KL search finds the best window on one-signed data", "[quant][observers]") {
  // ReLU'd heavy tails: the lower end is 0, so the search is over the upper
  // edge only; compare with every admissible edge.
  Rng rng(8);
  std::vector<float> v = student_t3(1 << 19, rng);
  for (auto& x : v) x = std::max(0.f, x);
  HistogramObserver o(1024, HistogramMethod::kl);
  feed(o, v, 2);
  const HistogramRef h = o.histogram();
  double best = std::numeric_limits<double>::infinity();
  std::int64_t best_r = -1;
  for (std::int64_t r = kKlLevels; r <= 1024; ++r) {
    const double d = histogram_kl_divergence(h, 0, r);
    if (d < best) best = d, best_r = r;
  }
  const Range got = o.range();
  const auto r_found = static_cast<std::int64_t>(std::lround(got.max / h.width()));
  const double d_found = histogram_kl_divergence(h, 0, std::min<std::int64_t>(r_found, 1024));
  INFO("found edge " << r_found << " (KL " << d_found << "), exhaustive best edge " << best_r
                     << " (KL " << best << ")");
  CHECK(d_found <= best * 1.05 + 1e-12);
}

// ---- qparams.hpp -----------------------------------------------------------------

TEST_CASE("choose_activation_params: 0 on the grid, the range covered", "[quant][qparams]") {
  Rng rng(9);
  std::vector<Range> ranges = {{-1.f, 1.f},   {0.f, 6.f},      {-6.f, 0.f},    {-5.f, -1.f},
                               {1.f, 5.f},    {-1e-6f, 3e-6f}, {-3e4f, 1e-3f}, {-1e30f, 1e30f},
                               {0.f, 1e-30f}, {-0.3f, 0.1f}};
  for (int i = 0; i < 2000; ++i) {
    const double span = std::pow(10.0, rng.uniform(-6, 6));
    const double lo = rng.uniform(-1, 0.5) * span;
    ranges.push_back({static_cast<float>(lo), static_cast<float>(lo + span * rng.uniform())});
  }
  for (const Range r : ranges) {
    const QuantParams q = choose_activation_params(r);
    INFO("[" << r.min << ", " << r.max << "] -> scale " << q.scale << ", zero point "
             << q.zero_point);
    REQUIRE(q.scale > 0.f);
    REQUIRE(std::isfinite(q.scale));
    REQUIRE(q.zero_point >= 0);
    REQUIRE(q.zero_point <= 255);
    REQUIRE(quantize_activation(0.f, q) == q.zero_point);
    REQUIRE(fake_quantize_activation(0.f, q) == 0.f);
    // The grid covers [min(0, lo), max(0, hi)] up to half a step at one end
    // (the zero point is rounded).
    const Range rr = represented_range(q);
    const double lo = std::min(0.f, r.min), hi = std::max(0.f, r.max);
    REQUIRE(rr.min <= lo + 0.5001 * q.scale + 1e-6 * std::abs(lo));
    REQUIRE(rr.max >= hi - 0.5001 * q.scale - 1e-6 * std::abs(hi));
    REQUIRE(rr.max - rr.min == Approx(std::max<double>(hi - lo, kMinScale * 255)).epsilon(1e-5));
  }
}

TEST_CASE("choose_activation_params: one-signed and empty ranges", "[quant][qparams]") {
  const QuantParams neg = choose_activation_params({-5.f, -1.f});
  CHECK(neg.zero_point == 255);
  CHECK(represented_range(neg).max == 0.f);
  CHECK(represented_range(neg).min == Approx(-5.f));
  CHECK(fake_quantize_activation(-5.f, neg) == Approx(-5.f));
  CHECK(fake_quantize_activation(1.f, neg) == 0.f);  // clipped
  const QuantParams pos = choose_activation_params({1.f, 5.f});
  CHECK(pos.zero_point == 0);
  CHECK(represented_range(pos).min == 0.f);
  CHECK(represented_range(pos).max == Approx(5.f));
  CHECK(fake_quantize_activation(-1.f, pos) == 0.f);
  const QuantParams zero = choose_activation_params({0.f, 0.f});
  CHECK(zero.scale == kMinScale);
  CHECK(zero.zero_point == 0);
  CHECK(fake_quantize_activation(0.f, zero) == 0.f);
  CHECK(std::isfinite(fake_quantize_activation(1.f, zero)));
  CHECK_THROWS_AS(choose_activation_params({1.f, 0.f}), ValueError);
  CHECK_THROWS_AS(choose_activation_params({0.f, kInf}), ValueError);
  CHECK_THROWS_AS(choose_activation_params({std::nanf(""), 1.f}), ValueError);
}

TEST_CASE("weight quantization: on the grid, within half a step", "[quant][qparams]") {
  Rng rng(10);
  Tensor<float> w(Shape{6, 3, 3, 5});
  for (auto& x : w.flat()) x = static_cast<float>(rng.normal() * 0.1);
  for (std::int64_t k = 0; k < 45; ++k) w[2 * 45 + k] = 0.f;  // an all-zero channel
  w[4 * 45 + 7] = 3.f;                                        // an outlier
  const WeightGrid grid = GENERATE(WeightGrid::narrow, WeightGrid::full);
  INFO("weight grid " << to_string(grid));
  const std::int32_t qmax = weight_qmax(grid);
  CHECK(qmax == (grid == WeightGrid::narrow ? kernels::Int8Traits::kWeightQMax : 127));
  const auto scales = weight_scales(w, grid);
  const auto absmax = per_channel_absmax(w);
  const auto ranges = per_channel_range(w);
  REQUIRE(scales.size() == 6);
  REQUIRE(absmax.size() == 6);
  CHECK(scales[2] == kMinScale);
  CHECK(absmax[4] == 3.f);
  for (std::size_t o = 0; o < 6; ++o) {
    if (o != 2) CHECK(scales[o] == static_cast<float>(absmax[o] / double(qmax)));
    CHECK(absmax[o] == std::max(-ranges[o].min, ranges[o].max));
  }
  const Tensor<std::int8_t> q = quantize_weights(w, scales, grid);
  std::int32_t lo = 0, hi = 0;
  for (std::int64_t o = 0; o < 6; ++o)
    for (std::int64_t k = 0; k < 45; ++k) {
      const float x = w[o * 45 + k], s = scales[static_cast<std::size_t>(o)];
      const std::int32_t v = q[o * 45 + k];
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      REQUIRE(v >= -qmax);
      REQUIRE(v <= qmax);
      REQUIRE(v == quantize_weight(x, s, grid));
      REQUIRE(std::abs(fake_quantize_weight(x, s, grid) - x) <= 0.5f * s * (1 + 1e-6f));
    }
  CHECK(hi == qmax);  // the max-abs weight of a channel lands on the end of the grid
  CHECK(lo == -qmax);
  for (std::int64_t k = 0; k < 45; ++k) CHECK(q[2 * 45 + k] == 0);
  // Out-of-range values clamp to the grid.
  CHECK(quantize_weight(100.f, 0.01f, grid) == qmax);
  CHECK(quantize_weight(-100.f, 0.01f, grid) == -qmax);
  // A weight with empty channels: zero ranges, not an error.
  const auto empty = per_channel_range(Tensor<float>(Shape{3, 0}));
  REQUIRE(empty.size() == 3);
  CHECK(empty[1].min == 0.f);
  CHECK(empty[1].max == 0.f);
  CHECK(scan_min_max(nullptr, 0).finite);
  w[3] = std::nanf("");
  CHECK_THROWS_AS(weight_scales(w, grid), ValueError);
  CHECK_THROWS_WITH(per_channel_range(w), Catch::Contains("non-finite weight in output channel 0"));
}

TEST_CASE("weight grids by name, and the default of PTQ and QAT", "[quant][qparams]") {
  for (const WeightGrid g : {WeightGrid::narrow, WeightGrid::full})
    CHECK(weight_grid_from_string(to_string(g)) == g);
  CHECK(to_string(WeightGrid::full) == "full");
  CHECK(weight_qmax(WeightGrid::full) == 127);
  CHECK_THROWS_AS(weight_grid_from_string("wide"), ValueError);
  CHECK_THROWS_WITH(
      weight_grid_from_string("Full"),
      Catch::Contains("unknown weight grid 'Full'") && Catch::Contains("expected: narrow or full"));
  // The full grid is the default once the kernels run it exactly on every
  // path (issue 12): PTQ and QAT quantize weights to [-127, 127].
  CHECK(PtqConfig{}.grid == WeightGrid::full);
  CHECK(QatConfig{}.grid == WeightGrid::full);
}

// ---- observers as modules --------------------------------------------------------

TEST_CASE("An observer as an output hook: no copy, statistics, freeze", "[quant][hooks]") {
  Rng rng(11);
  nn::Sequential s;
  s.emplace<nn::Linear>(8, 16);
  s.emplace<nn::ReLU>();
  const Tensor<float> x = testing::random_tensor(Shape{4, 8}, rng, -2.f, 2.f);
  const auto plain = s.forward(x);
  const float* out = plain.data();
  const Tensor<float> expected(plain);
  auto* obs = new MinMaxObserver;
  s.find("1")->set_output_hook(std::unique_ptr<nn::Module>(obs));
  const auto y = s.forward(x);
  CHECK(y.data() == out);  // the ReLU's own buffer: the observer copies nothing
  REQUIRE(y.shape() == expected.shape());
  for (std::int64_t i = 0; i < y.numel(); ++i) REQUIRE(y[i] == expected[i]);
  CHECK(obs->observed() == 1);
  CHECK(obs->range().min == *std::min_element(expected.flat().begin(), expected.flat().end()));
  CHECK(obs->range().max == *std::max_element(expected.flat().begin(), expected.flat().end()));

  // Backward passes the gradient through the observer.
  const Tensor<float> g(y.shape(), 1.f);
  CHECK(s.backward(g).shape() == x.shape());

  s.freeze();
  CHECK(obs->is_frozen());
  s.forward(x);
  s.eval();
  s.forward(x);
  CHECK(obs->observed() == 1);
  s.train();
  s.forward(x);
  CHECK(obs->observed() == 1);
  s.unfreeze();
  s.eval();
  s.forward(x);
  CHECK(obs->observed() == 2);  // observers record in eval mode too
}

TEST_CASE("Observers are copied with the model, and their buffers are named", "[quant][hooks]") {
  Rng rng(12);
  nn::Sequential s;
  s.emplace<nn::Identity>();
  s.emplace<nn::Linear>(8, 16);
  s.emplace<nn::ReLU>();
  s.find("0")->set_output_hook(make_observer("moving_average"));
  s.find("2")->set_output_hook(make_observer("histogram_mse"));
  const Tensor<float> x = testing::random_tensor(Shape{32, 8}, rng, -2.f, 2.f);
  s.forward(x);
  s.forward(x);

  std::set<std::string> names;
  for (const auto& b : s.named_buffers()) names.insert(b.name);
  for (const std::string n :
       {"0.activation_post_process.min_val", "0.activation_post_process.max_val",
        "0.activation_post_process.num_observed", "2.activation_post_process.min_val",
        "2.activation_post_process.max_val", "2.activation_post_process.num_observed",
        "2.activation_post_process.histogram"}) {
    INFO(n);
    CHECK(names.count(n) == 1);
  }

  auto copy = s.clone();
  auto* h0 = dynamic_cast<HistogramObserver*>(s.find("2.activation_post_process"));
  auto* h1 = dynamic_cast<HistogramObserver*>(copy->find("2.activation_post_process"));
  auto* m1 = dynamic_cast<MovingAverageMinMaxObserver*>(copy->find("0.activation_post_process"));
  REQUIRE(h0 != nullptr);
  REQUIRE(h1 != nullptr);
  REQUIRE(m1 != nullptr);
  CHECK(h1 != h0);
  CHECK(h1->method() == HistogramMethod::mse);
  CHECK(h1->observed() == 2);
  CHECK(m1->observed() == 2);
  CHECK(h1->range().min == h0->range().min);
  CHECK(h1->range().max == h0->range().max);
  CHECK(h1->histogram().counts.data() != h0->histogram().counts.data());
  const auto c0 = h0->histogram().counts, c1 = h1->histogram().counts;
  CHECK(std::equal(c0.begin(), c0.end(), c1.begin(), c1.end()));
  // Deep: the copy observes on its own.
  copy->forward(x);
  CHECK(h1->observed() == 3);
  CHECK(h0->observed() == 2);
  CHECK(histogram_total(*h1) == 3 * 32 * 16);

  SECTION("through a checkpoint") {
    const auto path =
        std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "observers_roundtrip.safetensors";
    io::save_checkpoint(s, path);
    nn::Sequential t;
    t.emplace<nn::Identity>();
    t.emplace<nn::Linear>(8, 16);
    t.emplace<nn::ReLU>();
    t.find("0")->set_output_hook(make_observer("moving_average"));
    t.find("2")->set_output_hook(make_observer("histogram_mse"));
    io::load_checkpoint(t, path);
    auto* h2 = dynamic_cast<HistogramObserver*>(t.find("2.activation_post_process"));
    REQUIRE(h2 != nullptr);
    CHECK(h2->observed() == 2);
    CHECK(h2->range().min == h0->range().min);
    CHECK(h2->range().max == h0->range().max);
    const auto c2 = h2->histogram().counts;
    CHECK(std::equal(c0.begin(), c0.end(), c2.begin(), c2.end()));
    std::filesystem::remove(path);
  }
}

TEST_CASE("Non-finite values are rejected, nothing is recorded", "[quant][observers]") {
  for (const std::string_view name : kObserverNames) {
    auto o = make_observer(name);
    o->observe(from_vector({1.f, -2.f}));
    const Range before = o->range();
    for (const float bad : {std::nanf(""), kInf, -kInf}) {
      INFO(name << " with " << bad);
      std::vector<float> v(1000, 0.5f);
      v[997] = bad;  // in the vector tail and in the middle
      CHECK_THROWS_WITH(o->observe(from_vector(v)),
                        Catch::Contains("non-finite value (NaN or inf)") &&
                            Catch::Contains(std::string(o->type_name())));
      v[997] = 0.5f;
      v[13] = bad;
      CHECK_THROWS_AS(o->observe(from_vector(v)), ValueError);
    }
    CHECK(o->observed() == 1);
    CHECK(o->range().min == before.min);
    CHECK(o->range().max == before.max);
  }
  // As a hook: a NaN input reaches the observer and forward() throws.
  nn::Sequential s;
  s.emplace<nn::Identity>();
  s.emplace<nn::ReLU>();
  s.find("1")->set_output_hook(make_observer("histogram"));
  Tensor<float> x(Shape{2, 3}, 1.f);
  x[4] = std::nanf("");
  CHECK_THROWS_WITH(s.forward(x), Catch::Contains("HistogramObserver saw a non-finite value"));
}

TEST_CASE("range() before observing, reset(), empty tensors, the factory", "[quant][observers]") {
  for (const std::string_view name : kObserverNames) {
    auto o = make_observer(name);
    INFO(name);
    CHECK(o->observed() == 0);
    CHECK_THROWS_WITH(o->range(), Catch::Contains("before any tensor was observed"));
    CHECK_THROWS_AS(o->qparams(), ValueError);
    o->observe(TensorView<const float>(nullptr, Shape{0, 3}));  // empty: ignored
    CHECK(o->observed() == 0);
    o->observe(from_vector({-1.f, 4.f}));
    CHECK(o->observed() == 1);
    o->reset();
    CHECK(o->observed() == 0);
    CHECK_THROWS_AS(o->range(), ValueError);
    o->observe(from_vector({0.5f, 2.f}));
    CHECK(o->range().min >= 0.5f);
    CHECK(o->range().max <= 2.f);
    CHECK(o->range().max >= 1.9f);
  }
  CHECK(make_observer("minmax")->type_name() == "MinMaxObserver");
  CHECK(make_observer("moving_average")->type_name() == "MovingAverageMinMaxObserver");
  for (const auto& [name, method] : {std::pair{"histogram", HistogramMethod::percentile},
                                     std::pair{"histogram_mse", HistogramMethod::mse},
                                     std::pair{"histogram_kl", HistogramMethod::kl}}) {
    auto o = make_observer(name);
    auto* h = dynamic_cast<HistogramObserver*>(o.get());
    REQUIRE(h != nullptr);
    CHECK(h->method() == method);
    CHECK(h->bins() == 2048);
    CHECK(h->percentile() == 99.99);
  }
  CHECK_THROWS_WITH(make_observer("max"),
                    Catch::Contains("unknown observer 'max'") &&
                        Catch::Contains("minmax, moving_average, histogram, histogram_mse, "
                                        "histogram_kl"));
  CHECK_THROWS_AS(HistogramObserver(0), ValueError);
  CHECK_THROWS_AS(HistogramObserver(100, HistogramMethod::kl), ValueError);
  CHECK_THROWS_AS(HistogramObserver(2048, HistogramMethod::percentile, 50.0), ValueError);
}

TEST_CASE("Observing allocates nothing after the first batch", "[quant][observers][alloc]") {
  Rng rng(13);
  std::vector<std::vector<float>> batches;
  for (int b = 0; b < 6; ++b) batches.push_back(uniform(10007, -1.0 - b, 1.0 + 2 * b, rng));
  for (const std::string_view name : kObserverNames) {
    INFO(name);
    auto o = make_observer(name);
    std::vector<Tensor<float>> xs;
    for (const auto& b : batches) xs.push_back(from_vector(b));
    o->observe(xs[0]);
    std::vector<const void*> data_before;
    for (const auto& b : o->named_buffers())
      data_before.push_back(b.dtype == DType::f32 ? static_cast<const void*>(b.as<float>().data())
                                                  : b.as<std::int64_t>().data());
#if COMPRESSOR_COUNT_ALLOCS
    const std::int64_t allocs = g_allocations.load();
#endif
    for (std::size_t b = 1; b < xs.size(); ++b) o->observe(xs[b]);  // each one grows the range
#if COMPRESSOR_COUNT_ALLOCS
    CHECK(g_allocations.load() - allocs == 0);
#endif
    std::size_t i = 0;
    for (const auto& b : o->named_buffers()) {
      const void* d = b.dtype == DType::f32 ? static_cast<const void*>(b.as<float>().data())
                                            : b.as<std::int64_t>().data();
      CHECK(d == data_before[i++]);
    }
    CHECK(o->observed() == 6);
  }
}
