// Fuzzes the CSV parser and the EchoNet FileList reader on arbitrary bytes.
// Errors must be compressor::Error exceptions; a parsed table must survive a
// write-and-parse round trip unchanged.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "compressor/data/csv.hpp"
#include "compressor/data/echonet_filelist.hpp"

namespace {

std::string write_csv(const compressor::data::CsvTable& t) {
  std::string out;
  auto record = [&](const std::vector<std::string>& fields) {
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (i) out += ',';
      out += '"';
      for (char c : fields[i]) out += c == '"' ? std::string("\"\"") : std::string(1, c);
      out += '"';
    }
    out += '\n';
  };
  record(t.header);
  for (const auto& r : t.rows) record(r);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace compressor::data;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CsvTable table;
  try {
    table = parse_csv(text, "fuzz.csv");
  } catch (const compressor::Error&) {
    return 0;
  }
  if (table.rows.size() != table.row_lines.size()) __builtin_trap();
  for (std::size_t i = 1; i < table.row_lines.size(); ++i)
    if (table.row_lines[i] <= table.row_lines[i - 1]) __builtin_trap();

  const CsvTable again = parse_csv(write_csv(table), "again.csv");
  if (again.header != table.header || again.rows != table.rows) __builtin_trap();

  FileListOptions opt;
  opt.errors.on_error = OnError::skip;
  opt.errors.warn = nullptr;
  try {
    const FileList list = parse_echonet_filelist(table, opt);
    if (std::ssize(list.records) + list.skipped != std::ssize(table.rows)) __builtin_trap();
    for (const auto& r : list.records)
      if (!(r.ef >= 0.f && r.ef <= 100.f) || r.name.empty()) __builtin_trap();
  } catch (const compressor::Error&) {  // missing columns
  }
  return 0;
}
