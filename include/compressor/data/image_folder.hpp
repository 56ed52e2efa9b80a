// Image-folder data set: root/<class>/<image>.png|jpg|jpeg|bmp, classes
// sorted by folder name (label = index), images sorted by file name, decoded
// with stb_image into 8-bit NHWC. Needs the compressor::image target (stb).
// All images must have the size of the first one (or the size requested).
#pragma once

#include <stb_image.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "compressor/core/error.hpp"
#include "compressor/core/threading.hpp"
#include "compressor/data/error_policy.hpp"
#include "compressor/data/file_io.hpp"
#include "compressor/data/image_set.hpp"

namespace compressor::data {

struct ImageFolderOptions {
  int channels = 3;                ///< 1 (grey) or 3 (RGB); stb converts
  std::int64_t height = 0;         ///< expected size; 0 = that of the first image
  std::int64_t width = 0;          ///< expected size; 0 = that of the first image
  std::int64_t max_per_class = 0;  ///< first N files of each class (by name); 0 = all
  ErrorPolicy errors;              ///< unreadable or wrongly sized image: stop or skip
};

namespace internal {

inline bool is_image_file(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

inline std::vector<std::filesystem::path> sorted_entries(const std::filesystem::path& dir,
                                                         bool directories) {
  std::vector<std::filesystem::path> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const auto name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    if (directories ? e.is_directory() : (e.is_regular_file() && is_image_file(e.path())))
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// Decodes one image file into `out` (h*w*channels bytes); IoError naming the
/// file when it cannot be read, decoded, or has another size.
inline void decode_image_file(const std::filesystem::path& file, int channels, std::int64_t h,
                              std::int64_t w, std::uint8_t* out) {
  const std::string bytes = read_file(file);
  int iw = 0, ih = 0, ic = 0;
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(std::min<std::size_t>(bytes.size(), 0x7fffffff));
  stbi_uc* px = stbi_load_from_memory(data, len, &iw, &ih, &ic, channels);
  if (!px)
    throw IoError(
        detail::concat(file.string(), ": cannot decode image (", stbi_failure_reason(), ")"));
  if (ih != h || iw != w) {
    stbi_image_free(px);
    throw IoError(detail::concat(file.string(), ": image is ", iw, "x", ih, ", expected ", w, "x",
                                 h, " (all images of a folder data set have one size)"));
  }
  std::copy_n(px, h * w * channels, out);
  stbi_image_free(px);
}

}  // namespace internal

/// Loads root/<class>/<image> into memory. Errors name the file; under
/// OnError::skip a bad image is dropped with a warning and counted.
inline ImageSet load_image_folder(const std::filesystem::path& root,
                                  const ImageFolderOptions& opt = {}) {
  require(opt.channels == 1 || opt.channels == 3,
          "load_image_folder: channels must be 1 or 3, got ", opt.channels);
  require<IoError>(std::filesystem::is_directory(root), root.string(),
                   ": image folder not found (expected root/<class>/<image files>)");
  ImageSet set;
  std::vector<std::filesystem::path> files;
  std::vector<std::int32_t> labels;
  for (const auto& class_dir : internal::sorted_entries(root, true)) {
    auto images = internal::sorted_entries(class_dir, false);
    if (opt.max_per_class > 0 && std::ssize(images) > opt.max_per_class)
      images.resize(static_cast<std::size_t>(opt.max_per_class));
    for (auto& f : images) {
      files.push_back(std::move(f));
      labels.push_back(static_cast<std::int32_t>(set.classes.size()));
    }
    set.classes.push_back(class_dir.filename().string());
  }
  require<IoError>(!files.empty(), root.string(),
                   ": no images found (expected root/<class>/*.png|jpg|jpeg|bmp)");

  // The size: requested, or that of the first image whose header reads.
  std::int64_t h = opt.height, w = opt.width;
  for (std::size_t i = 0; (h <= 0 || w <= 0) && i < files.size(); ++i) {
    const std::string bytes = read_file(files[i]);
    int iw = 0, ih = 0, ic = 0;
    const int len = static_cast<int>(std::min<std::size_t>(bytes.size(), 0x7fffffff));
    if (stbi_info_from_memory(reinterpret_cast<const stbi_uc*>(bytes.data()), len, &iw, &ih, &ic)) {
      h = ih;
      w = iw;
    }
  }
  const auto n = static_cast<std::int64_t>(files.size());
  if (h <= 0 || w <= 0) {  // no header read: report the first file's error
    std::uint8_t dummy = 0;
    internal::decode_image_file(files.front(), opt.channels, 1, 1, &dummy);
  }
  set.images.resize(Shape{n, h, w, opt.channels});
  set.labels.resize(Shape{n});
  std::vector<std::string> errors(files.size());
  const std::int64_t stride = h * w * opt.channels;
  parallel_for(
      n,
      [&](std::int64_t begin, std::int64_t end) {
        for (std::int64_t i = begin; i < end; ++i) {
          try {
            internal::decode_image_file(files[std::size_t(i)], opt.channels, h, w,
                                        set.images.data() + i * stride);
          } catch (const Error& e) {
            errors[std::size_t(i)] = e.what();
          }
        }
      },
      64);

  std::int64_t kept = 0;
  for (std::int64_t i = 0; i < n; ++i) {  // in file order, for stable warnings
    if (!errors[std::size_t(i)].empty()) {
      if (opt.errors.on_error == OnError::stop) throw IoError(errors[std::size_t(i)]);
      opt.errors.note_skipped(errors[std::size_t(i)].c_str(), set.skipped);
      continue;
    }
    if (kept != i)
      std::copy_n(set.images.data() + i * stride, stride, set.images.data() + kept * stride);
    set.labels[kept++] = labels[std::size_t(i)];
  }
  require<IoError>(kept > 0, root.string(), ": none of the ", n, " images could be read");
  set.images.resize(Shape{kept, h, w, opt.channels});
  set.labels.resize(Shape{kept});
  return set;
}

}  // namespace compressor::data
