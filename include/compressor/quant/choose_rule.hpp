// Choosing the activation range rule on held-out data.
//
// Which rule of HistogramObserver (min/max, percentile, least MSE, KL) gives
// the best int8 model depends on the model: the MSE rule has the lowest
// quantization error per tensor, but on the EF regressor it clips tails that
// cost more downstream than the rounding error saved (docs/quantization.md,
// "Observers"). The histogram does not depend on the rule, so one
// calibration serves all of them: choose_range_rule() sets every histogram
// observer of a calibrated Prepared to each candidate rule in turn, converts,
// scores the int8 model with the caller's function (a metric on data that is
// neither the calibration set nor the test set: a validation split), and
// leaves the Prepared on the best rule. The output point keeps its own
// observer (PtqConfig::output_observer) unless it is a histogram too.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/histogram_observer.hpp"

namespace compressor::quant {

/// The rules choose_range_rule() tries by default, in this order (ties go
/// to the earlier one): the examples' default first.
inline constexpr HistogramMethod kRangeRules[] = {HistogramMethod::mse, HistogramMethod::kl,
                                                  HistogramMethod::minmax,
                                                  HistogramMethod::percentile};

struct RangeRuleTrial {
  HistogramMethod rule;
  double score;  ///< the caller's score of the int8 model (lower is better)
};

struct RangeRuleChoice {
  HistogramMethod best = HistogramMethod::mse;
  std::vector<RangeRuleTrial> trials;  ///< one per candidate, in order
};

/// The HistogramObservers at p's activation points (the hooks of its
/// points), by point name.
inline std::vector<std::pair<std::string, HistogramObserver*>> histogram_observers(Prepared& p) {
  require(p.model != nullptr, "histogram_observers: the model was not prepared");
  std::vector<std::pair<std::string, HistogramObserver*>> out;
  auto add = [&](const std::string& point) {
    nn::Module* hook = internal::module_at(*p.model, point).output_hook();
    if (auto* h = dynamic_cast<HistogramObserver*>(hook)) out.emplace_back(point, h);
  };
  for (const auto& q : p.points) add(q.name);
  for (const auto& q : p.island_points) add(q);
  return out;
}

/// Sets every HistogramObserver of p (histogram_observers) to rule; returns
/// how many there are.
inline std::size_t set_range_rule(Prepared& p, HistogramMethod rule) {
  auto hs = histogram_observers(p);
  for (auto& [name, h] : hs) h->set_method(rule);
  return hs.size();
}

/// Converts p once per candidate rule and scores each int8 model with
/// score(Int8Model&) -> double, lower is better (a validation MAE, or
/// minus a validation accuracy); leaves p on the best rule, ties going to
/// the earlier candidate. p must be calibrated with HistogramObservers
/// (PtqConfig::observer = make_observer("histogram_mse"), say): otherwise,
/// or with no candidates, or on a non-finite score, a ValueError.
template <class Score>
RangeRuleChoice choose_range_rule(Prepared& p, Score&& score,
                                  std::span<const HistogramMethod> candidates = kRangeRules) {
  require(!candidates.empty(), "choose_range_rule: no candidate rules");
  require(set_range_rule(p, candidates.front()) > 0,
          "choose_range_rule: the prepared model has no HistogramObserver (prepare it with a "
          "histogram observer, e.g. make_observer(\"histogram_mse\"))");
  RangeRuleChoice c;
  for (const HistogramMethod rule : candidates) {
    set_range_rule(p, rule);
    Int8Model m = convert(p);
    const double s = static_cast<double>(score(m));
    require(std::isfinite(s), "choose_range_rule: the score of rule '", to_string(rule),
            "' is not finite (", s, ")");
    c.trials.push_back({rule, s});
  }
  std::size_t best = 0;
  for (std::size_t i = 1; i < c.trials.size(); ++i)
    if (c.trials[i].score < c.trials[best].score) best = i;
  c.best = c.trials[best].rule;
  set_range_rule(p, c.best);
  return c;
}

}  // namespace compressor::quant
