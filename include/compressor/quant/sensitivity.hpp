// Per-point quantization error and per-point sensitivity of a PTQ model.
//
//   quant::measure_sqnr(int8, *p.model, eval, 0);   // fills summary().points[i].sqnr_db
//   auto rows = quant::sensitivity_report(float_model, p, eval, train::Task::classification,
//                                         loss);
//   std::cout << quant::format_sensitivity(rows, "acc", float_acc);
//
// measure_sqnr() runs a float model and the int8 model on the same batches.
// The float side is a clone of the model it is given in eval mode whose
// output hook at every quantization point is replaced by a recorder (a module
// that copies its input and returns it unchanged), so the model given is
// never touched and its observers or fake-quants (a prepared model's p.model)
// record nothing; p.model (BN folded) and fp32_deploy_model(original) both
// work, as does the original model (eval-mode BatchNorm, same function). The
// int8 side is read through its trace: each point's uint8 tensor is
// dequantized with the point's parameters. Both run free (the int8 model on
// its own values), so the SQNR at a point is the error accumulated by every
// quantization up to it, as a deployed int8 model has it:
//
//   SQNR = 10 log10( sum f^2 / sum (dequant(q) - f)^2 )   over all batches
//
// (+inf when the noise is exactly 0). Tensors are compared element by element
// in memory order, by numel: the EfRegressor's input point is traced as clips
// (N, T, H, W, C) by the int8 model and seen as frames (N*T, H, W, C) by the
// float one.
//
// sensitivity_report() answers "what does quantizing only this part cost":
// one row per quantization point, in data-flow order (the order of
// Module::quantization_points(); sort the rows yourself for a ranking). Row P
// is the metric of the fake-quant model in which only P is quantized: the
// FakeQuantize at P is enabled and all others are disabled, and the layers
// whose output is P (LayerSummary::point == P: a conv + BN + ReLU run, a
// linear head) have fake-quantized weights and int32-grid biases while every
// other layer keeps its float weights. Points without a layer (the input, a
// pool, a residual add) quantize only the activation. The row's sqnr_db is
// the full int8 model's SQNR at P (measure_sqnr on the same data).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/data/batch.hpp"
#include "compressor/nn/loss.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/quant/convert.hpp"
#include "compressor/quant/fake_quant.hpp"
#include "compressor/quant/int8_model.hpp"
#include "compressor/train/metrics.hpp"
#include "compressor/train/trainer.hpp"

namespace compressor::quant {

namespace internal {

/// An output hook that keeps a copy of the last tensor it saw and returns
/// its input unchanged.
class PointRecorder : public nn::Module {
 public:
  std::string_view type_name() const override { return "PointRecorder"; }
  const Tensor<float>& recorded() const { return y_; }
  std::int64_t calls() const { return calls_; }

 protected:
  TensorView<const float> forward_impl(TensorView<const float> x) override {
    y_.resize(x.shape());
    std::copy_n(x.data(), x.numel(), y_.data());
    ++calls_;
    return x;
  }
  TensorView<const float> backward_impl(TensorView<const float> g) override { return g; }
  std::unique_ptr<Module> clone_shell() const override { return std::make_unique<PointRecorder>(); }

