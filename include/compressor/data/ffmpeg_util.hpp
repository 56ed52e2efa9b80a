// Small RAII owners and error helpers around the FFmpeg C API, shared by the
// video decoder and writer. Part of the compressor::video target: include it
// only where FFmpeg is wanted.
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>

#include "compressor/core/error.hpp"

namespace compressor::data::ffmpeg {

/// FFmpeg's text for an AVERROR code.
inline std::string error_text(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  if (av_strerror(code, buf, sizeof buf) < 0) return "error " + std::to_string(code);
  return buf;
}

/// Throws IoError "<file>: <what> (<ffmpeg's text>)" when code < 0.
inline void check(int code, std::string_view file, std::string_view what) {
  if (code < 0) throw IoError(detail::concat(file, ": ", what, " (", error_text(code), ")"));
}

struct InputCloser {
  void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
struct OutputFreer {  // closes the output file (if open) and frees the context
  void operator()(AVFormatContext* p) const {
    if (p->pb && !(p->oformat->flags & AVFMT_NOFILE)) avio_closep(&p->pb);
    avformat_free_context(p);
  }
};
struct CodecFreer {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct FrameFreer {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct PacketFreer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsFreer {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};

using InputPtr = std::unique_ptr<AVFormatContext, InputCloser>;
using OutputPtr = std::unique_ptr<AVFormatContext, OutputFreer>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecFreer>;
using FramePtr = std::unique_ptr<AVFrame, FrameFreer>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFreer>;
using SwsPtr = std::unique_ptr<SwsContext, SwsFreer>;

inline FramePtr make_frame() {
  FramePtr f(av_frame_alloc());
  if (!f) throw std::bad_alloc();
  return f;
}
inline PacketPtr make_packet() {
  PacketPtr p(av_packet_alloc());
  if (!p) throw std::bad_alloc();
  return p;
}

/// The non-deprecated pixel format and colour range of a decoded frame:
/// the "J" (JPEG, full range) YUV formats become plain YUV with full range,
/// so swscale converts them without its deprecation warning.
inline AVPixelFormat plain_format(int format, bool& full_range) {
  switch (static_cast<AVPixelFormat>(format)) {
    case AV_PIX_FMT_YUVJ420P:
      full_range = true;
      return AV_PIX_FMT_YUV420P;
    case AV_PIX_FMT_YUVJ422P:
      full_range = true;
      return AV_PIX_FMT_YUV422P;
    case AV_PIX_FMT_YUVJ444P:
      full_range = true;
      return AV_PIX_FMT_YUV444P;
    case AV_PIX_FMT_YUVJ440P:
      full_range = true;
      return AV_PIX_FMT_YUV440P;
    case AV_PIX_FMT_YUVJ411P:
      full_range = true;
      return AV_PIX_FMT_YUV411P;
    default:
      return static_cast<AVPixelFormat>(format);
  }
}

/// A swscale context kept across frames; rebuilt only when the source or
/// destination size or format changes. Area averaging when shrinking.
class Scaler {
 public:
  /// Converts `src` (an AVFrame's planes) to dst_w x dst_h in dst_format.
  /// Full-range ("J") YUV sources, RGB and GRAY are treated as full range;
  /// dst_full_range chooses the range of a YUV destination.
  void scale(const AVFrame& src, int dst_w, int dst_h, AVPixelFormat dst_format,
             std::uint8_t* const dst_planes[4], const int dst_strides[4], bool dst_full_range,
             std::string_view file) {
    bool full = src.color_range == AVCOL_RANGE_JPEG || src.format == AV_PIX_FMT_GRAY8;
    const AVPixelFormat fmt = plain_format(src.format, full);
    bool dst_full = dst_full_range;
    const AVPixelFormat dfmt = plain_format(dst_format, dst_full);
    if (!ctx_ || src.width != sw_ || src.height != sh_ || fmt != sf_ || full != full_ ||
        dst_w != dw_ || dst_h != dh_ || dfmt != df_ || dst_full != dfull_) {
      ctx_.reset(sws_getContext(src.width, src.height, fmt, dst_w, dst_h, dfmt, SWS_AREA, nullptr,
                                nullptr, nullptr));
      if (!ctx_)
        throw IoError(detail::concat(file, ": cannot convert ", src.width, "x", src.height, " ",
                                     pix_name(fmt), " frames to ", dst_w, "x", dst_h, " ",
                                     pix_name(dfmt)));
      const int* coefs = sws_getCoefficients(SWS_CS_DEFAULT);
      sws_setColorspaceDetails(ctx_.get(), coefs, full ? 1 : 0, coefs, dst_full ? 1 : 0, 0, 1 << 16,
                               1 << 16);
      sw_ = src.width, sh_ = src.height, sf_ = fmt, full_ = full;
      dw_ = dst_w, dh_ = dst_h, df_ = dfmt, dfull_ = dst_full;
    }
    const int rows =
        sws_scale(ctx_.get(), src.data, src.linesize, 0, src.height, dst_planes, dst_strides);
    if (rows != dst_h)
      throw IoError(
          detail::concat(file, ": frame conversion failed (", rows, " of ", dst_h, " rows)"));
  }

  /// Converts `src` to packed RGB24 (dst_w x dst_h, 3 * dst_w bytes a row).
  void to_rgb(const AVFrame& src, int dst_w, int dst_h, std::uint8_t* dst, std::string_view file) {
    std::uint8_t* const planes[4] = {dst, nullptr, nullptr, nullptr};
    const int strides[4] = {3 * dst_w, 0, 0, 0};
    scale(src, dst_w, dst_h, AV_PIX_FMT_RGB24, planes, strides, true, file);
  }

 private:
  static const char* pix_name(AVPixelFormat f) {
    const char* n = av_get_pix_fmt_name(f);
    return n ? n : "unknown pixel format";
  }

  SwsPtr ctx_;
  int sw_ = 0, sh_ = 0, dw_ = 0, dh_ = 0;
  AVPixelFormat sf_ = AV_PIX_FMT_NONE, df_ = AV_PIX_FMT_NONE;
  bool full_ = false, dfull_ = false;
};

}  // namespace compressor::data::ffmpeg
