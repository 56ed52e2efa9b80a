// Whole-file reading and atomic writing (temp file, then rename) with errors
// that name the file.
#pragma once

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

#include "compressor/core/error.hpp"

namespace compressor::data {

/// The bytes of a file; IoError naming the file when it cannot be read.
inline std::string read_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::error_code ec;
    const bool exists = std::filesystem::exists(file, ec);
    throw IoError(detail::concat(file.string(),
                                 exists ? ": cannot open file for reading" : ": file not found"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError(detail::concat(file.string(), ": read error"));
  return std::move(ss).str();
}

/// Writes `bytes` to `file` atomically: into a temporary file beside it,
/// then renamed over it, so readers never see a half-written file.
inline void write_file_atomic(const std::filesystem::path& file, std::string_view bytes) {
  std::filesystem::path tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw IoError(detail::concat(tmp.string(), ": cannot open file for writing"));
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) throw IoError(detail::concat(tmp.string(), ": write error"));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw IoError(detail::concat(file.string(), ": cannot rename temporary file into place"));
  }
}

}  // namespace compressor::data
