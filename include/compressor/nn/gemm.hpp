// dst = a * b through Eigen's GEMM, which is multi-threaded; Eigen's own
// `dst.noalias() = a * b` first zeroes dst on a single thread, a serial pass
// over the whole output that costs ~5% of a ResNet training step and limits
// its 2-thread scaling, so the zeroing is done in parallel here.
#pragma once

#include "compressor/core/threading.hpp"

namespace compressor::nn {

template <class Dst, class A, class B>
void gemm_assign(Dst&& dst, const A& a, const B& b) {
  parallel_fill(dst.data(), static_cast<std::int64_t>(dst.size()), 0.f);
  dst.noalias() += a * b;
}

}  // namespace compressor::nn
