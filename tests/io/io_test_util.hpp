// Helpers of the io tests: files in the build tree, hand-made safetensors
// images and snapshots of a model's state.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "compressor/core/rng.hpp"
#include "compressor/io/checkpoint.hpp"

namespace compressor::testing {

/// A clean directory for one test's files, under the test binary directory.
inline std::filesystem::path io_test_dir(const std::string& name) {
  const auto dir = std::filesystem::path(COMPRESSOR_TEST_BINARY_DIR) / "io_files" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

inline void write_bytes(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw std::runtime_error("test helper: cannot write " + p.string());
}

inline std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

/// A safetensors image with the given header text (length prefix added) and data.
inline std::string raw_safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

/// The bytes of every parameter and buffer of m, in order.
inline std::vector<std::vector<char>> snapshot(nn::Module& m) {
  std::vector<std::vector<char>> out;
  for (const auto& e : io::detail::state_entries(m)) {
    io::detail::dispatch_dtype(e.dtype, [&]<class T>() {
      const auto& t = *static_cast<const Tensor<T>*>(e.tensor);
      std::vector<char> b(static_cast<std::size_t>(t.numel()) * sizeof(T));
      if (!b.empty()) std::memcpy(b.data(), t.data(), b.size());
      out.push_back(std::move(b));
    });
  }
  return out;
}

/// Gives every BN buffer a non-default value (as after training), so a round
/// trip or load that dropped one would show.
inline void perturb_buffers(nn::Module& m, std::uint64_t seed) {
  Rng rng(seed);
  for (const auto& b : m.named_buffers()) {
    if (b.dtype == DType::f32)
      for (auto& v : b.as<float>().flat()) v = static_cast<float>(rng.uniform(0.5, 2.0));
    else if (b.dtype == DType::i64)
      b.as<std::int64_t>()[0] = static_cast<std::int64_t>(1000 + rng.below(100000));
  }
}

/// Names in files directly inside dir (to look for left-over temporaries).
inline std::vector<std::string> list_dir(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  return names;
}

}  // namespace compressor::testing
