// A generic finite-difference gradient check for any Module.
//
// The scalar loss is L = sum(forward(x) * R) for a fixed random R, so
// backward(R) yields dL/dx and the parameter gradients. Two checks:
//  - per element: for up to max_elements entries of x and of each parameter,
//    the central difference (L(t+eps) - L(t-eps)) / 2eps against the analytic
//    gradient;
//  - per direction: for random unit-norm directions v, the central
//    difference along v against <grad, v>. This checks every element at once
//    and is robust to the rare ReLU/max-pool kink crossed by one element.
// The forward pass is float, so eps must not be tiny (default 1e-3). In deep
// ReLU networks a step of eps can cross a kink (a ReLU input or a max-pool
// tie within eps), which spoils that one difference; a comparison that fails
// is therefore retried with eps/4 and eps/16 and passes if any step size
// agrees. A wrong analytic gradient disagrees at every step size.
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::nn {

struct GradCheckOptions {
  double eps = 1e-3;
  double rtol = 1e-2;
  double atol = 1e-3;
  std::int64_t max_elements = 24;  ///< per tensor; 0 disables the per-element check
  int directions = 3;              ///< per tensor; 0 disables the directional check
  int retries = 2;                 ///< retries of a failed comparison with eps/4, eps/16, ...
  bool check_input = true;
  std::uint64_t seed = 1;
};

struct GradCheckReport {
  bool ok = true;
  std::int64_t checked = 0;
  double worst = 0;  ///< worst |a-n| / (atol + rtol*max(|a|,|n|)); <= 1 passes
  std::string worst_where;
  std::vector<std::string> failures;

  std::string summary() const {
    std::ostringstream os;
    os << (ok ? "gradient check passed" : "gradient check FAILED") << ": " << checked
       << " comparisons, worst ratio " << worst << " at " << worst_where;
    for (std::size_t i = 0; i < failures.size() && i < 10; ++i) os << "\n  " << failures[i];
    return os.str();
  }
};

namespace internal {

inline double dot_loss(Module& m, TensorView<const float> x, TensorView<const float> r) {
  const auto y = m.forward(x);
  double s = 0;
  for (std::int64_t i = 0; i < y.numel(); ++i) s += static_cast<double>(y[i]) * r[i];
  return s;
}

}  // namespace internal

/// Checks m's backward against finite differences at input x.
inline GradCheckReport gradcheck(Module& m, TensorView<const float> x_in,
                                 const GradCheckOptions& opt = {}) {
  GradCheckReport rep;
  Rng rng(opt.seed);
  Tensor<float> x(x_in);
  const bool saved_input_grad = m.input_grad();
  m.set_input_grad(opt.check_input);

  // Analytic gradients.
  const Tensor<float> y(m.forward(x));
  Tensor<float> r(y.shape());
  for (auto& v : r.flat()) v = static_cast<float>(rng.uniform(-1.0, 1.0));
  m.zero_grad();
  (void)m.forward(x);
  Tensor<float> dx;
  {
    const auto g = m.backward(r);
    if (opt.check_input) dx = Tensor<float>(g);
  }
  struct Target {
    std::string name;
    Tensor<float>* value;
    Tensor<float> grad;
  };
  std::vector<Target> targets;
  if (opt.check_input) targets.push_back({"input", &x, std::move(dx)});
  for (auto& p : m.named_parameters()) targets.push_back({p.name, p.value, Tensor<float>(*p.grad)});

  // Compares analytic a with numeric(step), retrying smaller steps on failure.
  auto compare = [&](double a, const auto& numeric, const std::string& where) {
    double n = 0, ratio = 0, step = opt.eps;
    for (int attempt = 0; attempt <= opt.retries; ++attempt, step /= 4) {
      n = numeric(step);
      ratio = std::abs(a - n) / (opt.atol + opt.rtol * std::max(std::abs(a), std::abs(n)));
      if (ratio <= 1) break;
    }
    ++rep.checked;
    if (ratio > rep.worst) {
      rep.worst = ratio;
      rep.worst_where = where;
    }
    if (ratio > 1) {
      rep.ok = false;
      std::ostringstream os;
      os << where << ": analytic " << a << " vs numeric " << n;
      rep.failures.push_back(os.str());
    }
  };

  for (auto& t : targets) {
    float* v = t.value->data();
    const std::int64_t n = t.value->numel();
    check_same_shape(t.grad.shape(), t.value->shape(), "gradcheck: gradient of " + t.name);
    // Per element.
    const std::int64_t count = std::min(n, opt.max_elements);
    for (std::int64_t s = 0; s < count; ++s) {
      const std::int64_t i =
          count == n ? s : static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(n)));
      const float old = v[i];
      compare(
          t.grad[i],
          [&](double h) {
            v[i] = static_cast<float>(old + h);
            const double lp = internal::dot_loss(m, x, r);
            v[i] = static_cast<float>(old - h);
            const double lm = internal::dot_loss(m, x, r);
            v[i] = old;
            return (lp - lm) / (2 * h);
          },
          t.name + "[" + std::to_string(i) + "]");
    }
    // Per direction.
    for (int d = 0; d < opt.directions; ++d) {
      // A unit-norm direction: the step moves the tensor by eps in total, as
      // the per-element check moves one element by eps.
      std::vector<double> dir(static_cast<std::size_t>(n));
      std::vector<float> old(v, v + n);
      double norm = 0, analytic = 0;
      for (auto& d : dir) {
        d = rng.normal();
        norm += d * d;
      }
      norm = std::sqrt(norm);
      for (std::int64_t i = 0; i < n; ++i) {
        dir[static_cast<std::size_t>(i)] /= norm;
        analytic += static_cast<double>(t.grad[i]) * dir[static_cast<std::size_t>(i)];
      }
      auto step_to = [&](double h) {
        for (std::int64_t i = 0; i < n; ++i)
          v[i] = static_cast<float>(old[static_cast<std::size_t>(i)] +
                                    h * dir[static_cast<std::size_t>(i)]);
      };
      compare(
          analytic,
          [&](double h) {
            step_to(h);
            const double lp = internal::dot_loss(m, x, r);
            step_to(-h);
            const double lm = internal::dot_loss(m, x, r);
            std::copy(old.begin(), old.end(), v);
            return (lp - lm) / (2 * h);
          },
          t.name + " direction " + std::to_string(d));
    }
  }
  m.set_input_grad(saved_input_grad);
  return rep;
}

}  // namespace compressor::nn
