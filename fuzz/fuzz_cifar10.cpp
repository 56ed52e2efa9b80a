// Fuzzes the CIFAR-10 binary reader on arbitrary bytes, with the stop and
// skip policies. Errors must be compressor::Error exceptions; what is read
// must be whole, valid records.
#include <cstddef>
#include <cstdint>
#include <span>

#include "compressor/data/cifar10.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace compressor::data;
  const std::span<const std::uint8_t> bytes(data, size);
  ErrorPolicy skip;
  skip.on_error = OnError::skip;
  skip.warn = nullptr;
  for (const ErrorPolicy& policy : {ErrorPolicy{}, skip}) {
    try {
      const ImageSet s = parse_cifar10_binary(bytes, "fuzz.bin", policy);
      const std::int64_t n = s.size();
      if (n > std::int64_t(size) / kCifarRecordBytes) __builtin_trap();
      if (s.images.numel() != n * kCifarRecordBytes - n || s.labels.numel() != n) __builtin_trap();
      for (std::int32_t l : s.labels.flat())
        if (l < 0 || l > 9) __builtin_trap();
      if (policy.on_error == OnError::stop && std::int64_t(size) != n * kCifarRecordBytes)
        __builtin_trap();
    } catch (const compressor::Error&) {
    }
  }
  return 0;
}
