// Fidelity of a model's class predictions to a reference model's, without
// labels: how close an int8 or pruned model stays to the float model it was
// made from, on the same images (docs/quantization.md, "Fidelity to fp32").
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/data/batch.hpp"
#include "compressor/nn/module.hpp"
#include "compressor/train/metrics.hpp"
#include "compressor/train/trainer.hpp"

namespace compressor::train {

/// How close another model's class predictions are to a reference model's on
/// the same images, without labels: mean_kl, the mean over images of
/// KL(reference || other) of the softmax probabilities (nats), and
/// agreement, the fraction of images whose top-1 class is the reference's.
struct Fidelity {
  double mean_kl = 0;
  double agreement = 0;
};

/// The reference's log-softmax rows are kept from one pass over `source`
/// (unshuffled, so every pass gives the same images in the same order);
/// measure() runs another model over it. An nn::Module runs in eval mode
/// (its modes are put back afterwards).
class OutputFidelity {
 public:
  template <FloatModel M>
  OutputFidelity(M& reference, data::BatchSource& source) {
    pass(reference, source, [&](const double* logp, std::int64_t) {
      reference_.insert(reference_.end(), logp, logp + classes_);
    });
    require(!reference_.empty(), "OutputFidelity: the source has no images");
  }

  template <FloatModel M>
  Fidelity measure(M& model, data::BatchSource& source) const {
    double kl = 0;
    std::int64_t images = 0, agree = 0;
    pass(model, source, [&](const double* logq, std::int64_t image) {
      require(static_cast<std::size_t>((image + 1) * classes_) <= reference_.size(),
              "OutputFidelity: the source has more images than the reference pass");
      const double* logp = reference_.data() + image * classes_;
      for (std::int64_t k = 0; k < classes_; ++k) kl += std::exp(logp[k]) * (logp[k] - logq[k]);
      agree += std::max_element(logp, logp + classes_) - logp ==
                       std::max_element(logq, logq + classes_) - logq
                   ? 1
                   : 0;
      images = image + 1;
    });
    require(static_cast<std::size_t>(images * classes_) == reference_.size(),
            "OutputFidelity: the source gave ", images, " images, the reference pass ",
            reference_.size() / static_cast<std::size_t>(classes_));
    return {kl / static_cast<double>(images),
            static_cast<double>(agree) / static_cast<double>(images)};
  }

 private:
  /// fn(log-softmax row, image index) for every image of one pass.
  template <class M, class Fn>
  void pass(M& model, data::BatchSource& source, Fn&& fn) const {
    std::optional<ModeGuard> modes;
    if constexpr (std::derived_from<M, nn::Module>) {
      modes.emplace(model);
      model.eval();
    }
    source.start_epoch(0);
    data::Batch batch;
    std::vector<double> row;
    std::int64_t image = 0;
    while (source.next(batch)) {
      if (batch.size() == 0) continue;  // a sharded loader's empty share
      const auto out = model.forward(batch.inputs.view());
      require(out.rank() == 2 && out.dim(0) == batch.size(), "OutputFidelity: the model gave ",
              out.shape(), " for a batch of ", batch.size(), " images");
      if (classes_ == 0) classes_ = out.dim(1);
      require(out.dim(1) == classes_, "OutputFidelity: ", out.dim(1), " classes, expected ",
              classes_);
      row.resize(static_cast<std::size_t>(classes_));
      for (std::int64_t i = 0; i < out.dim(0); ++i, ++image) {
        const float* z = out.data() + i * classes_;
        const double top = *std::max_element(z, z + classes_);
        double norm = 0;
        for (std::int64_t k = 0; k < classes_; ++k) norm += std::exp(z[k] - top);
        const double log_norm = top + std::log(norm);
        require(std::isfinite(log_norm), "OutputFidelity: the model's output for image ", image,
                " is not finite");
        for (std::int64_t k = 0; k < classes_; ++k)
          row[static_cast<std::size_t>(k)] = z[k] - log_norm;
        fn(row.data(), image);
      }
    }
  }

  std::vector<double> reference_;
  mutable std::int64_t classes_ = 0;  ///< set by the constructor's pass
};

}  // namespace compressor::train
