// The safetensors format (https://github.com/huggingface/safetensors):
//
//   8 bytes   N, the header length, unsigned little-endian
//   N bytes   a UTF-8 JSON object, starting with '{' and possibly padded with
//             spaces: {"name": {"dtype": "F32", "shape": [2, 3],
//                               "data_offsets": [begin, end]}, ...,
//                      "__metadata__": {"key": "value", ...}}   (optional)
//   the rest  the data buffer; offsets are relative to its start, tensors are
//             row-major and little-endian.
//
// SafetensorsFile validates the whole header when it opens a file, before any
// tensor is read: the header length against the file size, the JSON grammar,
// every entry's fields, dtype, shape and byte length, and that the tensors'
// byte ranges tile the data buffer exactly (no overlap, no hole, nothing past
// the end). Every error is an IoError naming the file and the tensor.
// SafetensorsWriter writes the same format atomically (see atomic_file.hpp).
#pragma once

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/core/dtype.hpp"
#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/io/atomic_file.hpp"
#include "compressor/io/json.hpp"

namespace compressor::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader copies bytes without swapping");

/// The largest header accepted (the reference implementation's limit).
inline constexpr std::uint64_t kMaxSafetensorsHeader = 100ull << 20;

/// A safetensors dtype name, its element size and the matching DType, if any.
struct SafetensorsDType {
  std::string_view name;
  std::size_t size;
  std::optional<DType> dtype;
};

/// Looks up a dtype name of the format; nullptr if the format has no such dtype.
inline const SafetensorsDType* find_safetensors_dtype(std::string_view name) {
  static constexpr SafetensorsDType kTable[] = {
      {"F32", 4, DType::f32}, {"I8", 1, DType::i8},   {"U8", 1, DType::u8},
      {"I32", 4, DType::i32}, {"I64", 8, DType::i64}, {"BOOL", 1, std::nullopt},
      {"F16", 2, {}},         {"BF16", 2, {}},        {"F64", 8, {}},
      {"I16", 2, {}},         {"U16", 2, {}},         {"U32", 4, {}},
      {"U64", 8, {}},         {"F8_E4M3", 1, {}},     {"F8_E5M2", 1, {}},
  };
  for (const auto& d : kTable)
    if (d.name == name) return &d;
  return nullptr;
}

/// One tensor entry of a header: offsets are relative to the data buffer.
struct TensorInfo {
  std::string name;
  std::string dtype_name;          ///< as written in the file ("F32")
  std::optional<DType> dtype;      ///< empty for dtypes compressor does not hold (F16, ...)
  std::vector<std::int64_t> dims;  ///< the shape as written (any rank)
  std::uint64_t begin = 0, end = 0;

  std::uint64_t nbytes() const { return end - begin; }
  /// "(2, 3)", as Shape::str prints.
  std::string shape_str() const {
    std::string s = "(";
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + ")";
  }
};

/// A parsed and validated header.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;                            ///< in header order
  std::vector<std::pair<std::string, std::string>> metadata;  ///< "__metadata__", in order
};

namespace detail {

/// Multiplies a*b into out; false on uint64 overflow.
inline bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
  return __builtin_mul_overflow(a, b, &out);
}

