// Data sharding for data-parallel training (data/loader.hpp): the ranks'
// loaders, built in one process here, cover every sample exactly once per
// epoch, stay in step (same number of batches, empty shares included), and
// step b of all ranks is batch b of one loader with the global batch size.
// No MPI needed: these run in every build.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <vector>

#include "compressor/data/loader.hpp"
#include "compressor/distributed/launch.hpp"
#include "compressor/train.hpp"
#include "distributed/ddp_fixture.hpp"

using namespace compressor;
using Catch::Matchers::Contains;
using compressor::testing::IndexedImages;

namespace {

/// The sample indices of each batch of an epoch (pixel 0 holds the index).
std::vector<std::vector<std::int64_t>> epoch_batches(data::DataLoader& loader,
                                                     std::uint64_t epoch) {
  std::vector<std::vector<std::int64_t>> out;
  loader.start_epoch(epoch);
  data::Batch b;
  while (loader.next(b)) {
    std::vector<std::int64_t> ids;
    for (std::int64_t k = 0; k < b.size(); ++k)
      ids.push_back(static_cast<std::int64_t>(b.inputs.slice(k)[0]));
    out.push_back(ids);
  }
  return out;
}

data::LoaderOptions options(std::int64_t batch, bool drop_last, int rank, int world, int prefetch) {
  data::LoaderOptions o;
  o.batch_size = batch;
  o.drop_last = drop_last;
  o.seed = 42;
  o.prefetch = prefetch;
  o.rank = rank;
  o.world_size = world;
  return o;
}

}  // namespace

TEST_CASE("Sharded loaders cover every sample once per epoch, in step with one global loader",
          "[distributed][shard]") {
  const int prefetch = GENERATE(0, 2);
  for (std::int64_t n : {1, 2, 5, 12, 13, 23}) {
    auto ds = std::make_shared<IndexedImages>(n, 7);
    for (int world : {1, 2, 3, 4}) {
      if (world > n) continue;
      for (std::int64_t batch : {1, 2, 3, 5}) {
        for (bool drop_last : {false, true}) {
          CAPTURE(n, world, batch, drop_last, prefetch);
          data::DataLoader global(ds, options(batch * world, drop_last, 0, 1, prefetch));
          std::vector<std::unique_ptr<data::DataLoader>> ranks;
          for (int r = 0; r < world; ++r)
            ranks.push_back(std::make_unique<data::DataLoader>(
                ds, options(batch, drop_last, r, world, prefetch)));
          for (std::uint64_t epoch : {0u, 1u}) {
            const auto want = epoch_batches(global, epoch);
            std::vector<std::vector<std::vector<std::int64_t>>> got;
            std::int64_t samples = 0;
            for (auto& l : ranks) {
              got.push_back(epoch_batches(*l, epoch));
              REQUIRE(static_cast<std::int64_t>(got.back().size()) == l->num_batches());
              REQUIRE(l->num_batches() == global.num_batches());
              samples += l->num_samples();
            }
            REQUIRE(samples == global.num_samples());
            std::multiset<std::int64_t> seen;
            for (std::size_t b = 0; b < want.size(); ++b) {
              std::vector<std::int64_t> step;
              std::size_t lo = SIZE_MAX, hi = 0;
              for (const auto& r : got) {
                step.insert(step.end(), r[b].begin(), r[b].end());
                lo = std::min(lo, r[b].size());
                hi = std::max(hi, r[b].size());
              }
              CHECK(hi - lo <= 1);     // shares of a batch differ by at most one sample
              CHECK(step == want[b]);  // rank order = the global batch's order
              seen.insert(step.begin(), step.end());
            }
            const auto used = static_cast<std::int64_t>(seen.size());
            CHECK(used == (drop_last ? (n / (batch * world)) * batch * world : n));
            for (std::int64_t i : seen) CHECK(seen.count(i) == 1);
          }
        }
      }
    }
  }
}

TEST_CASE("A sharded loader hands out a short last batch's empty shares", "[distributed][shard]") {
  // 13 samples, 2 ranks x 3: global batches 6, 6, 1; rank 0's last share is empty.
  auto ds = std::make_shared<IndexedImages>(13, 1);
  data::DataLoader r0(ds, options(3, false, 0, 2, 0)), r1(ds, options(3, false, 1, 2, 0));
  const auto a = epoch_batches(r0, 0), b = epoch_batches(r1, 0);
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  CHECK(a[2].empty());
  CHECK(b[2].size() == 1);
  CHECK(r0.num_samples() == 6);
  CHECK(r1.num_samples() == 7);
}

