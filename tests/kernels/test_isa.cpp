// Run-time ISA dispatch (kernels/isa.hpp): path names, CPU features, the
// COMPRESSOR_ISA override and set_kernel_path. The tests tagged [.env] run
// only from the CTest entries that set COMPRESSOR_ISA (tests/kernels/CMakeLists.txt).
#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

#include "compressor/kernels/gemm.hpp"
#include "compressor/kernels/isa.hpp"

namespace k = compressor::kernels;
using Catch::Contains;

namespace {
/// An AVX2 + FMA CPU without AVX-512 or VNNI (a Zen 3, say).
k::CpuFeatures zen3() {
  k::CpuFeatures f;
  f.avx2 = f.fma = f.f16c = f.bmi2 = true;
  f.os_ymm = true;
  return f;
}
}  // namespace

TEST_CASE("path names round-trip and unknown names are rejected naming them", "[isa]") {
  for (k::Path p : k::kAllPaths) CHECK(k::parse_path(k::path_name(p)) == p);
  CHECK_THROWS_WITH(k::parse_path("avx1024"),
                    Contains("'avx1024'") && Contains("scalar, avx2, avx_vnni, avx512"));
  CHECK_THROWS_AS(k::parse_path(""), compressor::ValueError);
  CHECK_THROWS_AS(k::set_kernel_path("sse2"), compressor::ValueError);
}

TEST_CASE("CpuFeatures::supports follows the features and the OS state", "[isa]") {
  k::CpuFeatures none;
  CHECK(none.supports(k::Path::scalar));
  CHECK_FALSE(none.supports(k::Path::avx2));
  CHECK(k::best_path(none) == k::Path::scalar);
  CHECK(none.str() == "none");

  k::CpuFeatures f = zen3();
  CHECK(f.supports(k::Path::avx2));
  CHECK_FALSE(f.supports(k::Path::avx_vnni));
  CHECK_FALSE(f.supports(k::Path::avx512));
  CHECK(k::best_path(f) == k::Path::avx2);
  f.os_ymm = false;  // an OS that does not save ymm: no AVX at all
  CHECK_FALSE(f.supports(k::Path::avx2));

  f = zen3();
  f.avxvnni = true;  // Alder Lake
  CHECK(k::best_path(f) == k::Path::avx_vnni);
  f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = true;
  CHECK_FALSE(f.supports(k::Path::avx512));  // ... until the OS saves zmm
  f.os_zmm = true;
  CHECK(k::best_path(f) == k::Path::avx512);
  f.avx512vnni = true;
  CHECK(k::best_path(f) == k::Path::avx512_vnni);
  f.avx512dq = false;
  CHECK_FALSE(f.supports(k::Path::avx512_vnni));
  CHECK(k::best_path(f) == k::Path::avx_vnni);
}

TEST_CASE("a path the CPU lacks is refused with the CPU's features and paths", "[isa]") {
  const k::CpuFeatures f = zen3();
  CHECK_NOTHROW(k::require_supported(k::Path::avx2, "test", f));
  CHECK_THROWS_WITH(k::require_supported(k::Path::avx512_vnni, "set_kernel_path", f),
                    Contains("set_kernel_path asks for the avx512_vnni path") &&
                        Contains("avx2 fma f16c bmi2") &&
                        Contains("supported paths: scalar, avx2"));
  // On this machine: every path it lacks is refused by set_kernel_path too.
  for (k::Path p : k::kAllPaths)
    if (!k::path_supported(p)) CHECK_THROWS_AS(k::set_kernel_path(p), compressor::ValueError);
}

TEST_CASE("COMPRESSOR_ISA selects a path, or fails clearly", "[isa]") {
  const k::CpuFeatures f = zen3();
  CHECK(k::path_from_env(nullptr, f) == k::Path::avx2);
  CHECK(k::path_from_env("", f) == k::Path::avx2);
  CHECK(k::path_from_env("scalar", f) == k::Path::scalar);
  CHECK_THROWS_WITH(k::path_from_env("avx512", f),
                    Contains("COMPRESSOR_ISA asks for the avx512 path"));
  CHECK_THROWS_WITH(k::path_from_env("AVX2", f), Contains("COMPRESSOR_ISA 'AVX2' is not a path"));
}

TEST_CASE("set_kernel_path and ScopedKernelPath change what kernel_path() reports", "[isa]") {
  const k::Path before = k::kernel_path();
  CHECK(k::path_supported(before));
  for (k::Path p : k::supported_paths()) {
    k::ScopedKernelPath scope(p);
    CHECK(k::kernel_path() == p);
  }
  CHECK(k::kernel_path() == before);
  const auto paths = k::supported_paths();
  REQUIRE(!paths.empty());
  CHECK(paths.front() == k::Path::scalar);
  CHECK(paths.back() == k::best_path());
  k::set_kernel_path("scalar");
  CHECK(k::kernel_path() == k::Path::scalar);
  k::set_kernel_path(before);
}

TEST_CASE("every supported path runs the int8 GEMM kernel it names", "[isa]") {
  std::vector<std::int8_t> w(16 * 8, 100);
  const k::PackedWeightsU8S8 full(w.data(), 16, 8, 8, k::WeightGrid::full);
  for (k::Path p : k::supported_paths()) {
    const auto kernel = k::gemm_kernel(p, full);
    INFO(k::path_name(p) << " -> " << k::gemm_kernel_name(kernel));
    CHECK((p == k::Path::scalar) == (kernel == k::GemmKernel::portable));
    if (k::path_has_vnni(p))
      CHECK(k::gemm_kernel_name(kernel).find("vnni") != std::string_view::npos);
  }
}

TEST_CASE("kernel_path() reports the path COMPRESSOR_ISA names", "[.env][isa]") {
  const char* env = std::getenv("COMPRESSOR_ISA");
  REQUIRE(env != nullptr);
  const std::string want = env;
  if (want == "bogus") {
    CHECK_THROWS_WITH(k::kernel_path(), Contains("COMPRESSOR_ISA 'bogus' is not a path"));
  } else {
    CHECK(k::path_name(k::kernel_path()) == want);
  }
}
