// A small, strict JSON (RFC 8259) parser and writer: enough for safetensors
// headers and for reports. The parser rejects anything outside the grammar
// (trailing commas, comments, leading zeros, lone surrogates, invalid UTF-8,
// control characters in strings, duplicate object keys, trailing content)
// with a JsonError naming the byte offset, line and column. Nesting deeper
// than ParseOptions::max_depth is rejected, so hostile input cannot exhaust
// the stack. Objects keep their key order.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"

namespace compressor::io::json {

/// Malformed JSON; offset() is the byte position of the problem.
class JsonError : public ValueError {
 public:
  JsonError(const std::string& msg, std::size_t offset) : ValueError(msg), offset_(offset) {}
  std::size_t offset() const { return offset_; }

 private:
  std::size_t offset_;
};

class Value;
using Array = std::vector<Value>;
using Member = std::pair<std::string, Value>;
using Object = std::vector<Member>;

/// A JSON value. Numbers keep their double value and, when the literal is an
/// integer that fits, its exact 64-bit value (safetensors offsets need all 64 bits).
class Value {
 public:
  enum class Kind : std::uint8_t { null, boolean, number, string, array, object };

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : kind_(Kind::boolean), bool_(b) {}
  Value(std::uint64_t u) : kind_(Kind::number), num_(static_cast<double>(u)), u64_(u) {
    int_ = u <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())
               ? IntKind::both
               : IntKind::unsigned_only;
  }
  Value(std::int64_t i)
      : kind_(Kind::number),
        num_(static_cast<double>(i)),
        int_(i < 0 ? IntKind::signed_only : IntKind::both),
        u64_(static_cast<std::uint64_t>(i)) {}
  Value(int i) : Value(static_cast<std::int64_t>(i)) {}
  Value(double d) : kind_(Kind::number), num_(d) {}
  Value(std::string s) : kind_(Kind::string), str_(std::move(s)) {}
  Value(std::string_view s) : Value(std::string(s)) {}
  Value(const char* s) : Value(std::string(s)) {}
  Value(Array a) : kind_(Kind::array), arr_(std::move(a)) {}
  Value(Object o) : kind_(Kind::object), obj_(std::move(o)) {}

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_bool() const { return kind_ == Kind::boolean; }
  bool is_number() const { return kind_ == Kind::number; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_array() const { return kind_ == Kind::array; }
  bool is_object() const { return kind_ == Kind::object; }
  /// True for a number given as an integer literal that fits in uint64.
  bool is_uint64() const {
    return is_number() && int_ != IntKind::none && int_ != IntKind::signed_only;
  }
  /// True for a number given as an integer literal that fits in int64.
  bool is_int64() const {
    return is_number() && (int_ == IntKind::both || int_ == IntKind::signed_only);
  }

  bool as_bool() const { return check(Kind::boolean), bool_; }
  double as_double() const { return check(Kind::number), num_; }
  std::uint64_t as_uint64() const {
    require(is_uint64(), "JSON value is not a non-negative integer");
    return u64_;
  }
  std::int64_t as_int64() const {
    require(is_int64(), "JSON value is not a 64-bit integer");
    return static_cast<std::int64_t>(u64_);
  }
  const std::string& as_string() const { return check(Kind::string), str_; }
  const Array& as_array() const { return check(Kind::array), arr_; }
  Array& as_array() { return check(Kind::array), arr_; }
  const Object& as_object() const { return check(Kind::object), obj_; }
  Object& as_object() { return check(Kind::object), obj_; }

  /// The member named key of an object, or nullptr.
  const Value* find(std::string_view key) const {
    for (const auto& [k, v] : as_object())
      if (k == key) return &v;
    return nullptr;
  }

  static std::string_view kind_name(Kind k) {
    switch (k) {
      case Kind::null:
        return "null";
      case Kind::boolean:
        return "boolean";
      case Kind::number:
        return "number";
      case Kind::string:
        return "string";
      case Kind::array:
        return "array";
      case Kind::object:
        return "object";
    }
    return "?";
  }

 private:
  friend class Parser;
  enum class IntKind : std::uint8_t { none, both, unsigned_only, signed_only };

  void check(Kind k) const {
    require(kind_ == k, "JSON value is of kind ", kind_name(kind_), ", expected ", kind_name(k));
  }

  Kind kind_ = Kind::null;
  bool bool_ = false;
  double num_ = 0.0;
  IntKind int_ = IntKind::none;
  std::uint64_t u64_ = 0;  // two's complement bits of the integer value
  std::string str_;
  Array arr_;
  Object obj_;
};

struct ParseOptions {
  int max_depth = 64;  ///< deepest nesting of arrays and objects accepted
};

/// Recursive-descent parser over a byte string; recursion is bounded by max_depth.
class Parser {
 public:
  explicit Parser(std::string_view text, ParseOptions opt = {}) : s_(text), opt_(opt) {}

