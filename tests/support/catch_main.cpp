// Main of every test executable. Tests that need ../shared (the real CIFAR-10
// archive) are registered with NEEDS_SHARED, which passes --needs-shared as
// the first argument: where the archive is absent the executable exits with
// 77, which CTest reports as skipped, not passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <string_view>

int main(int argc, char* argv[]) {
  if (argc > 1 && std::string_view(argv[1]) == "--needs-shared") {
    const std::filesystem::path archive =
        std::filesystem::path(COMPRESSOR_SHARED_DIR) / "data" / "cifar10-jpeg.tar.gz";
    if (!std::filesystem::exists(archive)) {
      std::printf("SKIPPED: %s not found (set -DCOMPRESSOR_SHARED_DIR=<dir>)\n", archive.c_str());
      return 77;
    }
    argv[1] = argv[0];  // drop the flag: Catch2 would reject it
    ++argv;
    --argc;
  }
  return Catch::Session().run(argc, argv);
}
