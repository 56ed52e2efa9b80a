// EchoNet-Dynamic's FileList.csv: one row per clip with (at least) FileName
// and EF, and usually Split (TRAIN, VAL or TEST); other columns are ignored,
// column order is free. FileName may carry ".avi" or not. Without a Split
// column, clips are split by a seeded shuffle. Core only (no FFmpeg).
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/rng.hpp"
#include "compressor/data/csv.hpp"
#include "compressor/data/error_policy.hpp"

namespace compressor::data {

enum class EchoSplit : std::uint8_t { train, val, test };

inline std::string_view split_name(EchoSplit s) {
  switch (s) {
    case EchoSplit::train:
      return "TRAIN";
    case EchoSplit::val:
      return "VAL";
    case EchoSplit::test:
      return "TEST";
  }
  return "?";
}

/// One usable row of FileList.csv.
struct EchoRecord {
  std::string name;  ///< FileName without ".avi"
  float ef = 0;      ///< ejection fraction, %
  EchoSplit split = EchoSplit::train;
  std::int64_t line = 0;  ///< line in FileList.csv
};

struct FileListOptions {
  /// Used only when there is no Split column: fractions of VAL and TEST clips.
  double val_fraction = 0.125;
  double test_fraction = 0.125;
  std::uint64_t split_seed = 0;
  /// A bad row (non-numeric, NaN or out-of-range EF, bad FileName or Split,
  /// missing fields): stop (default) or skip with a warning.
  ErrorPolicy errors;
};

struct FileList {
  std::vector<EchoRecord> records;
  std::int64_t skipped = 0;       ///< rows skipped (OnError::skip)
  bool has_split_column = false;  ///< false: splits were drawn by the seed
};

/// The split of each of `count` items: round(count * fraction) VAL and TEST
/// items chosen by a seeded shuffle, the rest TRAIN.
inline std::vector<EchoSplit> seeded_splits(std::int64_t count, double val_fraction,
                                            double test_fraction, std::uint64_t seed) {
  require(val_fraction >= 0 && test_fraction >= 0 && val_fraction + test_fraction <= 1,
          "split fractions must be >= 0 with a sum <= 1, got ", val_fraction, " and ",
          test_fraction);
  const auto n_val = static_cast<std::int64_t>(std::llround(double(count) * val_fraction));
  const auto n_test = std::min<std::int64_t>(
      count - n_val, static_cast<std::int64_t>(std::llround(double(count) * test_fraction)));
  std::vector<std::int64_t> order(static_cast<std::size_t>(count));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  Rng rng = Rng::derive(seed, 0x5B117ULL);
  rng.shuffle(std::span(order));
  std::vector<EchoSplit> split(static_cast<std::size_t>(count), EchoSplit::train);
  for (std::int64_t k = 0; k < n_val + n_test; ++k)
    split[static_cast<std::size_t>(order[static_cast<std::size_t>(k)])] =
        k < n_val ? EchoSplit::val : EchoSplit::test;
  return split;
}

namespace internal {

/// Parses a whole field as a finite number; throws ValueError with `what`.
inline double parse_number(std::string_view field, std::string_view what) {
  std::string_view f = CsvTable::trim(field);
  if (!f.empty() && f.front() == '+') f.remove_prefix(1);
  double v = 0;
  const auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), v);
  if (f.empty() || ec != std::errc() || end != f.data() + f.size())
    throw ValueError(detail::concat(what, " '", field, "' is not a number"));
  if (!std::isfinite(v))
    throw ValueError(detail::concat(what, " '", field, "' is not a finite number"));
  return v;
}

inline EchoSplit parse_split(std::string_view field) {
  const std::string_view f = CsvTable::trim(field);
  for (EchoSplit s : {EchoSplit::train, EchoSplit::val, EchoSplit::test})
    if (CsvTable::iequals(f, split_name(s))) return s;
  throw ValueError(detail::concat("Split '", field, "' is not TRAIN, VAL or TEST"));
}

inline std::string parse_file_name(std::string_view field) {
  std::string_view f = CsvTable::trim(field);
  if (f.size() >= 4 && CsvTable::iequals(f.substr(f.size() - 4), ".avi")) f.remove_suffix(4);
  if (f.empty()) throw ValueError("empty FileName");
  if (f.find_first_of("/\\") != std::string_view::npos || f == "." || f == "..")
    throw ValueError(detail::concat("FileName '", field, "' is not a plain file name"));
  return std::string(f);
}

}  // namespace internal

/// Reads the rows of a parsed FileList.csv. Missing FileName or EF columns
/// are an error naming the file; row errors name the file and line and
/// follow opt.errors.
inline FileList parse_echonet_filelist(const CsvTable& table, const FileListOptions& opt = {}) {
  const std::size_t c_name = table.column("FileName");
  const std::size_t c_ef = table.column("EF");
  const auto c_split = table.find_column("Split");
  const std::size_t need = std::max({c_name, c_ef, c_split.value_or(0)}) + 1;
  FileList out;
  out.has_split_column = c_split.has_value();
  for (std::size_t r = 0; r < table.rows.size(); ++r) {
    const auto& row = table.rows[r];
    const std::int64_t line = table.row_lines[r];
    EchoRecord rec;
    const bool ok = opt.errors.guard(
        [&] {
          try {
            if (row.size() < need)
              throw ValueError(detail::concat("row has ", row.size(), " fields, expected ",
                                              table.header.size()));
            rec.name = internal::parse_file_name(row[c_name]);
            const double ef = internal::parse_number(row[c_ef], "EF");
            if (ef < 0 || ef > 100)
              throw ValueError(detail::concat("EF ", ef, " is outside [0, 100]"));
            rec.ef = static_cast<float>(ef);
            if (c_split) rec.split = internal::parse_split(row[*c_split]);
            rec.line = line;
          } catch (const ValueError& e) {
            throw ValueError(detail::concat(table.source, ":", line, ": ", e.what()));
          }
        },
        out.skipped);
    if (ok) out.records.push_back(std::move(rec));
  }
  if (!out.has_split_column) {
    const auto splits =
        seeded_splits(std::ssize(out.records), opt.val_fraction, opt.test_fraction, opt.split_seed);
    for (std::size_t i = 0; i < out.records.size(); ++i) out.records[i].split = splits[i];
  }
  return out;
}

/// Reads root/FileList.csv (or the given .csv file).
inline FileList read_echonet_filelist(const std::filesystem::path& file,
                                      const FileListOptions& opt = {}) {
  if (!std::filesystem::is_regular_file(file))
    throw IoError(detail::concat(file.string(),
                                 ": not found (an EchoNet data set has FileList.csv and Videos/)"));
  return parse_echonet_filelist(read_csv(file), opt);
}

}  // namespace compressor::data