  /// Parses the whole text as one value (surrounding whitespace allowed).
  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (pos_ != s_.size()) fail("unexpected content after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(std::string_view what) const {
    std::size_t line = 1, col = 1;
    for (std::size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw JsonError(compressor::detail::concat("JSON: ", what, " at byte ", pos_, " (line ", line,
                                               ", column ", col, ")"),
                    pos_);
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }

  void skip_ws() {
    while (!at_end() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }

  void expect_literal(std::string_view lit) {
    if (s_.substr(pos_, lit.size()) != lit)
      fail(compressor::detail::concat("invalid literal, expected '", lit, "'"));
    pos_ += lit.size();
  }

  Value parse_value(int depth) {
    if (at_end()) fail("unexpected end of input, expected a value");
    switch (peek()) {
      case '{':
        return parse_object(depth + 1);
      case '[':
        return parse_array(depth + 1);
      case '"':
        return Value(parse_string());
      case 't':
        expect_literal("true");
        return Value(true);
      case 'f':
        expect_literal("false");
        return Value(false);
      case 'n':
        expect_literal("null");
        return Value();
      default:
        if (peek() == '-' || (peek() >= '0' && peek() <= '9')) return parse_number();
        fail(compressor::detail::concat("unexpected character '", printable(peek()),
                                        "', expected a value"));
    }
  }

  void enter(int depth) {
    if (depth > opt_.max_depth)
      fail(compressor::detail::concat("nesting deeper than ", opt_.max_depth, " levels"));
  }

  Value parse_object(int depth) {
    enter(depth);
    ++pos_;  // '{'
    Object obj;
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      return Value(std::move(obj));
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a string key in object");
      const std::size_t key_pos = pos_;
      std::string key = parse_string();
      for (const auto& m : obj)
        if (m.first == key) {
          pos_ = key_pos;
          fail(compressor::detail::concat("duplicate key \"", key, "\""));
        }
      skip_ws();
      if (peek() != ':') fail("expected ':' after object key");
      ++pos_;
      skip_ws();
      Value v = parse_value(depth);
      obj.emplace_back(std::move(key), std::move(v));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        return Value(std::move(obj));
      }
      fail("expected ',' or '}' in object");
    }
  }

