// What a reader does with a bad sample (unreadable image, bad CSV row,
// corrupt video): stop with the error (the default) or skip it with one
// warning, counting what it skipped.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <utility>

#include "compressor/core/error.hpp"

namespace compressor::data {

enum class OnError : std::uint8_t {
  stop,  ///< throw the error (default): nothing trains on a silently shrunk data set
  skip,  ///< drop the sample, warn once, count it
};

/// Receives one warning message (without trailing newline).
using WarningSink = std::function<void(const std::string&)>;

/// Prints "compressor: warning: <msg>" to stderr.
inline void warn_to_stderr(const std::string& msg) {
  std::fprintf(stderr, "compressor: warning: %s\n", msg.c_str());
}

struct ErrorPolicy {
  OnError on_error = OnError::stop;
  WarningSink warn = warn_to_stderr;  ///< empty: skip silently (still counted)

  /// Records a skipped sample: warns with `what` plus " (skipped)" and
  /// increments `skipped`. Call it only under OnError::skip.
  void note_skipped(const char* what, std::int64_t& skipped) const {
    ++skipped;
    if (warn) warn(std::string(what) + " (skipped)");
  }

  /// Runs fn(). Under stop, an Error thrown by fn propagates unchanged; under
  /// skip, it is noted (one warning, one count). Returns true when fn
  /// completed, false when its sample was skipped.
  template <class Fn>
  bool guard(Fn&& fn, std::int64_t& skipped) const {
    try {
      std::forward<Fn>(fn)();
      return true;
    } catch (const Error& e) {
      if (on_error == OnError::stop) throw;
      note_skipped(e.what(), skipped);
    }
    return false;
  }
};

}  // namespace compressor::data