inline TensorInfo parse_tensor_entry(const std::string& where, const std::string& name,
                                     const json::Value& v) {
  auto bad = [&](auto&&... what) -> IoError {
    return IoError(compressor::detail::concat(where, ": tensor '", name, "': ", what...));
  };
  if (!v.is_object())
    throw bad("entry is a JSON ", json::Value::kind_name(v.kind()), ", expected an object");
  TensorInfo t;
  t.name = name;
  const json::Value *dtype = nullptr, *shape = nullptr, *offsets = nullptr;
  for (const auto& [key, field] : v.as_object()) {
    if (key == "dtype")
      dtype = &field;
    else if (key == "shape")
      shape = &field;
    else if (key == "data_offsets")
      offsets = &field;
    else
      throw bad("unexpected field \"", key, "\" (expected dtype, shape, data_offsets)");
  }
  if (!dtype || !shape || !offsets)
    throw bad("missing field \"", !dtype ? "dtype" : !shape ? "shape" : "data_offsets", "\"");
  if (!dtype->is_string()) throw bad("\"dtype\" is not a string");
  const SafetensorsDType* dt = find_safetensors_dtype(dtype->as_string());
  if (!dt) throw bad("unknown dtype \"", dtype->as_string(), "\"");
  t.dtype_name = std::string(dt->name);
  t.dtype = dt->dtype;
  if (!shape->is_array()) throw bad("\"shape\" is not an array");
  std::uint64_t numel = 1;
  for (const auto& d : shape->as_array()) {
    if (!d.is_int64() || d.as_int64() < 0)
      throw bad("\"shape\" holds a value that is not a non-negative integer");
    t.dims.push_back(d.as_int64());
    // Every partial product must fit in int64, as Shape::numel computes it.
    if (mul_overflows(numel, static_cast<std::uint64_t>(d.as_int64()), numel) ||
        numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      throw bad("shape ", t.shape_str(), " has too many elements");
  }
  if (!offsets->is_array() || offsets->as_array().size() != 2 ||
      !offsets->as_array()[0].is_uint64() || !offsets->as_array()[1].is_uint64())
    throw bad("\"data_offsets\" is not a pair of non-negative integers [begin, end]");
  t.begin = offsets->as_array()[0].as_uint64();
  t.end = offsets->as_array()[1].as_uint64();
  if (t.end < t.begin) throw bad("data_offsets [", t.begin, ", ", t.end, "] end before they begin");
  std::uint64_t need = 0;
  if (mul_overflows(numel, dt->size, need)) throw bad("shape ", t.shape_str(), " is too large");
  if (t.nbytes() != need)
    throw bad("data_offsets [", t.begin, ", ", t.end, "] span ", t.nbytes(), " bytes but dtype ",
              t.dtype_name, " and shape ", t.shape_str(), " need ", need, " bytes");
  return t;
}

}  // namespace detail

