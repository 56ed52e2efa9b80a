// Main of the tests that need ../shared (the real CIFAR-10 archive). Where it
// is absent the executable exits with 77, which CTest reports as skipped, not
// passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>

int main(int argc, char* argv[]) {
  const std::filesystem::path archive =
      std::filesystem::path(COMPRESSOR_SHARED_DIR) / "data" / "cifar10-jpeg.tar.gz";
  if (!std::filesystem::exists(archive)) {
    std::printf("SKIPPED: %s not found (set -DCOMPRESSOR_SHARED_DIR=<dir>)\n", archive.c_str());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
