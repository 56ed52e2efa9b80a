// EchoNet: an EchoNet-Dynamic-layout data set (root/FileList.csv and
// root/Videos/<FileName>.avi) as one Dataset per split, each sample a clip
// (T, H, W, 3) of floats (pixels / 255, optionally normalised per channel)
// with its EF (%) as the regression target. Part of compressor::video.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/data/augment.hpp"
#include "compressor/data/clip_cache.hpp"
#include "compressor/data/dataset.hpp"
#include "compressor/data/echonet_filelist.hpp"
#include "compressor/data/error_policy.hpp"
#include "compressor/data/loader.hpp"
#include "compressor/data/normalize.hpp"
#include "compressor/data/video_decode.hpp"

namespace compressor::data {

struct EchoNetOptions {
  ClipSpec clip;                ///< frames sampled per clip and their size
  std::int64_t max_clips = 0;   ///< per split, the first N rows of FileList.csv; 0 = all
  Normalization normalization;  ///< per-channel mean/std on [0, 1]; empty = pixels / 255
  double cache_mb = 0;          ///< decoded clips kept in memory (8-bit), all splits together
  /// Bad rows, missing or unreadable videos (when the data set is opened) and
  /// clips that fail to decode (in loaders made by loader()): stop or skip.
  ErrorPolicy errors;
  bool probe_videos = true;  ///< open every listed video's header when opening the data set
  /// Without a Split column: VAL and TEST fractions and the seed of the split.
  double val_fraction = 0.125, test_fraction = 0.125;
  std::uint64_t split_seed = 0;
  /// TRAIN split only: sample the frames at a random phase of each of the T
  /// equal parts of the clip (other frames every epoch) instead of their
  /// centres. Such clips are decoded every time, not cached.
  bool train_temporal_jitter = false;
  /// TRAIN split only: a random shift and mirror, the same for every frame.
  Augmentation train_augmentation = Augmentation::none();
};

/// The clips of one split. Thread-safe; decoding happens in get().
class EchoNetClips final : public Dataset {
 public:
  EchoNetClips(std::filesystem::path videos, std::vector<EchoRecord> records,
               std::vector<std::int64_t> keys, ClipSpec spec, const Normalization& norm,
               std::shared_ptr<ClipCache> cache, bool temporal_jitter = false,
               Augmentation aug = Augmentation::none())
      : videos_(std::move(videos)),
        records_(std::move(records)),
        keys_(std::move(keys)),
        spec_(spec),
        px_(norm, 3),
        cache_(std::move(cache)),
        jitter_(temporal_jitter),
        aug_(aug) {}

  std::int64_t size() const override { return std::ssize(records_); }
  Shape sample_shape() const override { return spec_.shape(); }
  TargetKind target_kind() const override { return TargetKind::value; }

  Target get(std::int64_t i, TensorView<float> out, Rng& rng) const override {
    thread_local Tensor<std::uint8_t> clip;
    if (jitter_)
      decode_clip(path(i), spec_, clip, rng.uniform());
    else
      decode(i, clip);
    if (aug_.enabled())
      augment_clip(clip.view(), out, aug_, px_, rng);
    else
      normalize_pixels(clip.view(), out, px_);
    return Target{-1, records_.at(static_cast<std::size_t>(i)).ef};
  }

  /// The 8-bit clip of sample i (T, H, W, 3), from the cache when there.
  void decode(std::int64_t i, Tensor<std::uint8_t>& clip) const {
    const auto k = static_cast<std::size_t>(i);
    if (cache_ && cache_->get(keys_.at(k), clip)) return;
    decode_clip(path(i), spec_, clip);
    if (cache_) cache_->put(keys_[k], clip);
  }

  std::string describe(std::int64_t i) const override { return path(i).string(); }
  std::filesystem::path path(std::int64_t i) const {
    return videos_ / (records_.at(static_cast<std::size_t>(i)).name + ".avi");
  }
  const std::vector<EchoRecord>& records() const { return records_; }
  const ClipSpec& clip_spec() const { return spec_; }

