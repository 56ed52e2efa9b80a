// Fuzzes the safetensors reader and the checkpoint loader on arbitrary bytes.
// Malformed input must end in a compressor::Error; an accepted file must have
// byte ranges that tile its data, every tensor of a supported dtype must read
// back with the declared size, a re-written file must read back the same, and
// a failed load must leave the model unchanged.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "compressor/io/checkpoint.hpp"
#include "compressor/nn/batchnorm.hpp"
#include "compressor/nn/conv2d.hpp"
#include "compressor/nn/linear.hpp"
#include "compressor/nn/sequential.hpp"

namespace {

using namespace compressor;

/// The model the seed corpus's checkpoint was saved from (conv OHWI, BN with
/// an int64 buffer, linear).
nn::Sequential& model() {
  static const std::unique_ptr<nn::Sequential> m = [] {
    auto s = std::make_unique<nn::Sequential>();
    s->add("conv", std::make_unique<nn::Conv2d>(2, 3, 3, 1, 1, true));
    s->add("bn", std::make_unique<nn::BatchNorm2d>(3));
    s->add("fc", std::make_unique<nn::Linear>(3, 2));
    return s;
  }();
  return *m;
}

std::vector<char> state_bytes(nn::Module& m) {
  std::vector<char> out;
  for (const auto& e : io::detail::state_entries(m))
    io::detail::dispatch_dtype(e.dtype, [&]<class T>() {
      const auto& t = *static_cast<const Tensor<T>*>(e.tensor);
      const auto* p = reinterpret_cast<const char*>(t.data());
      out.insert(out.end(), p, p + t.numel() * static_cast<std::int64_t>(sizeof(T)));
    });
  return out;
}

/// Reads every tensor; true when all have a dtype and rank compressor holds.
bool read_all(io::SafetensorsFile& f, io::SafetensorsWriter& w) {
  bool all = true;
  for (const auto& t : f.tensors()) {
    if (!t.dtype || t.dims.size() > static_cast<std::size_t>(Shape::kMaxRank)) {
      all = false;
      try {  // must refuse a dtype or rank compressor does not hold
        if (!t.dtype)
          (void)f.read<float>(t);
        else
          io::detail::dispatch_dtype(*t.dtype, [&]<class T>() { (void)f.read<T>(t); });
        __builtin_trap();
      } catch (const IoError&) {
      }
      continue;
    }
    io::detail::dispatch_dtype(*t.dtype, [&]<class T>() {
      const Tensor<T> v = f.read<T>(t);
      if (static_cast<std::uint64_t>(v.numel()) * sizeof(T) != t.nbytes()) __builtin_trap();
      w.add<T>(t.name, v.view());
    });
  }
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<io::SafetensorsFile> file;
  try {
    file = std::make_unique<io::SafetensorsFile>(io::SafetensorsFile::from_bytes(bytes, "fuzz"));
  } catch (const Error&) {
    return 0;
  }

  // Accepted: the byte ranges tile the data exactly.
  std::uint64_t covered = 0;
  for (const auto& t : file->tensors()) covered += t.nbytes();
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (8 + header_len + covered != size) __builtin_trap();

  // Every tensor reads back; a re-written file reads back the same.
  io::SafetensorsWriter w;
  for (const auto& [k, v] : file->metadata()) w.set_metadata(k, v);
  if (read_all(*file, w)) {
    auto again = io::SafetensorsFile::from_bytes(w.bytes(), "again");
    if (again.tensors().size() != file->tensors().size()) __builtin_trap();
    if (again.metadata() != file->metadata()) __builtin_trap();
    for (const auto& t : file->tensors()) {
      const io::TensorInfo* u = again.find(t.name);
      if (!u || u->dtype_name != t.dtype_name || u->dims != t.dims || u->nbytes() != t.nbytes())
        __builtin_trap();
      std::vector<char> a(t.nbytes()), b(t.nbytes());
      file->read_bytes(t, a.data());
      again.read_bytes(*u, b.data());
      if (a != b) __builtin_trap();
    }
  }

  // Loading: either it succeeds or the model is unchanged.
  auto& m = model();
  const auto before = state_bytes(m);
  io::LoadOptions opt;
  opt.strict = (size & 1) != 0;
  try {
    (void)io::load_checkpoint(m, *file, opt);
  } catch (const Error&) {
    if (state_bytes(m) != before) __builtin_trap();
  }
  return 0;
}
