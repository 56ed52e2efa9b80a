// Helpers of the data tests: scratch folders in the build tree, writing
// files, and capturing warnings.
#pragma once

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/data/error_policy.hpp"

namespace compressor::testing {

/// A fresh, empty folder under the test binary dir, named after `name`.
inline std::filesystem::path scratch_dir(std::string_view name) {
  const auto dir = std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_bytes(const std::filesystem::path& file, std::string_view bytes) {
  std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Collects warnings; thread-safe.
struct WarningLog {
  std::mutex mu;
  std::vector<std::string> messages;

  data::ErrorPolicy skip_policy() {
    data::ErrorPolicy p;
    p.on_error = data::OnError::skip;
    p.warn = [this](const std::string& m) {
      std::lock_guard lock(mu);
      messages.push_back(m);
    };
    return p;
  }
  bool any_contains(std::string_view s) {
    std::lock_guard lock(mu);
    for (const auto& m : messages)
      if (m.find(s) != std::string::npos) return true;
    return false;
  }
};

}  // namespace compressor::testing
