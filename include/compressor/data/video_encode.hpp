// VideoWriter: writes 8-bit grey or RGB frames to a video file with
// libavcodec/libavformat, by default MJPEG in AVI like EchoNet-Dynamic. The
// file is written under a temporary name and renamed into place by finish(),
// so an interrupted run never leaves a complete-looking clip. Output is
// bit-exact for given frames (no version strings). Part of compressor::video.
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>

#include "compressor/core/error.hpp"
#include "compressor/data/ffmpeg_util.hpp"

namespace compressor::data {

struct VideoWriterOptions {
  int width = 112;
  int height = 112;
  double fps = 50;
  std::string codec = "mjpeg";    ///< an FFmpeg encoder name
  std::string container = "avi";  ///< an FFmpeg muxer name
  int quality = 3;                ///< MJPEG/MPEG quantiser scale, 1 (best) to 31
};

class VideoWriter {
 public:
  VideoWriter(std::filesystem::path file, const VideoWriterOptions& opt)
      : file_(std::move(file)), tmp_(file_.string() + ".tmp"), opt_(opt) {
    const std::string name = file_.string();
    require(
        opt.width >= 1 && opt.height >= 1 && opt.fps > 0 && opt.quality >= 1 && opt.quality <= 31,
        name, ": invalid video writer options (", opt.width, "x", opt.height, ", ", opt.fps,
        " fps, quality ", opt.quality, ")");
    AVFormatContext* raw = nullptr;
    ffmpeg::check(
        avformat_alloc_output_context2(&raw, nullptr, opt.container.c_str(), tmp_.c_str()), name,
        "cannot create a '" + opt.container + "' container");
    out_.reset(raw);
    out_->flags |= AVFMT_FLAG_BITEXACT;
    const AVCodec* enc = avcodec_find_encoder_by_name(opt.codec.c_str());
    if (!enc) throw IoError(detail::concat(name, ": FFmpeg has no encoder '", opt.codec, "'"));
    enc_.reset(avcodec_alloc_context3(enc));
    if (!enc_) throw std::bad_alloc();
    const AVRational rate = av_d2q(opt.fps, 100000);
    enc_->width = opt.width;
    enc_->height = opt.height;
    enc_->time_base = av_inv_q(rate);
    enc_->framerate = rate;
    enc_->pix_fmt = enc->pix_fmts ? enc->pix_fmts[0] : AV_PIX_FMT_YUV420P;
    full_range_ = enc_->pix_fmt == AV_PIX_FMT_YUVJ420P || enc_->pix_fmt == AV_PIX_FMT_YUVJ422P ||
                  enc_->pix_fmt == AV_PIX_FMT_YUVJ444P;
    enc_->color_range = full_range_ ? AVCOL_RANGE_JPEG : AVCOL_RANGE_MPEG;
    enc_->flags |= AV_CODEC_FLAG_QSCALE | AV_CODEC_FLAG_BITEXACT;
    enc_->global_quality = FF_QP2LAMBDA * opt.quality;
    enc_->gop_size = 12;
    enc_->max_b_frames = 0;
    enc_->thread_count = 1;
    if (out_->oformat->flags & AVFMT_GLOBALHEADER) enc_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    ffmpeg::check(avcodec_open2(enc_.get(), enc, nullptr), name,
                  "cannot open encoder '" + opt.codec + "'");
    stream_ = avformat_new_stream(out_.get(), nullptr);
    if (!stream_) throw std::bad_alloc();
    ffmpeg::check(avcodec_parameters_from_context(stream_->codecpar, enc_.get()), name,
                  "cannot set stream parameters");
    stream_->time_base = enc_->time_base;
    stream_->avg_frame_rate = rate;
    ffmpeg::check(avio_open(&out_->pb, tmp_.c_str(), AVIO_FLAG_WRITE), name,
                  "cannot open for writing");
    ffmpeg::check(avformat_write_header(out_.get(), nullptr), name, "cannot write the header");

    frame_ = ffmpeg::make_frame();
    frame_->format = enc_->pix_fmt;
    frame_->width = opt.width;
    frame_->height = opt.height;
    frame_->color_range = enc_->color_range;
    ffmpeg::check(av_frame_get_buffer(frame_.get(), 0), name, "cannot allocate a frame");
    src_ = ffmpeg::make_frame();
    pkt_ = ffmpeg::make_packet();
  }
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;
  /// Without finish(), the partial file is removed.
  ~VideoWriter() {
    if (!finished_) {
      out_.reset();
      std::error_code ec;
      std::filesystem::remove(tmp_, ec);
    }
  }

