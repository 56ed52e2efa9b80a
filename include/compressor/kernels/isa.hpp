// Run-time instruction-set dispatch: the one choke point that decides which
// code path the kernels run (docs/kernels.md, "Paths").
//
// The CPU's features are read once, with cpuid and xgetbv (the OS must save
// the wide registers too). The active path starts as the best one the CPU
// has, or as the environment variable COMPRESSOR_ISA says; set_kernel_path()
// changes it (tests and benchmarks loop over supported_paths()). Every public
// kernel reads kernel_path() and runs the best implementation it has at or
// below that path (path_has_avx2/avx512/vnni say what a path allows).
//
// Nothing here depends on the compiler's -m flags: the paths above the
// compile baseline are functions with target attributes, so a translation
// unit built without -mavx2 runs the same paths as one built with it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/error.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define COMPRESSOR_X86 1
#else
#define COMPRESSOR_X86 0
#endif

namespace compressor::kernels {

/// The code paths, from the always-available scalar reference up. Each path
/// above scalar includes AVX2 + FMA.
enum class Path : std::uint8_t {
  scalar,       ///< portable C++, the reference every other path equals bit for bit
  avx2,         ///< AVX2 + FMA, ymm; int8 via vpmaddubsw + vpmaddwd
  avx_vnni,     ///< AVX2 + AVX-VNNI: ymm vpdpbusd (Alder Lake, Zen 5)
  avx512,       ///< AVX-512 F/BW/VL/DQ, zmm
  avx512_vnni,  ///< AVX-512 + AVX512-VNNI: zmm vpdpbusd (Cascade Lake, Zen 4 and later)
};

inline constexpr std::array<Path, 5> kAllPaths = {Path::scalar, Path::avx2, Path::avx_vnni,
                                                  Path::avx512, Path::avx512_vnni};

/// The name COMPRESSOR_ISA and set_kernel_path(std::string_view) accept.
constexpr std::string_view path_name(Path p) {
  switch (p) {
    case Path::scalar:
      return "scalar";
    case Path::avx2:
      return "avx2";
    case Path::avx_vnni:
      return "avx_vnni";
    case Path::avx512:
      return "avx512";
    case Path::avx512_vnni:
      return "avx512_vnni";
  }
  return "?";
}

/// AVX2 + FMA instructions may run (every path but scalar).
constexpr bool path_has_avx2(Path p) {
  return p != Path::scalar;
}
/// zmm registers and the AVX-512 F/BW/VL/DQ instructions may run.
constexpr bool path_has_avx512(Path p) {
  return p == Path::avx512 || p == Path::avx512_vnni;
}
/// vpdpbusd may run (ymm on avx_vnni, ymm and zmm on avx512_vnni).
constexpr bool path_has_vnni(Path p) {
  return p == Path::avx_vnni || p == Path::avx512_vnni;
}

/// What the CPU and the OS offer.
struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false, bmi2 = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false, avxvnni = false;
  /// The OS saves ymm (XCR0 bits 1-2) and zmm / opmask state (bits 5-7).
  bool os_ymm = false, os_zmm = false;

  bool supports(Path p) const {
    const bool base = os_ymm && avx2 && fma;
    const bool wide = base && os_zmm && avx512f && avx512bw && avx512vl && avx512dq;
    switch (p) {
      case Path::scalar:
        return true;
      case Path::avx2:
        return base;
      case Path::avx_vnni:
        return base && avxvnni;
      case Path::avx512:
        return wide;
      case Path::avx512_vnni:
        return wide && avx512vnni;
    }
    return false;
  }

  /// e.g. "avx2 fma f16c bmi2 avx512f avx512bw avx512vl avx512dq avx512vnni avxvnni".
  std::string str() const {
    std::string s;
    const auto add = [&s](bool on, const char* name) {
      if (!on) return;
      if (!s.empty()) s += ' ';
      s += name;
    };
    add(avx2, "avx2");
    add(fma, "fma");
    add(f16c, "f16c");
    add(bmi2, "bmi2");
    add(avx512f, "avx512f");
    add(avx512bw, "avx512bw");
    add(avx512vl, "avx512vl");
    add(avx512dq, "avx512dq");
    add(avx512vnni, "avx512vnni");
    add(avxvnni, "avxvnni");
    return s.empty() ? "none" : s;
  }
};

