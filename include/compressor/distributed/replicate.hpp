// Replicas: every rank of data-parallel training starts from rank 0's
// weights. broadcast_module() first checks that all ranks built the same
// model (names, shapes and dtypes of parameters and buffers), so a mismatch
// is a clear error on every rank instead of a broadcast of the wrong sizes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>

#include "compressor/distributed/mpi.hpp"
#include "compressor/nn/module.hpp"

namespace compressor::distributed {

namespace detail {

inline void fnv(std::uint64_t& h, const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ULL;
}
inline void fnv_shape(std::uint64_t& h, const Shape& s) {
  for (int d = 0; d < s.rank(); ++d) {
    const std::int64_t v = s[d];
    fnv(h, &v, sizeof v);
  }
  const std::int64_t sep = -1;
  fnv(h, &sep, sizeof sep);
}

/// Data pointer and byte count of a buffer of any dtype.
inline std::pair<void*, std::int64_t> buffer_bytes(const nn::BufferRef& b) {
  auto of = [](auto& t) {
    return std::pair<void*, std::int64_t>(t.data(),
                                          t.numel() * static_cast<std::int64_t>(sizeof(*t.data())));
  };
  switch (b.dtype) {
    case DType::f32:
      return of(b.as<float>());
    case DType::i8:
      return of(b.as<std::int8_t>());
    case DType::u8:
      return of(b.as<std::uint8_t>());
    case DType::i32:
      return of(b.as<std::int32_t>());
    case DType::i64:
      return of(b.as<std::int64_t>());
  }
  return {nullptr, 0};
}

inline Shape buffer_shape(const nn::BufferRef& b) {
  switch (b.dtype) {
    case DType::f32:
      return b.as<float>().shape();
    case DType::i8:
      return b.as<std::int8_t>().shape();
    case DType::u8:
      return b.as<std::uint8_t>().shape();
    case DType::i32:
      return b.as<std::int32_t>().shape();
    case DType::i64:
      return b.as<std::int64_t>().shape();
  }
  return {};
}

}  // namespace detail

/// A hash of the names, shapes and dtypes of model's parameters and buffers
/// (not their values): equal on two ranks that built the same model.
inline std::uint64_t structure_fingerprint(nn::Module& model) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const auto& p : model.named_parameters()) {
    detail::fnv(h, p.name.c_str(), p.name.size() + 1);  // with the NUL: "a"+"bc" != "ab"+"c"
    detail::fnv_shape(h, p.value->shape());
  }
  for (const auto& b : model.named_buffers()) {
    detail::fnv(h, b.name.c_str(), b.name.size() + 1);
    const auto t = static_cast<std::uint8_t>(b.dtype);
    detail::fnv(h, &t, 1);
    detail::fnv_shape(h, detail::buffer_shape(b));
  }
  return h;
}

namespace detail {
inline void require_same_structure(const Communicator& comm, nn::Module& model) {
  comm.require_same(structure_fingerprint(model),
                    "the model's structure (names and shapes of parameters and buffers)");
}
inline void broadcast_buffer_data(const Communicator& comm, nn::Module& model, int root) {
  for (const auto& b : model.named_buffers()) {
    const auto [data, bytes] = buffer_bytes(b);
    comm.broadcast_bytes(data, bytes, root);
  }
}
}  // namespace detail

/// Overwrites model's parameters and buffers (BatchNorm running statistics
/// and counters) on every rank with root's. Throws ValueError on every rank
/// when the ranks' models differ in structure.
inline void broadcast_module(const Communicator& comm, nn::Module& model, int root = 0) {
  detail::require_same_structure(comm, model);
  for (const auto& p : model.named_parameters())
    comm.broadcast(std::span<float>(p.value->data(), static_cast<std::size_t>(p.value->numel())),
                   root);
  detail::broadcast_buffer_data(comm, model, root);
}

/// Overwrites model's buffers alone (BatchNorm running statistics and
/// counters, which per-rank BatchNorm lets drift apart) on every rank with
/// root's; the same structure check as broadcast_module().
inline void broadcast_buffers(const Communicator& comm, nn::Module& model, int root = 0) {
  detail::require_same_structure(comm, model);
  detail::broadcast_buffer_data(comm, model, root);
}

}  // namespace compressor::distributed
