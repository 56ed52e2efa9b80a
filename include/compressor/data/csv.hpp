// A small RFC 4180 CSV parser: quoted fields (with "" for a quote, and line
// breaks inside quotes), LF, CRLF or CR line ends, an optional UTF-8 byte
// order mark, blank lines ignored. Columns are found by name, so their order
// is free. Syntax errors throw IoError naming the source and line.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/data/file_io.hpp"

namespace compressor::data {

/// A parsed CSV file: the header row, the data rows (each as many fields as
/// it had; ragged rows are kept for the caller to judge) and the line on which
/// each row starts, for error messages.
struct CsvTable {
  std::string source;  ///< file name (or "<memory>") used in messages
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::int64_t> row_lines;  ///< 1-based line of rows[i]

  /// Index of the column whose trimmed name equals `name` ignoring ASCII case.
  std::optional<std::size_t> find_column(std::string_view name) const {
    for (std::size_t i = 0; i < header.size(); ++i)
      if (iequals(trim(header[i]), name)) return i;
    return std::nullopt;
  }

  /// Like find_column, but throws IoError naming the file and the columns it has.
  std::size_t column(std::string_view name) const {
    if (auto i = find_column(name)) return *i;
    std::string have;
    for (const auto& h : header) have += (have.empty() ? "'" : ", '") + h + "'";
    throw IoError(detail::concat(source, ": missing column '", name, "' (columns: ", have, ")"));
  }

  static std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  }
  static bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
             return std::tolower(static_cast<unsigned char>(x)) ==
                    std::tolower(static_cast<unsigned char>(y));
           });
  }
};

/// Parses CSV text. The first non-blank record is the header; an empty input
/// (no header) is an error.
inline CsvTable parse_csv(std::string_view text, std::string_view source = "<memory>",
                          char delimiter = ',') {
  require<ValueError>(delimiter != '"' && delimiter != '\n' && delimiter != '\r',
                      "parse_csv: invalid delimiter");
  CsvTable table;
  table.source = std::string(source);
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);

  std::vector<std::string> record;
  std::string field;
  std::int64_t line = 1, record_line = 1;
  bool record_has_content = false;  // false: the record so far is blank (skipped at its end)
  std::size_t i = 0;
  const std::size_t n = text.size();

  auto end_record = [&] {
    record.push_back(std::move(field));
    field.clear();
    if (record_has_content) {
      table.rows.push_back(std::move(record));
      table.row_lines.push_back(record_line);
    }
    record.clear();
    record_has_content = false;
  };
  auto eat_newline = [&] {  // at text[i] == '\r' or '\n'
    if (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
    ++i;
    ++line;
  };

  while (i < n) {
    if (record.empty() && field.empty() && !record_has_content) record_line = line;
    const char c = text[i];
    if (c == '"') {
      if (!field.empty())
        throw IoError(detail::concat(table.source, ":", line,
                                     ": quote inside an unquoted field (quote the whole field "
                                     "and double the quote)"));
      const std::int64_t open_line = line;
      ++i;
      record_has_content = true;
      for (;;) {
        if (i >= n)
          throw IoError(detail::concat(table.source, ":", open_line,
                                       ": quoted field is not closed before the end of the file"));
        const char q = text[i];
        if (q == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (q == '\r' || q == '\n') {
          const bool crlf = q == '\r' && i + 1 < n && text[i + 1] == '\n';
          field += crlf ? "\r\n" : std::string(1, q);
          eat_newline();
          continue;
        }
        field += q;
        ++i;
      }
      if (i < n && text[i] != delimiter && text[i] != '\r' && text[i] != '\n')
        throw IoError(detail::concat(table.source, ":", line, ": unexpected character '", text[i],
                                     "' after a closing quote (expected '", delimiter,
                                     "' or a line end)"));
    } else if (c == delimiter) {
      record.push_back(std::move(field));
      field.clear();
      record_has_content = true;
      ++i;
    } else if (c == '\r' || c == '\n') {
      end_record();
      eat_newline();
    } else {
      field += c;
      if (c != ' ' && c != '\t') record_has_content = true;  // a line of blanks is blank
      ++i;
    }
  }
  if (!record.empty() || !field.empty() || record_has_content) end_record();

  if (table.rows.empty())
    throw IoError(detail::concat(table.source, ": empty CSV file, expected a header line"));
  table.header = std::move(table.rows.front());
  table.rows.erase(table.rows.begin());
  table.row_lines.erase(table.row_lines.begin());
  return table;
}

/// Reads and parses a CSV file.
inline CsvTable read_csv(const std::filesystem::path& file, char delimiter = ',') {
  return parse_csv(read_file(file), file.string(), delimiter);
}

}  // namespace compressor::data
