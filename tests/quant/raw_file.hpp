// An editable safetensors file for the int8 file tests: tensors as raw bytes
// and metadata, read from a file and written back exactly.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "compressor/io/json.hpp"
#include "compressor/io/safetensors.hpp"
#include "io/io_test_util.hpp"

namespace compressor::testing {

/// A safetensors file's content, editable: tensors as raw bytes.
struct RawFile {
  struct Entry {
    std::string name, dtype;
    std::vector<std::int64_t> dims;
    std::string bytes;
  };
  std::vector<std::pair<std::string, std::string>> meta;
  std::vector<Entry> tensors;

  static RawFile read(const std::filesystem::path& p) {
    io::SafetensorsFile f = io::SafetensorsFile::open(p);
    RawFile r;
    r.meta = f.metadata();
    for (const auto& t : f.tensors()) {
      Entry e{t.name, t.dtype_name, t.dims, std::string(t.nbytes(), '\0')};
      f.read_bytes(t, e.bytes.data());
      r.tensors.push_back(std::move(e));
    }
    return r;
  }
  Entry& at(const std::string& name) {
    for (auto& t : tensors)
      if (t.name == name) return t;
    throw std::runtime_error("test: no tensor " + name);
  }
  void erase(const std::string& name) {
    std::erase_if(tensors, [&](const Entry& e) { return e.name == name; });
  }
  template <class T>
  void set(const std::string& name, std::size_t i, T v) {
    Entry& e = at(name);
    REQUIRE((i + 1) * sizeof(T) <= e.bytes.size());
    std::memcpy(e.bytes.data() + i * sizeof(T), &v, sizeof(T));
  }
  void set_meta(const std::string& k, const std::string& v) {
    for (auto& [key, val] : meta)
      if (key == k) {
        val = v;
        return;
      }
    meta.emplace_back(k, v);
  }
  void erase_meta(const std::string& k) {
    std::erase_if(meta, [&](const auto& kv) { return kv.first == k; });
  }
  std::string bytes() const {
    io::json::Object root, m;
    for (const auto& [k, v] : meta) m.emplace_back(k, io::json::Value(v));
    root.emplace_back("__metadata__", io::json::Value(std::move(m)));
    std::string data;
    for (const auto& t : tensors) {
      io::json::Array dims;
      for (auto d : t.dims) dims.emplace_back(d);
      const std::uint64_t b = data.size(), e = b + t.bytes.size();
      root.emplace_back(
          t.name, io::json::Value(io::json::Object{
                      {"dtype", io::json::Value(t.dtype)},
                      {"shape", io::json::Value(std::move(dims))},
                      {"data_offsets",
                       io::json::Value(io::json::Array{io::json::Value(b), io::json::Value(e)})}}));
      data += t.bytes;
    }
    std::string header = io::json::dump(io::json::Value(std::move(root)));
    header.append((8 - header.size() % 8) % 8, ' ');  // as SafetensorsWriter pads
    return compressor::testing::raw_safetensors(header, data);
  }
  void write(const std::filesystem::path& p) const { compressor::testing::write_bytes(p, bytes()); }
};

}  // namespace compressor::testing
