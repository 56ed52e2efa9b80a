// Smoke test on the real CIFAR-10: a few epochs on a class-balanced subset of
// the training set must reach well above chance (10%) on held-out test images.
#include <catch2/catch.hpp>
#include <iostream>

#include "support/cifar10_brief.hpp"

using namespace compressor;

TEST_CASE("CifarCnn learns real CIFAR-10 well above chance in seconds", "[train][cifar10]") {
  const auto b = testing::train_cifar10_briefly(COMPRESSOR_CIFAR10_DIR, &std::cout);
  const double acc = b.reports.back().val->accuracy;
  std::cout << "CIFAR-10 smoke: test accuracy " << 100 * acc << "% after " << b.reports.size()
            << " epochs on 2000 images, " << b.seconds << " s\n";
  CHECK(acc > 0.30);
}
