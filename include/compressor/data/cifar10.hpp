// Reader of the CIFAR-10 binary version: files of 3,073-byte records, each
// one label byte (0-9) and the 32x32 R, G and B planes (1,024 bytes each, row
// major). data_batch_1.bin .. data_batch_5.bin are the training set,
// test_batch.bin the test set. Images come out as 8-bit NHWC (N, 32, 32, 3).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/data/error_policy.hpp"
#include "compressor/data/file_io.hpp"
#include "compressor/data/image_set.hpp"

namespace compressor::data {

inline constexpr std::int64_t kCifarSide = 32;
inline constexpr std::int64_t kCifarPixels = kCifarSide * kCifarSide;
inline constexpr std::int64_t kCifarRecordBytes = 1 + 3 * kCifarPixels;  // 3,073

/// The CIFAR-10 class names, in label order (batches.meta.txt).
inline std::vector<std::string> cifar10_classes() {
  return {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
}

/// Parses the bytes of one CIFAR-10 binary file. A size that is not a whole
/// number of records (a truncated file) and labels above 9 are errors naming
/// `source`; under OnError::skip the incomplete tail or the bad record is
/// dropped with a warning and counted in ImageSet::skipped.
inline ImageSet parse_cifar10_binary(std::span<const std::uint8_t> bytes, std::string_view source,
                                     const ErrorPolicy& policy = {}) {
  const auto size = static_cast<std::int64_t>(bytes.size());
  std::int64_t records = size / kCifarRecordBytes;
  ImageSet set;
  set.classes = cifar10_classes();
  if (size % kCifarRecordBytes != 0) {
    const IoError e(detail::concat(source, ": truncated CIFAR-10 file: ", size,
                                   " bytes is not a whole number of ", kCifarRecordBytes,
                                   "-byte records (record ", records, " has only ",
                                   size % kCifarRecordBytes, " bytes)"));
    if (policy.on_error == OnError::stop) throw e;
    policy.note_skipped(e.what(), set.skipped);
  }
  if (size == 0)
    throw IoError(detail::concat(source, ": empty file, expected ", kCifarRecordBytes,
                                 "-byte CIFAR-10 records"));

  set.images.resize(Shape{records, kCifarSide, kCifarSide, 3});
  set.labels.resize(Shape{records});
  std::int64_t kept = 0;
  for (std::int64_t r = 0; r < records; ++r) {
    const std::uint8_t* rec = bytes.data() + r * kCifarRecordBytes;
    if (rec[0] > 9) {
      const IoError e(detail::concat(source, ": record ", r, " has label ", int(rec[0]),
                                     ", expected 0 to 9 (is this a CIFAR-10 binary file?)"));
      if (policy.on_error == OnError::stop) throw e;
      policy.note_skipped(e.what(), set.skipped);
      continue;
    }
    set.labels[kept] = rec[0];
    std::uint8_t* out = set.images.data() + kept * kCifarPixels * 3;
    const std::uint8_t* planes = rec + 1;
    for (std::int64_t p = 0; p < kCifarPixels; ++p) {
      out[3 * p + 0] = planes[p];
      out[3 * p + 1] = planes[kCifarPixels + p];
      out[3 * p + 2] = planes[2 * kCifarPixels + p];
    }
    ++kept;
  }
  if (kept != records) {  // shrink the shape; the allocation is kept
    set.images.resize(Shape{kept, kCifarSide, kCifarSide, 3});
    set.labels.resize(Shape{kept});
  }
  return set;
}

/// Reads one CIFAR-10 binary file (e.g. data_batch_1.bin).
inline ImageSet read_cifar10_binary(const std::filesystem::path& file,
                                    const ErrorPolicy& policy = {}) {
  const std::string bytes = read_file(file);
  return parse_cifar10_binary(
      std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), file.string(),
      policy);
}

enum class CifarSplit : std::uint8_t { train, test };

/// Reads the training (data_batch_1..5.bin) or test (test_batch.bin) set
/// from `dir`, or from `dir`/cifar-10-batches-bin when the files are there.
inline ImageSet load_cifar10(const std::filesystem::path& dir, CifarSplit split,
                             const ErrorPolicy& policy = {}) {
  std::filesystem::path base = dir;
  if (!std::filesystem::exists(base / "test_batch.bin") &&
      std::filesystem::exists(base / "cifar-10-batches-bin" / "test_batch.bin"))
    base /= "cifar-10-batches-bin";
  std::vector<std::string> names;
  if (split == CifarSplit::test)
    names = {"test_batch.bin"};
  else
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  std::vector<ImageSet> parts;
  for (const auto& name : names) {
    const auto file = base / name;
    require<IoError>(std::filesystem::is_regular_file(file), file.string(),
                     ": CIFAR-10 binary file not found (expected the files of "
                     "cifar-10-batches-bin: data_batch_1.bin .. data_batch_5.bin, test_batch.bin)");
    parts.push_back(read_cifar10_binary(file, policy));
  }
  return parts.size() == 1 ? std::move(parts.front()) : concat(parts);
}

}  // namespace compressor::data