 private:
  std::filesystem::path videos_;
  std::vector<EchoRecord> records_;
  std::vector<std::int64_t> keys_;  // cache keys: the row's index in FileList.csv
  ClipSpec spec_;
  PixelAffine px_;
  std::shared_ptr<ClipCache> cache_;
  bool jitter_;
  Augmentation aug_;
};

class EchoNet {
 public:
  /// Reads root/FileList.csv and checks that every listed video exists (and,
  /// with probe_videos, that its header reads and it has frames).
  explicit EchoNet(std::filesystem::path root, EchoNetOptions opt = {})
      : root_(std::move(root)), opt_(std::move(opt)) {
    opt_.clip.check();
    opt_.normalization.check(3, "EchoNetOptions::normalization");
    require(opt_.max_clips >= 0, "EchoNetOptions: max_clips must be >= 0");
    require(opt_.cache_mb >= 0, "EchoNetOptions: cache_mb must be >= 0");
    FileListOptions flo;
    flo.val_fraction = opt_.val_fraction;
    flo.test_fraction = opt_.test_fraction;
    flo.split_seed = opt_.split_seed;
    flo.errors = opt_.errors;
    FileList list = read_echonet_filelist(root_ / "FileList.csv", flo);
    skipped_ = list.skipped;
    has_split_column_ = list.has_split_column;
    if (opt_.cache_mb > 0)
      cache_ = std::make_shared<ClipCache>(static_cast<std::int64_t>(opt_.cache_mb * 1048576.0));

    const auto videos = root_ / "Videos";
    std::array<std::vector<EchoRecord>, 3> recs;
    std::array<std::vector<std::int64_t>, 3> keys;
    for (std::size_t r = 0; r < list.records.size(); ++r) {
      auto& rec = list.records[r];
      const auto s = static_cast<std::size_t>(rec.split);
      if (opt_.max_clips > 0 && std::ssize(recs[s]) >= opt_.max_clips) continue;
      const auto file = videos / (rec.name + ".avi");
      const bool ok = opt_.errors.guard([&] { check_video(file, rec); }, skipped_);
      if (!ok) continue;
      recs[s].push_back(std::move(rec));
      keys[s].push_back(static_cast<std::int64_t>(r));
    }
    for (std::size_t s = 0; s < 3; ++s) {
      const bool train = s == static_cast<std::size_t>(EchoSplit::train);
      splits_[s] = std::make_shared<EchoNetClips>(
          videos, std::move(recs[s]), std::move(keys[s]), opt_.clip, opt_.normalization, cache_,
          train && opt_.train_temporal_jitter,
          train ? opt_.train_augmentation : Augmentation::none());
    }
  }

  /// The clips of a split, as a Dataset.
  std::shared_ptr<const EchoNetClips> dataset(EchoSplit s) const {
    return splits_[static_cast<std::size_t>(s)];
  }
  const std::vector<EchoRecord>& records(EchoSplit s) const { return dataset(s)->records(); }

  /// A loader over a split: batches of clips (N, T, H, W, 3) in Batch::inputs
  /// and EF in Batch::targets (N, 1). Clips that fail to decode follow
  /// EchoNetOptions::errors (it replaces lo.errors).
  std::unique_ptr<DataLoader> loader(EchoSplit s, LoaderOptions lo) const {
    lo.errors = opt_.errors;
    return std::make_unique<DataLoader>(dataset(s), std::move(lo));
  }

  /// Rows and videos skipped when opening (OnError::skip).
  std::int64_t skipped() const { return skipped_; }
  bool has_split_column() const { return has_split_column_; }
  const std::filesystem::path& root() const { return root_; }
  const EchoNetOptions& options() const { return opt_; }
  /// The shared clip cache (null when cache_mb is 0).
  const std::shared_ptr<ClipCache>& cache() const { return cache_; }

 private:
  void check_video(const std::filesystem::path& file, const EchoRecord& rec) const {
    const std::string where = detail::concat(root_.string(), "/FileList.csv:", rec.line, ": ");
    if (!std::filesystem::is_regular_file(file))
      throw IoError(detail::concat(where, "video ", file.string(), " not found"));
    if (!opt_.probe_videos) return;
    const VideoInfo info = probe_video(file);
    if (info.frames == 0 && info.container == "avi")
      throw IoError(detail::concat(file.string(), ": video contains no frames"));
  }

  std::filesystem::path root_;
  EchoNetOptions opt_;
  std::int64_t skipped_ = 0;
  bool has_split_column_ = false;
  std::shared_ptr<ClipCache> cache_;
  std::array<std::shared_ptr<EchoNetClips>, 3> splits_;
};

}  // namespace compressor::data