 private:
  Tensor<float> y_;
  std::int64_t calls_ = 0;
};

/// 10 log10(signal / noise), +inf for zero noise.
inline double sqnr_db(double signal, double noise) {
  if (noise == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

}  // namespace internal

/// Measures the SQNR of int8 against float_model at every quantization point
/// over up to max_batches batches of source (0: one epoch) and writes it into
/// int8.summary(): points[i].sqnr_db and the sqnr_db of every layer whose
/// point it is (see the file comment). float_model is cloned, not changed.
/// Errors: no batches, a point float_model does not have, a point one side
/// did not produce, or element counts that differ.
inline void measure_sqnr(Int8Model& int8, const nn::Module& float_model, data::BatchSource& source,
                         std::int64_t max_batches = 0) {
  ConversionSummary& s = int8.summary();
  const std::size_t n = s.points.size();
  auto ref = float_model.clone();
  ref->eval();
  std::vector<internal::PointRecorder*> rec(n);
  std::map<std::string, std::size_t, std::less<>> index;
  for (std::size_t i = 0; i < n; ++i) {
    nn::Module* m = ref->find(s.points[i].name);
    require(m != nullptr, "measure_sqnr: the float ", ref->type_name(),
            " has no module at quantization point '", s.points[i].name, "'");
    auto r = std::make_unique<internal::PointRecorder>();
    rec[i] = r.get();
    m->set_output_hook(std::move(r));
    index[s.points[i].name] = i;
  }
  std::vector<double> signal(n, 0.0), noise(n, 0.0);
  std::vector<std::int64_t> traced(n, 0);
  int8.set_trace([&](const std::string& point, TensorView<std::uint8_t> data, QuantParams q) {
    const auto it = index.find(point);
    require(it != index.end(), "measure_sqnr: the int8 model traced unknown point '", point, "'");
    const std::size_t i = it->second;
    const Tensor<float>& f = rec[i]->recorded();
    require(f.numel() == data.numel(), "measure_sqnr: point '", point, "' has ", data.numel(),
            " elements in the int8 model, ", f.numel(), " in the float model");
    double sig = 0, err = 0;
    for (std::int64_t k = 0; k < f.numel(); ++k) {
      const double fv = f[k];
      const double d = static_cast<double>(dequantize_activation(data[k], q)) - fv;
      sig += fv * fv;
      err += d * d;
    }
    signal[i] += sig;
    noise[i] += err;
    ++traced[i];
  });
  struct TraceOff {
    Int8Model& m;
    ~TraceOff() { m.set_trace({}); }
  } off{int8};
  source.start_epoch(0);
  data::Batch batch;
  std::int64_t used = 0;
  while ((max_batches == 0 || used < max_batches) && source.next(batch)) {
    (void)ref->forward(batch.inputs);
    (void)int8.forward(batch.inputs);
    ++used;
  }
  require(used > 0, "measure_sqnr: the data gave no batches");
  for (std::size_t i = 0; i < n; ++i) {
    require(traced[i] == used && rec[i]->calls() == used, "measure_sqnr: point '", s.points[i].name,
            "' was produced ", traced[i], " times by the int8 model and ", rec[i]->calls(),
            " times by the float model in ", used, " batches");
    const double v = internal::sqnr_db(signal[i], noise[i]);
    s.points[i].sqnr_db = v;
    for (auto& l : s.layers)
      if (l.point == s.points[i].name) l.sqnr_db = v;
  }
}

/// One row of the sensitivity report.
struct LayerSensitivity {
  std::string point;  ///< the quantization point
  double sqnr_db;     ///< the full int8 model's SQNR at the point
  double metric;      ///< headline metric with only this point (and its layer) quantized
};

/// The sensitivity report of a calibrated PTQ model (see the file comment):
/// one row per quantization point in data-flow order. float_model is the
/// reference of the SQNR (the original model or its deploy copy); the metric
/// is train::evaluate()'s headline on one epoch of eval_source (accuracy for
/// classification, MAE for regression).
inline std::vector<LayerSensitivity> sensitivity_report(const nn::Module& float_model,
                                                        const Prepared& calibrated,
                                                        data::BatchSource& eval_source,
                                                        train::Task task, nn::Loss& loss) {
  internal::check_unedited(calibrated, "sensitivity_report", "prepare_ptq");
  internal::ModelSource source(*calibrated.model, calibrated.grid);
  Int8Model int8 = convert_with(*calibrated.model, calibrated.points, calibrated.grid, source,
                                calibrated.islands);
  measure_sqnr(int8, float_model, eval_source, 0);
  const ConversionSummary& s = int8.summary();
  std::vector<LayerSensitivity> rows;
  rows.reserve(s.points.size());
  for (const auto& p : s.points) {
    std::set<std::string> layers;
    for (const auto& l : s.layers)
      if (l.point == p.name) layers.insert(l.name);
    auto m = fake_quant_model(calibrated, int8, layers);
    for (const auto& q : s.points) {
      auto* fq = nn::as<FakeQuantize>(*internal::module_at(*m, q.name).output_hook());
      require(fq != nullptr, "sensitivity_report: no FakeQuantize at '", q.name, "'");
      fq->enable_fake_quant(q.name == p.name);
    }
    const train::Metrics r = train::evaluate(*m, loss, task, eval_source);
    rows.push_back({p.name, p.sqnr_db, r.headline()});
  }
  return rows;
}

/// A table of the rows; with float_metric, also each row's change from it.
inline std::string format_sensitivity(const std::vector<LayerSensitivity>& rows,
                                      std::string_view metric_name = "metric",
                                      std::optional<double> float_metric = std::nullopt) {
  std::ostringstream os;
  char line[200];
  std::snprintf(line, sizeof line, "%-38s %9s %11.11s%s\n", "point (only it quantized)", "SQNR dB",
                std::string(metric_name).c_str(), float_metric ? "      change" : "");
  os << line;
  if (float_metric) {
    std::snprintf(line, sizeof line, "%-38s %9s %11.5g\n", "(float)", "", *float_metric);
    os << line;
  }
  for (const auto& r : rows) {
    if (float_metric)
      std::snprintf(line, sizeof line, "%-38s %9.2f %11.5g %+11.4g\n", r.point.c_str(), r.sqnr_db,
                    r.metric, r.metric - *float_metric);
    else
      std::snprintf(line, sizeof line, "%-38s %9.2f %11.5g\n", r.point.c_str(), r.sqnr_db,
                    r.metric);
    os << line;
  }
  return os.str();
}

}  // namespace compressor::quant
