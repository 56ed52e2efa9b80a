// MAC counts of prune::report() for the models against PyTorch's (a forward
// hook on every Conv2d and Linear of torchvision's ResNet-18 adding
// out.numel() / N * weight.numel() / out_channels) and the CifarCnn's formula.
#include <catch2/catch.hpp>

#include "compressor/models/cifar_cnn.hpp"
#include "compressor/models/ef_regressor.hpp"
#include "compressor/models/resnet.hpp"
#include "compressor/prune/report.hpp"

using namespace compressor;

namespace {
std::int64_t macs(nn::Module& m, const Shape& input) {
  return prune::report(m, input).macs;
}
}  // namespace

TEST_CASE("report() MACs: CifarCnn by its formula, ResNet-18 as PyTorch counts it",
          "[prune][macs]") {
  models::CifarCnn cnn;
  // conv 3->64 at 32x32, 64->128 at 16x16, 128->256 at 8x8, 256->512 at 4x4, fc 512->10
  const std::int64_t cnn_macs =
      32 * 32 * 64 * 27 + 16 * 16 * 128 * 576 + 8 * 8 * 256 * 1152 + 4 * 4 * 512 * 2304 + 512 * 10;
  CHECK(macs(cnn, Shape{1, 32, 32, 3}) == cnn_macs);
  CHECK(macs(cnn, Shape{2, 32, 32, 3}) == 2 * cnn_macs);
  const prune::ModelReport per_layer = prune::report(cnn, Shape{1, 32, 32, 3});
  CHECK(per_layer.layers.size() == 5);
  CHECK(per_layer.find("fc")->macs == 5120);
  // torchvision.models.resnet18() with a forward hook on every Conv2d and
  // Linear adding out.numel() / N * weight.numel() / out_channels, at 112x112.
  models::ResNet18 resnet;
  CHECK(macs(resnet, Shape{1, 112, 112, 3}) == 485'359'616);
  // EfRegressor: the trunk on each frame (without its 1000-way fc), the head
  // on the mean-pooled 512 features (2 frames: the count is per frame, and
  // the sanitizer build runs this too).
  models::EfRegressor ef;
  CHECK(macs(ef, Shape{1, 2, 112, 112, 3}) == std::int64_t{2} * (485'359'616 - 512'000) + 512);
  // The model itself keeps no hook.
  cnn.visit([](const std::string&, nn::Module& m) { CHECK(m.output_hook() == nullptr); });
}
