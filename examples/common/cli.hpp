// Command-line checks shared by the example binaries (CLI11).
#pragma once

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>
#include <string>

namespace examples {

/// CLI::Range for a floating-point option, with NaN rejected. CLI11's Range
/// fails a value only if `value < min || value > max`, which NaN passes, so
/// `--lr nan` reached the trainer and `--width nan` silently built the
/// narrowest network. Same help text as CLI::Range; the message names the
/// range (CLI11 prefixes the option's name).
inline CLI::Validator float_range(double min_val, double max_val) {
  const CLI::Validator range = CLI::Range(min_val, max_val);
  return CLI::Validator(
      [range](std::string& input) {
        const std::string error = range(input);
        if (!error.empty()) return error;
        if (std::isnan(std::strtod(input.c_str(), nullptr)))
          return "Value " + input + " is not a number; expected " + range.get_description();
        return std::string{};
      },
      range.get_description());
}

}  // namespace examples
