// Video clips with FFmpeg: one demuxing and decoding pass per file (no seek),
// T frames sampled uniformly over the clip (frames repeat when the clip is
// shorter), converted to RGB and resized with libswscale into an 8-bit
// (T, H, W, 3) tensor. Any container and codec FFmpeg reads works; for
// intra-only codecs (MJPEG, the EchoNet format) only the sampled frames are
// decoded. Part of the compressor::video target.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/tensor.hpp"
#include "compressor/data/ffmpeg_util.hpp"

namespace compressor::data {

/// The clip a video is turned into: `frames` frames of height x width RGB.
struct ClipSpec {
  std::int64_t frames = 32;
  std::int64_t height = 112;
  std::int64_t width = 112;

  Shape shape() const { return Shape{frames, height, width, 3}; }
  void check() const {
    require(frames >= 1 && height >= 1 && width >= 1 && height <= 8192 && width <= 8192,
            "ClipSpec: frames, height and width must be >= 1 (and sizes <= 8192), got ", frames,
            ", ", height, ", ", width);
  }
};

/// What the container says about its video stream.
struct VideoInfo {
  int width = 0;
  int height = 0;
  double fps = 0;
  std::int64_t frames = 0;  ///< from the header (0 = not stated); after decoding, frames read
  std::string codec;
  std::string container;  ///< FFmpeg's demuxer name, e.g. "avi"
};

/// Frame indices of `t` samples spread uniformly over `n` frames: in each of
/// t equal parts the frame at `phase` (in [0, 1)) of the part,
/// floor((k + phase) * n / t); phase 0.5 takes the centres. Repeats when n < t.
/// A random phase per epoch (temporal jitter) shows training other frames.
inline std::vector<std::int64_t> sample_indices(std::int64_t n, std::int64_t t,
                                                double phase = 0.5) {
  require(n >= 1 && t >= 1, "sample_indices: need n >= 1 and t >= 1, got ", n, ", ", t);
  require(phase >= 0.0 && phase < 1.0, "sample_indices: phase must be in [0, 1), got ", phase);
  std::vector<std::int64_t> idx(static_cast<std::size_t>(t));
  if (phase == 0.5) {  // exact integer form of the centres
    for (std::int64_t k = 0; k < t; ++k) idx[std::size_t(k)] = ((2 * k + 1) * n) / (2 * t);
    return idx;
  }
  for (std::int64_t k = 0; k < t; ++k)
    idx[std::size_t(k)] = std::min<std::int64_t>(
        n - 1, static_cast<std::int64_t>((static_cast<double>(k) + phase) * static_cast<double>(n) /
                                         static_cast<double>(t)));
  return idx;
}

namespace internal {

struct OpenVideo {
  ffmpeg::InputPtr fmt;
  int stream = -1;
  VideoInfo info;
};

inline OpenVideo open_video(const std::filesystem::path& file) {
  const std::string name = file.string();
  if (!std::filesystem::is_regular_file(file))
    throw IoError(detail::concat(name, ": video file not found"));
  OpenVideo v;
  AVFormatContext* raw = nullptr;
  ffmpeg::check(avformat_open_input(&raw, name.c_str(), nullptr, nullptr), name,
                "cannot open video (not a media file FFmpeg reads?)");
  v.fmt.reset(raw);
  // AVI and most containers state the codec and size in their header; probe
  // the stream (which decodes a few frames) only when they do not.
  int best = av_find_best_stream(raw, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  if (best < 0 || raw->streams[best]->codecpar->codec_id == AV_CODEC_ID_NONE ||
      raw->streams[best]->codecpar->width <= 0) {
    ffmpeg::check(avformat_find_stream_info(raw, nullptr), name, "cannot read stream information");
    best = av_find_best_stream(raw, AVMEDIA_TYPE_VIDEO, -1, -1, nullptr, 0);
  }
  if (best < 0) throw IoError(detail::concat(name, ": no video stream"));
  v.stream = best;
  const AVStream* st = raw->streams[best];
  v.info.width = st->codecpar->width;
  v.info.height = st->codecpar->height;
  v.info.frames = std::max<std::int64_t>(st->nb_frames, 0);
  const AVRational rate = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
  v.info.fps = rate.den > 0 ? av_q2d(rate) : 0.0;
  v.info.codec = avcodec_get_name(st->codecpar->codec_id);
  v.info.container = raw->iformat->name;
  if (v.info.width <= 0 || v.info.height <= 0)
    throw IoError(detail::concat(name, ": video stream has no frame size (", v.info.width, "x",
                                 v.info.height, ")"));
  return v;
}

}  // namespace internal

/// Reads the header of a video: size, frame rate, frame count, codec.
/// Throws IoError naming the file when it is missing or not a video.
inline VideoInfo probe_video(const std::filesystem::path& file) {
  return internal::open_video(file).info;
}

/// Decodes `file` once and writes spec.frames uniformly sampled frames
/// (sample_indices with `phase`), as RGB resized to spec.height x
/// spec.width, into out (resized to spec.shape()). Returns the stream's info with `frames` = frames
/// read. Throws IoError naming the file for a missing, corrupt, truncated (fewer frames than its
/// header states) or empty video.
inline VideoInfo decode_clip(const std::filesystem::path& file, const ClipSpec& spec,
                             Tensor<std::uint8_t>& out, double phase = 0.5) {
  spec.check();
  const std::string name = file.string();
  internal::OpenVideo v = internal::open_video(file);
  AVStream* st = v.fmt->streams[v.stream];
  const AVCodec* codec = avcodec_find_decoder(st->codecpar->codec_id);
  if (!codec) throw IoError(detail::concat(name, ": no decoder for codec ", v.info.codec));
  ffmpeg::CodecPtr dec(avcodec_alloc_context3(codec));
  if (!dec) throw std::bad_alloc();
  ffmpeg::check(avcodec_parameters_to_context(dec.get(), st->codecpar), name,
                "cannot set up the decoder");
  dec->thread_count = 1;  // clips are decoded in parallel, one per thread
  ffmpeg::check(avcodec_open2(dec.get(), codec, nullptr), name, "cannot open the decoder");
  const AVCodecDescriptor* desc = avcodec_descriptor_get(st->codecpar->codec_id);
  const std::int64_t known = v.info.frames;
  // Intra-only codecs: a packet is a frame, so unsampled frames need no decoding.
  const bool skip_unsampled = known > 0 && desc && (desc->props & AV_CODEC_PROP_INTRA_ONLY);

  const auto T = spec.frames;
  const int H = static_cast<int>(spec.height), W = static_cast<int>(spec.width);
  const std::int64_t frame_bytes = std::int64_t(H) * W * 3;
  out.resize(spec.shape());
  std::vector<std::int64_t> idx;
  if (known > 0) idx = sample_indices(known, T, phase);
  std::vector<std::uint8_t> all;  // every frame, when the count is not known up front
  std::int64_t next_t = 0;        // next output slot
  std::int64_t f = 0;             // frames read so far
  ffmpeg::Scaler scaler;

  auto wanted = [&] { return known > 0 && next_t < T && idx[std::size_t(next_t)] == f; };
  // Writes `frame` as RGB into dst; a null frame (an empty packet, which
  // repeats the previous frame) copies prev, the last frame stored (black
  // when there is none).
  auto put = [&](const AVFrame* frame, std::uint8_t* dst, const std::uint8_t* prev) {
    if (frame)
      scaler.to_rgb(*frame, W, H, dst, name);
    else if (prev)
      std::memcpy(dst, prev, std::size_t(frame_bytes));
    else
      std::memset(dst, 0, std::size_t(frame_bytes));
  };
  // Stores frame f in every output slot that samples it (or, with the
  // count unknown, appends it to `all`).
  auto deliver = [&](const AVFrame* frame) {
    if (frame && (frame->decode_error_flags != 0 || (frame->flags & AV_FRAME_FLAG_CORRUPT)))
      throw IoError(detail::concat(name, ": corrupt video data in frame ", f));
    if (known > 0) {
      for (const std::int64_t first = next_t; next_t < T && idx[std::size_t(next_t)] == f;
           ++next_t) {
        std::uint8_t* dst = out.data() + next_t * frame_bytes;
        if (next_t > first)
          std::memcpy(dst, dst - frame_bytes, std::size_t(frame_bytes));
        else
          put(frame, dst, next_t > 0 ? dst - frame_bytes : nullptr);
      }
    } else {
      all.resize(all.size() + std::size_t(frame_bytes));
      std::uint8_t* dst = all.data() + all.size() - std::size_t(frame_bytes);
      put(frame, dst, f > 0 ? dst - frame_bytes : nullptr);
    }
    ++f;
  };
  ffmpeg::FramePtr frame = ffmpeg::make_frame();
  auto receive_all = [&] {
    for (;;) {
      const int r = avcodec_receive_frame(dec.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      ffmpeg::check(r, name, detail::concat("corrupt video data in frame ", f));
      deliver(frame.get());
      av_frame_unref(frame.get());
    }
  };

  ffmpeg::PacketPtr pkt = ffmpeg::make_packet();
  for (;;) {
    const int r = av_read_frame(v.fmt.get(), pkt.get());
    if (r == AVERROR_EOF) break;
    ffmpeg::check(r, name, detail::concat("read error after frame ", f));
    if (pkt->stream_index == v.stream) {
      if (pkt->size == 0) {
        deliver(nullptr);  // an empty chunk repeats the previous frame
      } else if (skip_unsampled && !wanted()) {
        ++f;
      } else {
        ffmpeg::check(avcodec_send_packet(dec.get(), pkt.get()), name,
                      detail::concat("corrupt video data in frame ", f));
        const std::int64_t before = f;
        receive_all();
        if (skip_unsampled && f == before)
          throw IoError(detail::concat(name, ": frame ", f, " could not be decoded"));
      }
    }
    av_packet_unref(pkt.get());
  }
  if (!skip_unsampled) {
    ffmpeg::check(avcodec_send_packet(dec.get(), nullptr), name, "cannot flush the decoder");
    receive_all();
  }

  if (f == 0) throw IoError(detail::concat(name, ": video contains no frames"));
  if (known > 0 && f < known)
    throw IoError(detail::concat(name, ": truncated or corrupt video: the header states ", known,
                                 " frames, only ", f, " could be read"));
  if (known == 0) {
    idx = sample_indices(f, T, phase);
    for (std::int64_t t = 0; t < T; ++t)
      std::memcpy(out.data() + t * frame_bytes, all.data() + idx[std::size_t(t)] * frame_bytes,
                  std::size_t(frame_bytes));
  }
  v.info.frames = f;
  return v.info;
}

}  // namespace compressor::data
