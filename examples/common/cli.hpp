// A small command-line parser for the example programs: --name value options
// and --flag switches, with clear errors for unknown options and bad values.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <system_error>

#include "compressor/core/error.hpp"

namespace examples {

class Cli {
 public:
  /// Parses argv; prints `usage` and exits 0 on --help.
  Cli(int argc, char** argv, std::string usage) : usage_(std::move(usage)) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--help" || a == "-h") {
        std::fputs(usage_.c_str(), stdout);
        std::exit(0);
      }
      if (a.rfind("--", 0) != 0) fail("unexpected argument '" + a + "'");
      const auto eq = a.find('=');
      if (eq != std::string::npos) {
        values_[a.substr(0, eq)] = a.substr(eq + 1);
      } else if (i + 1 < argc && std::string_view(argv[i + 1]).rfind("--", 0) != 0) {
        values_[a] = argv[++i];
      } else {
        values_[a] = "";  // a switch
      }
    }
  }

  bool flag(const std::string& name) {
    known_.insert(name);
    const auto it = values_.find(name);
    if (it == values_.end()) return false;
    if (!it->second.empty()) fail(name + " takes no value");
    return true;
  }

  std::string str(const std::string& name, std::string def) {
    known_.insert(name);
    const auto it = values_.find(name);
    if (it == values_.end()) return def;
    if (it->second.empty()) fail(name + " needs a value");
    return it->second;
  }

  template <class T>
  T num(const std::string& name, T def, T lo, T hi) {
    known_.insert(name);
    const auto it = values_.find(name);
    if (it == values_.end()) return def;
    T v{};
    const std::string& s = it->second;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size())
      fail(name + ": '" + s + "' is not a valid number");
    if (v < lo || v > hi)
      fail(name + ": " + s + " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) +
           "]");
    return v;
  }

  /// Call after reading every option: rejects options nobody asked for.
  void finish() const {
    for (const auto& [k, v] : values_)
      if (!known_.count(k)) fail("unknown option " + k);
  }

  [[noreturn]] void fail(const std::string& msg) const {
    std::fprintf(stderr, "error: %s\n\n%s", msg.c_str(), usage_.c_str());
    std::exit(2);
  }

 private:
  std::string usage_;
  std::map<std::string, std::string> values_;
  std::set<std::string> known_;
};

}  // namespace examples
