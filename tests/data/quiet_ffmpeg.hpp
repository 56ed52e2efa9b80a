// Silences FFmpeg's own log lines in the video tests: for the corrupt files
// they feed it they would only clutter the output, and our exceptions carry
// the diagnosis. Included once per translation unit (also in unity builds).
#pragma once

extern "C" {
#include <libavutil/log.h>
}

namespace compressor::testing {
namespace {
[[maybe_unused]] const int kQuietFfmpeg = (av_log_set_level(AV_LOG_FATAL), 0);
}  // namespace
}  // namespace compressor::testing
