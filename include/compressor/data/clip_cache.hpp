// ClipCache: a thread-safe, least-recently-used cache of decoded 8-bit clips
// bounded in bytes, so a data set that fits in memory is decoded once.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "compressor/core/tensor.hpp"

namespace compressor::data {

class ClipCache {
 public:
  explicit ClipCache(std::int64_t capacity_bytes) : capacity_(capacity_bytes) {}

  /// Copies the clip stored under key into out; false when absent.
  bool get(std::int64_t key, Tensor<std::uint8_t>& out) {
    std::lock_guard lock(mu_);
    const auto it = map_.find(key);
    if (it == map_.end()) {
      ++misses_;
      return false;
    }
    lru_.splice(lru_.begin(), lru_, it->second);  // most recently used first
    out = it->second->second;
    ++hits_;
    return true;
  }

  /// Stores a copy of clip under key, evicting the least recently used clips
  /// to stay within the capacity. A clip larger than the capacity is not kept.
  void put(std::int64_t key, const Tensor<std::uint8_t>& clip) {
    const std::int64_t bytes = clip.numel();
    if (bytes > capacity_) return;
    std::lock_guard lock(mu_);
    if (map_.count(key)) return;
    while (used_ + bytes > capacity_ && !lru_.empty()) {
      used_ -= lru_.back().second.numel();
      map_.erase(lru_.back().first);
      lru_.pop_back();
    }
    lru_.emplace_front(key, clip);
    map_[key] = lru_.begin();
    used_ += bytes;
  }

  std::int64_t capacity_bytes() const { return capacity_; }
  std::int64_t used_bytes() const {
    std::lock_guard lock(mu_);
    return used_;
  }
  std::int64_t hits() const {
    std::lock_guard lock(mu_);
    return hits_;
  }
  std::int64_t misses() const {
    std::lock_guard lock(mu_);
    return misses_;
  }

 private:
  using Entry = std::pair<std::int64_t, Tensor<std::uint8_t>>;
  mutable std::mutex mu_;
  std::list<Entry> lru_;
  std::unordered_map<std::int64_t, std::list<Entry>::iterator> map_;
  std::int64_t capacity_ = 0, used_ = 0, hits_ = 0, misses_ = 0;
};

}  // namespace compressor::data