namespace detail {

inline CpuFeatures read_cpu_features() {
  CpuFeatures f;
#if COMPRESSOR_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1u;
  f.fma = (c >> 12) & 1u;
  f.f16c = (c >> 29) & 1u;
  if (osxsave) {
    std::uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    f.os_ymm = (lo & 0x6u) == 0x6u;
    f.os_zmm = f.os_ymm && (lo & 0xE0u) == 0xE0u;
  }
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = (b >> 5) & 1u;
  f.bmi2 = (b >> 8) & 1u;
  f.avx512f = (b >> 16) & 1u;
  f.avx512dq = (b >> 17) & 1u;
  f.avx512bw = (b >> 30) & 1u;
  f.avx512vl = (b >> 31) & 1u;
  f.avx512vnni = (c >> 11) & 1u;
  const unsigned subleaves = a;
  if (subleaves >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    f.avxvnni = (a >> 4) & 1u;
  }
#endif
  return f;
}

}  // namespace detail

/// The CPU's features, read once.
inline const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detail::read_cpu_features();
  return f;
}

inline bool path_supported(Path p) {
  return cpu_features().supports(p);
}

/// The paths this CPU runs, scalar first.
inline std::vector<Path> supported_paths() {
  std::vector<Path> out;
  for (Path p : kAllPaths)
    if (path_supported(p)) out.push_back(p);
  return out;
}

/// The fastest path this CPU runs: avx512_vnni, avx512, avx_vnni, avx2, scalar.
inline Path best_path() {
  for (Path p : {Path::avx512_vnni, Path::avx512, Path::avx_vnni, Path::avx2})
    if (path_supported(p)) return p;
  return Path::scalar;
}

/// Reads a path name; throws ValueError naming `what` and the valid names.
inline Path parse_path(std::string_view name, std::string_view what = "ISA path") {
  for (Path p : kAllPaths)
    if (path_name(p) == name) return p;
  throw ValueError(
      compressor::detail::concat(what, " '", name,
                                 "' is not a path; expected one of scalar, avx2, avx_vnni, avx512, "
                                 "avx512_vnni"));
}

namespace detail {

inline void require_supported(Path p, std::string_view what) {
  if (path_supported(p)) return;
  std::string paths;
  for (Path q : supported_paths()) paths += (paths.empty() ? "" : ", ") + std::string(path_name(q));
  throw ValueError(compressor::detail::concat(
      what, " asks for the ", path_name(p), " path, which this CPU does not run (it has: ",
      cpu_features().str(), "; supported paths: ", paths, ")"));
}

/// The path the environment asks for, or the best one.
inline Path initial_path() {
  const char* env = std::getenv("COMPRESSOR_ISA");
  if (env == nullptr || *env == '\0') return best_path();
  const Path p = parse_path(env, "COMPRESSOR_ISA");
  require_supported(p, "COMPRESSOR_ISA");
  return p;
}

inline std::atomic<Path>& active_path() {
  static std::atomic<Path> p{initial_path()};
  return p;
}

}  // namespace detail

/// The path the kernels run now. The first call reads COMPRESSOR_ISA (an
/// unknown name or a path the CPU lacks throws ValueError).
inline Path kernel_path() {
  return detail::active_path().load(std::memory_order_relaxed);
}

/// Makes every kernel run `p` from now on (call it between kernel calls, not
/// during them). Throws ValueError for a path this CPU does not run.
inline void set_kernel_path(Path p) {
  detail::require_supported(p, "set_kernel_path");
  detail::active_path().store(p, std::memory_order_relaxed);
}
inline void set_kernel_path(std::string_view name) {
  set_kernel_path(parse_path(name));
}

/// Runs a scope on one path and restores the previous one.
class ScopedKernelPath {
 public:
  explicit ScopedKernelPath(Path p) : saved_(kernel_path()) { set_kernel_path(p); }
  ~ScopedKernelPath() { detail::active_path().store(saved_, std::memory_order_relaxed); }
  ScopedKernelPath(const ScopedKernelPath&) = delete;
  ScopedKernelPath& operator=(const ScopedKernelPath&) = delete;

 private:
  Path saved_;
};

}  // namespace compressor::kernels
