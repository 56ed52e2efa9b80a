// The MPI environment and communicator of data-parallel training (target
// compressor::distributed; docs/distributed.md). MPI's C API, used from C++.
//
//   int main(int argc, char** argv) {
//     return compressor::distributed::run(argc, argv, [&](Communicator& comm) { ... });
//   }
//
// Threads: only the thread that built the Environment calls MPI
// (MPI_THREAD_FUNNELED, checked at start-up); the data loader's background
// thread and the OpenMP teams never do.
//
// Failures never hang: every MPI call returns its error code (the
// communicator's error handler is MPI_ERRORS_RETURN) and throws an MpiError
// naming the call; run() catches any exception of its body, prints
// "rank N: <what>" to stderr and calls MPI_Abort, which ends every rank (the
// others may be waiting in a collective for this one). An Environment
// destroyed while an exception unwinds past it aborts the same way.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <span>
#include <string>
#include <type_traits>

#include "compressor/core/error.hpp"

namespace compressor::distributed {

/// An MPI call failed; the message names the call and MPI's error string.
class MpiError : public Error {
 public:
  using Error::Error;
};

namespace detail {

inline void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw MpiError(compressor::detail::concat(call, " failed: ", std::string(text, len)));
}

inline const char* thread_level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
    default:
      return "an unknown thread level";
  }
}

template <class T>
MPI_Datatype datatype() {
  if constexpr (std::is_same_v<T, float>)
    return MPI_FLOAT;
  else if constexpr (std::is_same_v<T, double>)
    return MPI_DOUBLE;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return MPI_INT32_T;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return MPI_INT64_T;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return MPI_UINT64_T;
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return MPI_INT8_T;
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return MPI_UINT8_T;
  else
    static_assert(sizeof(T) == 0, "distributed: no MPI datatype for this type");
}

/// Rank in MPI_COMM_WORLD, or -1 when MPI is not running.
inline int world_rank() {
  int up = 0, down = 0;
  MPI_Initialized(&up);
  MPI_Finalized(&down);
  if (!up || down) return -1;
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

}  // namespace detail

/// Prints "rank N: <what>" to stderr and ends every rank of MPI_COMM_WORLD
/// (MPI_Abort with exit code 1). Does not return.
[[noreturn]] inline void abort_all(const char* what) {
  std::fprintf(stderr, "rank %d: %s\n", detail::world_rank(), what);
  std::fflush(stderr);
  if (detail::world_rank() >= 0) MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

/// A communicator handle (not owning): rank, size and the collectives that
/// data-parallel training uses. Every call throws MpiError on failure.
class Communicator {
 public:
  explicit Communicator(MPI_Comm comm) : comm_(comm) {
    detail::check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    detail::check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  int rank() const { return rank_; }
  int size() const { return size_; }
  MPI_Comm handle() const { return comm_; }

  void barrier() const { detail::check(MPI_Barrier(comm_), "MPI_Barrier"); }

  /// Overwrites data on every rank with root's.
  template <class T>
  void broadcast(std::span<T> data, int root = 0) const {
    broadcast_bytes(data.data(), static_cast<std::int64_t>(data.size_bytes()), root);
  }
  void broadcast_bytes(void* data, std::int64_t bytes, int root = 0) const {
    constexpr std::int64_t kChunk = std::int64_t{1} << 30;  // MPI counts are int
    auto* p = static_cast<unsigned char*>(data);
    for (std::int64_t off = 0; off < bytes; off += kChunk) {
      const int n = static_cast<int>(std::min(kChunk, bytes - off));
      detail::check(MPI_Bcast(p + off, n, MPI_BYTE, root, comm_), "MPI_Bcast");
    }
  }

  /// In place: data becomes the element-wise sum over ranks.
  template <class T>
  void allreduce_sum(std::span<T> data) const {
    detail::check(MPI_Allreduce(MPI_IN_PLACE, data.data(), checked_count(data.size()),
                                detail::datatype<T>(), MPI_SUM, comm_),
                  "MPI_Allreduce(sum)");
  }
  /// In place: data becomes the element-wise mean over ranks.
  void allreduce_average(std::span<float> data) const {
    allreduce_sum(data);
    const float inv = 1.f / static_cast<float>(size_);
    for (float& v : data) v *= inv;
  }
  template <class T>
  T sum(T v) const {
    allreduce_sum(std::span<T>(&v, 1));
    return v;
  }
  template <class T>
  T min(T v) const {
    detail::check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, detail::datatype<T>(), MPI_MIN, comm_),
                  "MPI_Allreduce(min)");
    return v;
  }
  template <class T>
  T max(T v) const {
    detail::check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, detail::datatype<T>(), MPI_MAX, comm_),
                  "MPI_Allreduce(max)");
    return v;
  }
  /// Throws ValueError on every rank unless v is the same on all ranks
  /// (what names the value, e.g. "the loader seed").
  void require_same(std::uint64_t v, const std::string& what) const {
    const std::uint64_t lo = min(v), hi = max(v);
    require(lo == hi, "distributed: ", what, " differs between ranks (this is rank ", rank_, " of ",
            size_, ", with ", v, "; ranks have values from ", lo, " to ", hi, ")");
  }

  static int checked_count(std::size_t n) {
    require(n <= static_cast<std::size_t>(INT32_MAX), "distributed: ", n,
            " elements in one MPI call (more than an int can count)");
    return static_cast<int>(n);
  }

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

/// MPI_Init_thread and MPI_Finalize for the process's lifetime, and a
/// duplicate of MPI_COMM_WORLD (errors returned, not fatal) for the
/// library's collectives. When MPI was already initialized, it is used and
/// left running.
class Environment {
 public:
  Environment(int* argc, char*** argv, int required = MPI_THREAD_FUNNELED)
      : unwinding_(std::uncaught_exceptions()) {
    int up = 0;
    detail::check(MPI_Initialized(&up), "MPI_Initialized");
    int provided = 0;
    if (up) {
      detail::check(MPI_Query_thread(&provided), "MPI_Query_thread");
    } else {
      detail::check(MPI_Init_thread(argc, argv, required, &provided), "MPI_Init_thread");
      owns_ = true;
    }
    if (provided < required) {
      if (owns_) MPI_Finalize();
      throw MpiError(compressor::detail::concat(
          "distributed: the MPI library provides ", detail::thread_level_name(provided),
          ", compressor needs ", detail::thread_level_name(required)));
    }
    detail::check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup");
    detail::check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  }
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  ~Environment() {
    if (std::uncaught_exceptions() > unwinding_)
      abort_all("an exception is leaving the MPI environment's scope; ending all ranks");
    MPI_Comm_free(&comm_);
    if (owns_) MPI_Finalize();
  }

  /// The library's communicator over all ranks.
  Communicator world() const { return Communicator(comm_); }

 private:
  int unwinding_ = 0;
  bool owns_ = false;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

/// Runs body(world) in an MPI environment and returns main()'s exit code (0).
/// An exception from body on any rank prints "rank N: <what>" and ends all
/// ranks (abort_all); it never leaves the others waiting.
inline int run(int& argc, char**& argv, const std::function<void(Communicator&)>& body) {
  Environment env(&argc, &argv);
  Communicator world = env.world();
  try {
    body(world);
  } catch (const std::exception& e) {
    abort_all(e.what());
  } catch (...) {
    abort_all("unknown exception");
  }
  return 0;
}

}  // namespace compressor::distributed
