// Exceptions thrown by compressor. Every message names the object (file, field,
// tensor or shape) and what was expected, so a user can act on it.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace compressor {

/// Base class of every exception the library throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Two shapes that had to agree did not (the message names both).
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A file could not be read or written, or its content is malformed.
class IoError : public Error {
 public:
  using Error::Error;
};

/// A value (argument, label, field) is outside what the callee accepts.
class ValueError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

/// Throws E with the streamed arguments as message when cond is false.
template <class E = ValueError, class... Args>
inline void require(bool cond, Args&&... args) {
  if (!cond) throw E(detail::concat(std::forward<Args>(args)...));
}

}  // namespace compressor
