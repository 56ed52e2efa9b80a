// AlignedBuffer<T>: an owning, 64-byte aligned array that grows but never
// shrinks, so scratch memory is reused across calls.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>

namespace compressor {

inline constexpr std::size_t kTensorAlignment = 64;  // one cache line, one AVX-512 vector

template <class T>
class AlignedBuffer {
  static_assert(std::is_trivially_copyable_v<T>, "AlignedBuffer holds trivially copyable types");

 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) { reserve_discard(n); }
  AlignedBuffer(const AlignedBuffer& o) : AlignedBuffer(o.capacity_) {
    if (capacity_) std::memcpy(data_, o.data_, capacity_ * sizeof(T));
  }
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), capacity_(std::exchange(o.capacity_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer o) noexcept {
    swap(o);
    return *this;
  }
  ~AlignedBuffer() { release(); }

  void swap(AlignedBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(capacity_, o.capacity_);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t capacity() const { return capacity_; }

  /// Ensures room for n elements. Old contents are not kept when it grows;
  /// new memory is zero-filled so nothing reads indeterminate values.
  void reserve_discard(std::size_t n) {
    if (n <= capacity_) return;
    release();
    const std::size_t bytes = std::max<std::size_t>(n * sizeof(T), 1);
    const std::size_t rounded =
        (bytes + kTensorAlignment - 1) / kTensorAlignment * kTensorAlignment;
    data_ = static_cast<T*>(::operator new(rounded, std::align_val_t(kTensorAlignment)));
    std::memset(static_cast<void*>(data_), 0, rounded);
    capacity_ = rounded / sizeof(T);
  }

 private:
  void release() {
    if (data_) ::operator delete(data_, std::align_val_t(kTensorAlignment));
    data_ = nullptr;
    capacity_ = 0;
  }

  T* data_ = nullptr;
  std::size_t capacity_ = 0;
};

}  // namespace compressor