  /// Appends a frame of height x width grey pixels (row-major).
  void write_gray(std::span<const std::uint8_t> pixels) { write(pixels, AV_PIX_FMT_GRAY8, 1); }
  /// Appends a frame of height x width x 3 RGB pixels (row-major).
  void write_rgb(std::span<const std::uint8_t> pixels) { write(pixels, AV_PIX_FMT_RGB24, 3); }

  /// Flushes the encoder, writes the trailer and renames the file into place.
  void finish() {
    require<IoError>(!finished_, file_.string(), ": VideoWriter::finish called twice");
    encode(nullptr);
    ffmpeg::check(av_write_trailer(out_.get()), file_.string(), "cannot write the trailer");
    out_.reset();  // closes the file
    std::error_code ec;
    std::filesystem::rename(tmp_, file_, ec);
    if (ec) throw IoError(detail::concat(file_.string(), ": cannot rename ", tmp_, " into place"));
    finished_ = true;
  }

  std::int64_t frames_written() const { return frames_; }

 private:
  void write(std::span<const std::uint8_t> pixels, AVPixelFormat format, int channels) {
    const std::string name = file_.string();
    require<IoError>(!finished_, name, ": write after finish");
    require<ShapeError>(static_cast<std::int64_t>(pixels.size()) ==
                            std::int64_t(opt_.width) * opt_.height * channels,
                        name, ": frame has ", pixels.size(), " bytes, expected ", opt_.width, "x",
                        opt_.height, "x", channels);
    src_->format = format;
    src_->width = opt_.width;
    src_->height = opt_.height;
    src_->data[0] = const_cast<std::uint8_t*>(pixels.data());  // read only by swscale
    src_->linesize[0] = opt_.width * channels;
    src_->color_range = AVCOL_RANGE_JPEG;
    ffmpeg::check(av_frame_make_writable(frame_.get()), name, "cannot reuse the frame");
    scaler_.scale(*src_, opt_.width, opt_.height, enc_->pix_fmt, frame_->data, frame_->linesize,
                  full_range_, name);
    frame_->pts = frames_++;
    frame_->quality = enc_->global_quality;
    encode(frame_.get());
  }

  void encode(const AVFrame* frame) {
    const std::string name = file_.string();
    ffmpeg::check(avcodec_send_frame(enc_.get(), frame), name, "cannot encode a frame");
    for (;;) {
      const int r = avcodec_receive_packet(enc_.get(), pkt_.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      ffmpeg::check(r, name, "cannot encode a frame");
      av_packet_rescale_ts(pkt_.get(), enc_->time_base, stream_->time_base);
      pkt_->stream_index = stream_->index;
      ffmpeg::check(av_interleaved_write_frame(out_.get(), pkt_.get()), name,
                    "cannot write a frame");
    }
  }

  std::filesystem::path file_;
  std::string tmp_;
  VideoWriterOptions opt_;
  ffmpeg::OutputPtr out_;
  ffmpeg::CodecPtr enc_;
  AVStream* stream_ = nullptr;
  ffmpeg::FramePtr frame_, src_;
  ffmpeg::PacketPtr pkt_;
  ffmpeg::Scaler scaler_;
  bool full_range_ = false;
  bool finished_ = false;
  std::int64_t frames_ = 0;
};

}  // namespace compressor::data