/// Parses and validates a header (the N JSON bytes) for a data buffer of
/// data_size bytes. where names the source in error messages.
inline SafetensorsHeader parse_safetensors_header(std::string_view header_json,
                                                  std::uint64_t data_size,
                                                  const std::string& where) {
  // The format requires the header to start with '{'; trailing spaces are padding.
  if (header_json.empty() || header_json.front() != '{')
    throw IoError(
        compressor::detail::concat(where, ": safetensors header does not start with '{'"));
  json::Value root;
  try {
    root = json::parse(header_json);
  } catch (const json::JsonError& e) {
    throw IoError(compressor::detail::concat(where, ": malformed safetensors header: ", e.what()));
  }
  SafetensorsHeader h;
  for (const auto& [key, v] : root.as_object()) {
    if (key == "__metadata__") {
      if (!v.is_object())
        throw IoError(compressor::detail::concat(where, ": \"__metadata__\" is not an object"));
      for (const auto& [mk, mv] : v.as_object()) {
        if (!mv.is_string())
          throw IoError(compressor::detail::concat(
              where, ": metadata \"", mk, "\" is not a string (metadata maps strings to strings)"));
        h.metadata.emplace_back(mk, mv.as_string());
      }
      continue;
    }
    h.tensors.push_back(detail::parse_tensor_entry(where, key, v));
  }
  // The byte ranges must tile [0, data_size): sorted by offset, each one begins
  // where the previous ended and the last ends at the end of the file.
  std::vector<const TensorInfo*> order;
  order.reserve(h.tensors.size());
  for (const auto& t : h.tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t expected = 0;
  const TensorInfo* prev = nullptr;
  for (const TensorInfo* t : order) {
    if (t->begin != expected) {
      if (t->begin < expected)
        throw IoError(compressor::detail::concat(
            where, ": tensor '", t->name, "': data_offsets [", t->begin, ", ", t->end,
            "] overlap tensor '", prev->name, "' [", prev->begin, ", ", prev->end, "]"));
      throw IoError(compressor::detail::concat(
          where, ": tensor '", t->name, "': data_offsets [", t->begin, ", ", t->end,
          "] leave a hole: expected the tensor to begin at ", expected));
    }
    expected = t->end;
    prev = t;
  }
  if (expected != data_size) {
    if (expected > data_size)
      throw IoError(compressor::detail::concat(
          where, ": tensor '", prev->name, "': data_offsets [", prev->begin, ", ", prev->end,
          "] run past the end of the data (", data_size, " bytes; is the file truncated?)"));
    throw IoError(compressor::detail::concat(where, ": the tensors cover ", expected, " of the ",
                                             data_size,
                                             " data bytes (trailing bytes no tensor owns)"));
  }
  return h;
}

/// A safetensors file (or an in-memory image of one) with a validated header;
/// tensors are read on demand through one stream, so one object must not be
/// read from several threads at once.
class SafetensorsFile {
 public:
  /// Opens and validates path; throws IoError naming it on any problem.
  static SafetensorsFile open(const std::filesystem::path& path) {
    SafetensorsFile f;
    f.where_ = path.string();
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(status))
      throw IoError(compressor::detail::concat(f.where_, ": no such file"));
    if (!std::filesystem::is_regular_file(status))
      throw IoError(compressor::detail::concat(f.where_, ": not a regular file"));
    const auto size = std::filesystem::file_size(path, ec);
    if (ec)
      throw IoError(
          compressor::detail::concat(f.where_, ": cannot get the file size: ", ec.message()));
    f.stream_.open(path, std::ios::binary);
    if (!f.stream_)
      throw IoError(compressor::detail::concat(
          f.where_, ": cannot open for reading: ", std::strerror(errno)));
    f.file_size_ = size;
    f.init();
    return f;
  }

  /// Validates bytes (the whole content of a file); where names it in errors.
  static SafetensorsFile from_bytes(std::string bytes, std::string where = "<memory>") {
    SafetensorsFile f;
    f.where_ = std::move(where);
    f.memory_ = std::move(bytes);
    f.in_memory_ = true;
    f.file_size_ = f.memory_.size();
    f.init();
    return f;
  }

  /// The file name (or the name given to from_bytes), as used in messages.
  const std::string& source() const { return where_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::vector<std::pair<std::string, std::string>>& metadata() const {
    return header_.metadata;
  }
  /// The metadata value of key, or nullptr.
  const std::string* metadata_value(std::string_view key) const {
    for (const auto& [k, v] : header_.metadata)
      if (k == key) return &v;
    return nullptr;
  }
  /// The tensor named name, or nullptr.
  const TensorInfo* find(std::string_view name) const {
    for (const auto& t : header_.tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  bool contains(std::string_view name) const { return find(name) != nullptr; }

  /// Reads a tensor of element type T; throws IoError if it is absent, has
  /// another dtype, more than Shape::kMaxRank dimensions, or cannot be read.
  template <TensorElement T>
  Tensor<T> read(std::string_view name) {
    const TensorInfo* t = find(name);
    if (!t) throw IoError(compressor::detail::concat(where_, ": no tensor named '", name, "'"));
    return read<T>(*t);
  }

  template <TensorElement T>
  Tensor<T> read(const TensorInfo& t) {
    check_dtype(t, dtype_of<T>());
    if (t.dims.size() > static_cast<std::size_t>(Shape::kMaxRank))
      throw IoError(compressor::detail::concat(where_, ": tensor '", t.name, "' has rank ",
                                               t.dims.size(), "; at most ", Shape::kMaxRank,
                                               " dimensions are supported"));
    Tensor<T> out{Shape(std::span<const std::int64_t>(t.dims))};
    read_bytes(t, out.data());
    return out;
  }

  /// Copies the raw bytes of t (t.nbytes() of them) to dst.
  void read_bytes(const TensorInfo& t, void* dst) {
    if (t.nbytes() == 0) return;
    const std::uint64_t at = data_start_ + t.begin;
    if (in_memory_) {
      std::memcpy(dst, memory_.data() + at, t.nbytes());
      return;
    }
    stream_.clear();
    stream_.seekg(static_cast<std::streamoff>(at));
    stream_.read(static_cast<char*>(dst), static_cast<std::streamsize>(t.nbytes()));
    if (!stream_ || static_cast<std::uint64_t>(stream_.gcount()) != t.nbytes())
      throw IoError(compressor::detail::concat(
          where_, ": tensor '", t.name, "': could not read ", t.nbytes(), " bytes at offset ", at,
          " (the file changed or was truncated after it was opened?)"));
  }

  /// Throws IoError unless t has the given dtype.
  void check_dtype(const TensorInfo& t, DType want) const {
    if (!t.dtype || *t.dtype != want)
      throw IoError(compressor::detail::concat(where_, ": tensor '", t.name, "' has dtype ",
                                               t.dtype_name, ", expected ", dtype_name(want)));
  }

 private:
  SafetensorsFile() = default;

  /// Reads n bytes at offset into dst from the file or memory image.
  void read_raw(std::uint64_t offset, char* dst, std::uint64_t n) {
    if (in_memory_) {
      std::memcpy(dst, memory_.data() + offset, n);
      return;
    }
    stream_.seekg(static_cast<std::streamoff>(offset));
    stream_.read(dst, static_cast<std::streamsize>(n));
    if (!stream_ || static_cast<std::uint64_t>(stream_.gcount()) != n)
      throw IoError(compressor::detail::concat(where_, ": read error in the header"));
  }

  void init() {
    if (file_size_ < 8)
      throw IoError(compressor::detail::concat(where_, ": file of ", file_size_,
                                               " bytes is too short for a safetensors header "
                                               "(8-byte length + JSON)"));
    unsigned char len_bytes[8];
    read_raw(0, reinterpret_cast<char*>(len_bytes), 8);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | len_bytes[i];
    if (n > kMaxSafetensorsHeader)
      throw IoError(compressor::detail::concat(where_, ": header length ", n,
                                               " exceeds the limit of ", kMaxSafetensorsHeader,
                                               " bytes"));
    if (n > file_size_ - 8)
      throw IoError(compressor::detail::concat(where_, ": header length ", n,
                                               " runs past the end of the file (", file_size_,
                                               " bytes; is the file truncated?)"));
    std::string header(static_cast<std::size_t>(n), '\0');
    read_raw(8, header.data(), n);
    data_start_ = 8 + n;
    header_ = parse_safetensors_header(header, file_size_ - data_start_, where_);
  }

  std::string where_;
  std::ifstream stream_;
  std::string memory_;
  bool in_memory_ = false;
  std::uint64_t file_size_ = 0;
  std::uint64_t data_start_ = 0;
  SafetensorsHeader header_;
};

/// Collects named tensors and metadata and writes them as one safetensors
/// file. Tensors are copied when added, so the sources may change afterwards.
class SafetensorsWriter {
 public:
  /// Adds a tensor; throws ValueError on a duplicate or reserved name.
  template <TensorElement T>
  void add(std::string name, TensorView<const T> t) {
    check_new_name(name);
    Entry e{std::move(name),
            dtype_of<T>(),
            std::vector<std::int64_t>(t.shape().dims().begin(), t.shape().dims().end()),
            {}};
    e.bytes.resize(static_cast<std::size_t>(t.numel()) * sizeof(T));
    if (!e.bytes.empty()) std::memcpy(e.bytes.data(), t.data(), e.bytes.size());
    entries_.push_back(std::move(e));
  }
  template <TensorElement T>
  void add(std::string name, const Tensor<T>& t) {
    add<T>(std::move(name), t.view());
  }

  /// Sets a "__metadata__" entry (string to string); a repeated key is replaced.
  void set_metadata(std::string key, std::string value) {
    for (auto& [k, v] : metadata_)
      if (k == key) {
        v = std::move(value);
        return;
      }
    metadata_.emplace_back(std::move(key), std::move(value));
  }

  std::size_t size() const { return entries_.size(); }

  /// The header JSON, padded with spaces so the data starts 8-byte aligned.
  std::string header() const {
    json::Object root;
    if (!metadata_.empty()) {
      json::Object meta;
      for (const auto& [k, v] : metadata_) meta.emplace_back(k, json::Value(v));
      root.emplace_back("__metadata__", json::Value(std::move(meta)));
    }
    std::uint64_t offset = 0;
    for (const auto& e : entries_) {
      json::Array shape;
      for (const auto d : e.dims) shape.emplace_back(d);
      const std::uint64_t end = offset + e.bytes.size();
      root.emplace_back(
          e.name,
          json::Value(json::Object{
              {"dtype", json::Value(dtype_name(e.dtype))},
              {"shape", json::Value(std::move(shape))},
              {"data_offsets", json::Value(json::Array{json::Value(offset), json::Value(end)})}}));
      offset = end;
    }
    std::string h = json::dump(json::Value(std::move(root)));
    h.append((8 - h.size() % 8) % 8, ' ');
    return h;
  }

  /// The complete file content.
  std::string bytes() const {
    std::string out;
    emit([&](const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); });
    return out;
  }

  /// Writes the file atomically; throws IoError naming path on failure.
  void write(const std::filesystem::path& path) const {
    AtomicFile f(path);
    emit([&](const void* p, std::size_t n) { f.write(p, n); });
    f.commit();
  }

 private:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> dims;
    std::vector<char> bytes;
  };

  void check_new_name(const std::string& name) const {
    require(name != "__metadata__", "safetensors: '__metadata__' is reserved, not a tensor name");
    for (const auto& e : entries_)
      require(e.name != name, "safetensors: duplicate tensor name '", name, "'");
  }

  template <class Sink>
  void emit(Sink&& sink) const {
    const std::string h = header();
    unsigned char len[8];
    std::uint64_t n = h.size();
    for (auto& b : len) {
      b = static_cast<unsigned char>(n & 0xff);
      n >>= 8;
    }
    sink(len, 8);
    sink(h.data(), h.size());
    for (const auto& e : entries_)
      if (!e.bytes.empty()) sink(e.bytes.data(), e.bytes.size());
  }

  std::vector<Entry> entries_;
  std::vector<std::pair<std::string, std::string>> metadata_;
};

}  // namespace compressor::io
