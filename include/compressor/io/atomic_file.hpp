// AtomicFile: writes a file so that readers see either the old content or the
// complete new content, never a half-written file. Bytes go to a temporary
// file in the target's directory (so the rename cannot cross filesystems);
// commit() flushes it to disk (fsync), renames it over the target and syncs
// the directory. If commit() is not reached (an exception, an early return),
// the destructor removes the temporary file and the target is untouched.
// POSIX only (open/write/fsync/rename).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compressor/core/error.hpp"

namespace compressor::io {

class AtomicFile {
 public:
  /// Creates the temporary file "<dir>/.<name>.tmp.XXXXXX" next to path.
  explicit AtomicFile(std::filesystem::path path) : path_(std::move(path)) {
    require<IoError>(!path_.filename().empty(), "cannot write '", path_.string(),
                     "': the path names no file");
    std::filesystem::path dir = path_.parent_path();
    if (dir.empty()) dir = ".";
    std::string templ = (dir / ("." + path_.filename().string() + ".tmp.XXXXXX")).string();
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    fd_ = ::mkstemp(buf.data());
    if (fd_ < 0) fail("cannot create a temporary file (in " + dir.string() + ") to write");
    tmp_.assign(buf.data());
    ::fchmod(fd_, 0644);  // mkstemp creates 0600; a checkpoint is an ordinary file
  }

  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  ~AtomicFile() { discard(); }

  const std::filesystem::path& path() const { return path_; }
  /// The temporary file (empty after commit() or discard()).
  const std::string& temp_path() const { return tmp_; }

  /// Appends n bytes; throws IoError (naming the target) on failure.
  void write(const void* data, std::size_t n) {
    require<IoError>(fd_ >= 0, "write to '", path_.string(), "' after commit or discard");
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ::ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        fail("cannot write");
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }
  void write(std::string_view s) { write(s.data(), s.size()); }

  /// Flushes the data to disk and renames the temporary file over the target.
  void commit() {
    require<IoError>(fd_ >= 0, "commit of '", path_.string(), "' after commit or discard");
    if (::fsync(fd_) != 0) fail("cannot flush (fsync)");
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) fail("cannot close");
    if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("cannot rename the temporary file onto");
    tmp_.clear();
    // Make the rename itself durable; failing to sync the directory does not
    // undo the write, so it is best effort.
    std::filesystem::path dir = path_.parent_path();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

  /// Closes and removes the temporary file; the target is left as it was.
  void discard() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
    if (!tmp_.empty()) {
      ::unlink(tmp_.c_str());
      tmp_.clear();
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) {
    const int err = errno;
    discard();
    throw IoError(
        compressor::detail::concat(what, " '", path_.string(), "': ", std::strerror(err)));
  }

  std::filesystem::path path_;
  std::string tmp_;
  int fd_ = -1;
};

/// Writes bytes to path atomically (see AtomicFile).
inline void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

}  // namespace compressor::io
