// train::OutputFidelity: the mean KL divergence and the top-1 agreement of a
// model's class probabilities against a reference's, checked against their
// definitions on hand-made logits, and its errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "compressor/train/fidelity.hpp"
#include "support/repeat_batch.hpp"

using namespace compressor;

namespace {

/// A FloatModel whose output is fixed logits (one row per image of the batch).
struct FixedLogits {
  Tensor<float> logits;
  TensorView<const float> forward(TensorView<const float> x) {
    REQUIRE(x.dim(0) == logits.dim(0));
    return logits.view();
  }
};

FixedLogits make(std::int64_t n, std::int64_t k, const std::vector<float>& v) {
  FixedLogits m{Tensor<float>(Shape{n, k})};
  for (std::int64_t i = 0; i < n * k; ++i) m.logits.data()[i] = v[static_cast<std::size_t>(i)];
  return m;
}

data::Batch images(std::int64_t n) {
  data::Batch b;
  b.inputs = Tensor<float>(Shape{n, 2, 2, 1}, 0.f);
  b.labels = Tensor<std::int32_t>(Shape{n});
  return b;
}

/// log softmax of one row, the textbook way.
std::vector<double> log_softmax(const float* z, std::int64_t k) {
  double sum = 0;
  for (std::int64_t i = 0; i < k; ++i) sum += std::exp(static_cast<double>(z[i]));
  std::vector<double> out;
  for (std::int64_t i = 0; i < k; ++i) out.push_back(z[i] - std::log(sum));
  return out;
}

}  // namespace

TEST_CASE("OutputFidelity gives the mean KL divergence and the top-1 agreement",
          "[train][fidelity]") {
  FixedLogits reference = make(3, 3, {2.f, 0.f, -1.f, 0.5f, 0.4f, 3.f, -2.f, 1.f, 0.f});
  FixedLogits other = make(3, 3, {1.5f, 0.2f, -1.f, 0.5f, 3.5f, 3.f, -2.f, 1.f, 0.8f});
  testing::RepeatBatch source(images(3), 1);
  const train::OutputFidelity f(reference, source);

  const train::Fidelity self = f.measure(reference, source);
  CHECK(self.mean_kl == 0.0);
  CHECK(self.agreement == 1.0);

  double kl = 0;
  for (std::int64_t i = 0; i < 3; ++i) {
    const auto p = log_softmax(reference.logits.data() + 3 * i, 3);
    const auto q = log_softmax(other.logits.data() + 3 * i, 3);
    for (std::size_t c = 0; c < 3; ++c) kl += std::exp(p[c]) * (p[c] - q[c]);
  }
  const train::Fidelity o = f.measure(other, source);
  CHECK(o.mean_kl == Approx(kl / 3).epsilon(1e-12));
  CHECK(o.mean_kl > 0);
  // Image 0 keeps class 0, image 1 moves from class 2 to 1, image 2 keeps class 1.
  CHECK(o.agreement == Approx(2.0 / 3.0));

  // Large logits stay finite (the log-softmax subtracts the row's maximum).
  FixedLogits big = make(3, 3, {2000.f, 0.f, -1.f, 0.5f, 0.4f, 3000.f, -2.f, 1000.f, 0.f});
  const train::Fidelity b = f.measure(big, source);
  CHECK(std::isfinite(b.mean_kl));
  CHECK(b.agreement == 1.0);
}

TEST_CASE("OutputFidelity refuses mismatched passes and non-finite outputs", "[train][fidelity]") {
  FixedLogits reference = make(2, 3, {1.f, 0.f, 0.f, 0.f, 1.f, 0.f});
  testing::RepeatBatch once(images(2), 1), twice(images(2), 2), none(images(2), 0);
  const train::OutputFidelity f(reference, once);
  CHECK_THROWS_WITH(f.measure(reference, twice), Catch::Contains("more images"));
  FixedLogits four = make(2, 4, {1.f, 0.f, 0.f, 0.f, 0.f, 1.f, 0.f, 0.f});
  CHECK_THROWS_WITH(f.measure(four, once), Catch::Contains("4 classes, expected 3"));
  FixedLogits nan = make(2, 3, {1.f, 0.f, 0.f, 0.f, std::numeric_limits<float>::quiet_NaN(), 0.f});
  CHECK_THROWS_WITH(f.measure(nan, once), Catch::Contains("image 1 is not finite"));
  CHECK_THROWS_WITH(train::OutputFidelity(reference, none), Catch::Contains("no images"));
}