TEST_CASE("Loader sharding rejects bad ranks and more ranks than samples", "[distributed][shard]") {
  auto ds = std::make_shared<IndexedImages>(3, 1);
  CHECK_THROWS_WITH(data::DataLoader(ds, options(1, false, 0, 4, 0)),
                    Contains("world size 4 is larger than the data set (3 samples)"));
  CHECK_THROWS_WITH(data::DataLoader(ds, options(1, false, 2, 2, 0)),
                    Contains("rank must be in [0, 2), got 2"));
  CHECK_THROWS_WITH(data::DataLoader(ds, options(1, false, 0, 0, 0)),
                    Contains("world_size must be >= 1, got 0"));
}

TEST_CASE("Trainer: an empty batch is a step only with a gradient hook", "[distributed][trainer]") {
  auto net = compressor::testing::small_cnn(3);
  nn::SoftmaxCrossEntropy ce;
  train::Sgd sgd(*net, train::SgdOptions{.lr = 0.1f});
  train::Trainer trainer(*net, ce, sgd, train::Task::classification);
  data::Batch empty;
  empty.inputs.resize(Shape{0, IndexedImages::kHw, IndexedImages::kHw, 3});
  empty.labels.resize(Shape{0});
  CHECK_THROWS_WITH(trainer.step(empty), Contains("empty batch at step 1"));

  std::vector<std::int64_t> seen;
  trainer.add_gradient_hook([&](std::int64_t n) {
    seen.push_back(n);
    for (auto& p : net->named_parameters())  // the gradient is zero on an empty batch
      for (float g : p.grad->flat()) REQUIRE(g == 0.f);
  });
  const auto before = net->named_parameters()[0].value->flat()[0];
  CHECK(trainer.step(empty) == 0.f);
  CHECK(net->named_parameters()[0].value->flat()[0] == before);  // no decay, zero gradient
  CHECK(trainer.global_step() == 1);
  CHECK(seen == std::vector<std::int64_t>{0});
}

TEST_CASE("A single-process program refuses to run as one of several launched ranks",
          "[distributed][launch]") {
  ::unsetenv("PMI_SIZE");
  ::setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
  CHECK_NOTHROW(distributed::require_single_process("ef_train"));
  ::setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  CHECK_THROWS_WITH(distributed::require_single_process("ef_train"),
                    Contains("ef_train was started as one of 2 ranks (OMPI_COMM_WORLD_SIZE=2)"));
  ::setenv("OMPI_COMM_WORLD_SIZE", "two", 1);
  CHECK_THROWS_WITH(distributed::require_single_process("ef_train"),
                    Contains("OMPI_COMM_WORLD_SIZE='two' is not a positive rank count"));
  ::unsetenv("OMPI_COMM_WORLD_SIZE");
  CHECK(distributed::launched_world_size().first == 1);
}

namespace {
struct NoOpReducer final : nn::StatisticsReducer {
  void sum(std::span<double>) override {}
};
}  // namespace

TEST_CASE("Trainer: an empty share with synchronised BatchNorm is an error naming the layer",
          "[distributed][trainer]") {
  // Synchronised BatchNorm reduces inside forward and backward, which an
  // empty share skips: the other ranks would wait forever in the reduction.
  auto net = compressor::testing::small_bn_cnn(3);
  nn::SoftmaxCrossEntropy ce;
  train::Sgd sgd(*net, train::SgdOptions{.lr = 0.1f});
  train::Trainer trainer(*net, ce, sgd, train::Task::classification);
  trainer.add_gradient_hook([](std::int64_t) {});
  data::Batch empty;
  empty.inputs.resize(Shape{0, IndexedImages::kHw, IndexedImages::kHw, 3});
  empty.labels.resize(Shape{0});
  net->train();
  CHECK(trainer.step(empty) == 0.f);  // per-rank statistics: a plain empty step
  dynamic_cast<nn::BatchNorm2d&>(net->child("4"))
      .set_statistics_reducer(std::make_shared<NoOpReducer>());
  CHECK_THROWS_WITH(
      trainer.step(empty),
      Contains("share of batch 2 is empty, but '4' (BatchNorm2d) reduces over the ranks"));
  net->eval();  // no batch statistics, nothing to reduce
  CHECK(trainer.step(empty) == 0.f);
}
