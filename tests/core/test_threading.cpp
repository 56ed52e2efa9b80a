// The WorkerPool under parallel_for and parallel_units: every unit once,
// distinct thread slots, nesting inline, exceptions, concurrent callers,
// workers that went to sleep, thread counts that change.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <thread>
#include <vector>

#include "compressor/core/threading.hpp"
#include "compressor/core/worker_pool.hpp"
#include "compressor/kernels/parallel_units.hpp"

using compressor::in_parallel;
using compressor::num_threads;
using compressor::parallel_for;
using compressor::set_num_threads;
using compressor::thread_index;
using compressor::detail::WorkerPool;
using compressor::kernels::detail::parallel_units;

namespace {

/// Restores the thread count on scope exit.
struct SavedThreads {
  int saved = num_threads();
  ~SavedThreads() { set_num_threads(saved); }
};

/// Checks that parallel_units(n) on `threads` threads runs each unit once,
/// on slots below `threads`, never two units at once on one slot.
void check_units(std::int64_t n, int threads) {
  set_num_threads(threads);
  std::vector<std::atomic<int>> runs(static_cast<std::size_t>(n));
  std::vector<std::atomic<int>> busy(static_cast<std::size_t>(threads));
  std::atomic<int> bad_slot{0}, shared_slot{0}, outside{0};
  parallel_units(n, [&](std::int64_t i) {
    if (!in_parallel() && threads > 1 && n > 1) outside.fetch_add(1);
    const int t = thread_index();
    if (t < 0 || t >= threads) {
      bad_slot.fetch_add(1);
    } else {
      if (busy[static_cast<std::size_t>(t)].fetch_add(1) != 0) shared_slot.fetch_add(1);
      volatile int spin = 0;  // a little work, so that units overlap
      for (int k = 0; k < 200; ++k) spin = spin + k;
      busy[static_cast<std::size_t>(t)].fetch_sub(1);
    }
    runs[static_cast<std::size_t>(i)].fetch_add(1);
  });
  int wrong = 0;
  for (auto& r : runs) wrong += r.load() != 1;
  INFO("n = " << n << ", threads = " << threads);
  CHECK(wrong == 0);
  CHECK(bad_slot.load() == 0);
  CHECK(shared_slot.load() == 0);
  CHECK(outside.load() == 0);
  CHECK_FALSE(in_parallel());
  CHECK(thread_index() == 0);
}

}  // namespace

TEST_CASE("parallel_units runs every unit once on distinct thread slots", "[core][threading]") {
  const SavedThreads saved;
  for (int threads : {1, 2, 3, 4})
    for (std::int64_t n : {1, 2, 3, 7, 64, 1000}) check_units(n, threads);
}

TEST_CASE("parallel_for covers [0, n) in one chunk per thread", "[core][threading]") {
  const SavedThreads saved;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    for (std::int64_t n : {1, 2, 5, 100, 4097}) {
      std::vector<int> hits(static_cast<std::size_t>(n), 0);
      std::atomic<int> calls{0};
      parallel_for(n, [&](std::int64_t b, std::int64_t e) {
        calls.fetch_add(1);
        for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
      });
      int wrong = 0;
      for (int h : hits) wrong += h != 1;
      INFO("n = " << n << ", threads = " << threads);
      CHECK(wrong == 0);
      CHECK(calls.load() == std::min<std::int64_t>(n, threads));
    }
  }
}

TEST_CASE("A parallel loop inside a parallel loop runs inline", "[core][threading]") {
  const SavedThreads saved;
  set_num_threads(2);
  std::atomic<int> inner_total{0}, inner_slot_changed{0};
  parallel_units(8, [&](std::int64_t) {
    const int t = thread_index();
    parallel_for(100, [&](std::int64_t b, std::int64_t e) {
      if (thread_index() != t) inner_slot_changed.fetch_add(1);
      inner_total.fetch_add(static_cast<int>(e - b));
    });
    parallel_units(3, [&](std::int64_t) {
      if (thread_index() != t) inner_slot_changed.fetch_add(1);
    });
  });
  CHECK(inner_total.load() == 800);
  CHECK(inner_slot_changed.load() == 0);
}

TEST_CASE("An exception in a unit reaches the caller and the pool stays usable",
          "[core][threading]") {
  const SavedThreads saved;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::atomic<int> ran{0};
    CHECK_THROWS_WITH(parallel_units(100,
                                     [&](std::int64_t i) {
                                       ran.fetch_add(1);
                                       if (i == 5) throw std::runtime_error("unit 5 failed");
                                     }),
                      "unit 5 failed");
    CHECK(ran.load() >= 1);
    CHECK(ran.load() <= 100);
    CHECK_FALSE(in_parallel());
    check_units(50, threads);
  }
}

TEST_CASE("Two threads calling parallel loops at once both finish", "[core][threading]") {
  const SavedThreads saved;
  set_num_threads(2);
  constexpr int kRounds = 300;
  std::atomic<long> sum_a{0}, sum_b{0};
  auto caller = [](std::atomic<long>& sum) {
    for (int r = 0; r < kRounds; ++r)
      parallel_units(16, [&](std::int64_t i) { sum.fetch_add(i + 1); });
  };
  std::thread other(caller, std::ref(sum_b));
  caller(sum_a);
  other.join();
  CHECK(sum_a.load() == 136L * kRounds);
  CHECK(sum_b.load() == 136L * kRounds);
}

TEST_CASE("Workers that went to sleep take later jobs", "[core][threading]") {
  const SavedThreads saved;
  set_num_threads(2);
  WorkerPool pool;  // its own workers, so the count below is this test's
  std::atomic<int> seen_by_worker{0};
  auto unit = [&](std::int64_t) {
    if (thread_index() == 1) seen_by_worker.store(1);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  };
  const WorkerPool::UnitFn fn = [](void* ctx, std::int64_t i) {
    (*static_cast<decltype(unit)*>(ctx))(i);
  };
  // Units long enough that the worker joins even from sleep; a few tries,
  // since a loaded machine may keep it off a core for one job.
  for (int attempt = 0; attempt < 20 && seen_by_worker.load() == 0; ++attempt) {
    std::this_thread::sleep_for(WorkerPool::kSpin * 10);  // past the spin: asleep
    REQUIRE(pool.try_run(40, 1, fn, &unit));
  }
  CHECK(pool.workers() == 1);
  CHECK(seen_by_worker.load() == 1);
}

TEST_CASE("A pool whose job is running refuses a second caller", "[core][threading]") {
  WorkerPool pool;
  std::atomic<bool> inside{false}, release{false};
  std::atomic<int> second_ran{0};
  auto slow = [&](std::int64_t) {
    inside.store(true);
    while (!release.load()) std::this_thread::yield();
  };
  const WorkerPool::UnitFn slow_fn = [](void* ctx, std::int64_t i) {
    (*static_cast<decltype(slow)*>(ctx))(i);
  };
  auto quick = [&](std::int64_t) { second_ran.fetch_add(1); };
  const WorkerPool::UnitFn quick_fn = [](void* ctx, std::int64_t i) {
    (*static_cast<decltype(quick)*>(ctx))(i);
  };
  std::thread first([&] { CHECK(pool.try_run(1, 1, slow_fn, &slow)); });
  while (!inside.load()) std::this_thread::yield();
  CHECK_FALSE(pool.try_run(4, 1, quick_fn, &quick));
  CHECK(second_ran.load() == 0);
  release.store(true);
  first.join();
  CHECK(pool.try_run(4, 1, quick_fn, &quick));
  CHECK(second_ran.load() == 4);
}