  Value parse_array(int depth) {
    enter(depth);
    ++pos_;  // '['
    Array arr;
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      return Value(std::move(arr));
    }
    for (;;) {
      skip_ws();
      arr.push_back(parse_value(depth));
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        return Value(std::move(arr));
      }
      fail("expected ',' or ']' in array");
    }
  }

  Value parse_number() {
    const std::size_t begin = pos_;
    const bool negative = peek() == '-';
    if (negative) ++pos_;
    if (peek() == '0') {
      ++pos_;
      if (peek() >= '0' && peek() <= '9') fail("leading zero in number");
    } else if (peek() >= '1' && peek() <= '9') {
      while (peek() >= '0' && peek() <= '9') ++pos_;
    } else {
      fail("expected a digit in number");
    }
    bool integer = true;
    if (peek() == '.') {
      integer = false;
      ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit after '.' in number");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integer = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!(peek() >= '0' && peek() <= '9')) fail("expected a digit in exponent");
      while (peek() >= '0' && peek() <= '9') ++pos_;
    }
    const std::string_view lit = s_.substr(begin, pos_ - begin);
    Value v;
    v.kind_ = Value::Kind::number;
    double d = 0.0;
    const auto rd = std::from_chars(lit.data(), lit.data() + lit.size(), d);
    if (rd.ec != std::errc() || rd.ptr != lit.data() + lit.size()) {
      pos_ = begin;
      fail(rd.ec == std::errc::result_out_of_range ? "number out of range" : "malformed number");
    }
    v.num_ = d;
    if (integer) {
      const std::string_view digits = negative ? lit.substr(1) : lit;
      std::uint64_t mag = 0;
      const auto ri = std::from_chars(digits.data(), digits.data() + digits.size(), mag);
      if (ri.ec == std::errc() && ri.ptr == digits.data() + digits.size()) {
        constexpr std::uint64_t kMinMag = std::uint64_t{1} << 63;  // |INT64_MIN|
        if (!negative) {
          v.u64_ = mag;
          v.int_ = mag <= kMinMag - 1 ? Value::IntKind::both : Value::IntKind::unsigned_only;
        } else if (mag == 0) {
          v.u64_ = 0;
          v.int_ = Value::IntKind::both;
        } else if (mag <= kMinMag) {
          v.u64_ = ~mag + 1;  // two's complement of -mag
          v.int_ = Value::IntKind::signed_only;
        }
      }
    }
    return v;
  }

  static unsigned hex_digit(char c) {
    if (c >= '0' && c <= '9') return static_cast<unsigned>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<unsigned>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return static_cast<unsigned>(c - 'A' + 10);
    return 16;
  }

  unsigned parse_hex4() {
    if (s_.size() - pos_ < 4) fail("truncated \\u escape");
    unsigned u = 0;
    for (int i = 0; i < 4; ++i) {
      const unsigned d = hex_digit(s_[pos_]);
      if (d > 15) fail("invalid hex digit in \\u escape");
      u = u * 16 + d;
      ++pos_;
    }
    return u;
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  /// Copies one well-formed UTF-8 sequence starting at pos_ (first byte >= 0x80).
  void copy_utf8(std::string& out) {
    const auto b0 = static_cast<unsigned char>(s_[pos_]);
    int len = 0;
    std::uint32_t cp = 0, min = 0;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2, cp = b0 & 0x1F, min = 0x80;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3, cp = b0 & 0x0F, min = 0x800;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
      fail("invalid UTF-8 byte in string");
    }
    if (s_.size() - pos_ < static_cast<std::size_t>(len))
      fail("truncated UTF-8 sequence in string");
    for (int i = 1; i < len; ++i) {
      const auto b = static_cast<unsigned char>(s_[pos_ + static_cast<std::size_t>(i)]);
      if ((b & 0xC0) != 0x80) fail("invalid UTF-8 continuation byte in string");
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      fail("invalid UTF-8 sequence in string");
    out.append(s_.substr(pos_, static_cast<std::size_t>(len)));
    pos_ += static_cast<std::size_t>(len);
  }

  std::string parse_string() {
    ++pos_;  // opening quote
    std::string out;
    for (;;) {
      if (at_end()) fail("unterminated string");
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (static_cast<unsigned char>(c) >= 0x80) {
        copy_utf8(out);
        continue;
      }
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (at_end()) fail("unterminated escape in string");
      const char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          std::uint32_t cp = parse_hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(pos_, 2) != "\\u") fail("high surrogate without a low surrogate");
            pos_ += 2;
            const std::uint32_t lo = parse_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate without a low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          fail(compressor::detail::concat("invalid escape '\\", printable(e), "' in string"));
      }
    }
  }

  static std::string printable(char c) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) return std::string(1, c);
    constexpr char kHex[] = "0123456789abcdef";
    return std::string("\\x") + kHex[u >> 4] + kHex[u & 15];
  }

  std::string_view s_;
  ParseOptions opt_;
  std::size_t pos_ = 0;
};

/// Parses text as one JSON document; throws JsonError on malformed input.
inline Value parse(std::string_view text, ParseOptions opt = {}) {
  return Parser(text, opt).parse_document();
}

/// Appends s as a JSON string literal (quotes, escapes; UTF-8 passes through).
inline void append_quoted(std::string& out, std::string_view s) {
  constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20) {
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 15];
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

inline std::string quoted(std::string_view s) {
  std::string out;
  append_quoted(out, s);
  return out;
}

/// Appends the compact serialisation of v. Non-finite numbers have no JSON
/// form and throw ValueError.
inline void append(std::string& out, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::null:
      out += "null";
      return;
    case Value::Kind::boolean:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::number: {
      if (v.is_int64()) {
        out += std::to_string(v.as_int64());
        return;
      }
      if (v.is_uint64()) {
        out += std::to_string(v.as_uint64());
        return;
      }
      const double d = v.as_double();
      require(std::isfinite(d), "JSON cannot represent the number ", d);
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip form
      out.append(buf, r.ptr);
      return;
    }
    case Value::Kind::string:
      append_quoted(out, v.as_string());
      return;
    case Value::Kind::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v.as_array()) {
        if (!first) out += ',';
        first = false;
        append(out, e);
      }
      out += ']';
      return;
    }
    case Value::Kind::object: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.as_object()) {
        if (!first) out += ',';
        first = false;
        append_quoted(out, k);
        out += ':';
        append(out, e);
      }
      out += '}';
      return;
    }
  }
}

inline std::string dump(const Value& v) {
  std::string out;
  append(out, v);
  return out;
}

}  // namespace compressor::io::json
