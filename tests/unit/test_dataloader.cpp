#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <memory>
#include <set>
#include <thread>

#include "runtime/core/error.h"
#include "runtime/data/dataloader.h"
#include "runtime/data/synthetic.h"

using namespace dp;

namespace {

// Sample i is dim copies of i + k / 1000 with label i % 7, so a batch says which indices it
// holds. Optionally fails on one index, or sleeps per sample.
class IndexDataset : public ClassificationDataset {
 public:
  IndexDataset(size_t n, size_t dim) : n_(n), dim_(dim) {}
  size_t size() const override { return n_; }
  DataKind kind() const override { return DataKind::vectors; }
  Shape sample_shape() const override { return {int64_t(dim_)}; }
  size_t sample_numel() const override { return dim_; }
  int num_classes() const override { return 7; }
  int32_t get(size_t i, float* dst) const override {
    if (i == fail_at) fail("index dataset: cannot read sample {}", i);
    if (sleep_us) std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    ++reads;
    for (size_t k = 0; k < dim_; ++k) dst[k] = float(i) + float(k) / 1000.0f;
    return bad_label ? 7 : int32_t(i % 7);
  }
  std::string describe() const override { return "index dataset"; }

  size_t fail_at = size_t(-1);
  int sleep_us = 0;
  bool bad_label = false;
  mutable std::atomic<size_t> reads{0};

 private:
  size_t n_, dim_;
};

struct Seen {
  std::vector<size_t> indices;  // decoded from x, in order
  std::vector<size_t> sizes;
  std::vector<size_t> batch_index;
};

Seen run_epoch(DataLoader& loader, uint64_t epoch, size_t skip = 0) {
  Seen s;
  loader.start_epoch(epoch, skip);
  while (const Batch* b = loader.next()) {
    EXPECT_EQ(b->epoch, epoch);
    EXPECT_EQ(b->x.dim(0), int64_t(b->size));
    EXPECT_EQ(b->y.numel(), b->size);
    const size_t dim = loader.dataset().sample_numel();
    EXPECT_EQ(b->x.dim(1), int64_t(dim));
    for (size_t r = 0; r < b->size; ++r) {
      const float* row = b->x.f32() + r * dim;
      size_t idx = size_t(row[0]);
      s.indices.push_back(idx);
      EXPECT_EQ(b->y.data<int32_t>()[r], int32_t(idx % 7));
      EXPECT_FLOAT_EQ(row[dim - 1], float(idx) + float(dim - 1) / 1000.0f);
    }
    s.sizes.push_back(b->size);
    s.batch_index.push_back(b->index);
  }
  EXPECT_EQ(loader.next(), nullptr);  // stays at the end
  return s;
}

// Runs fn on a thread of its own: false if it has not returned within `seconds`, so that a
// hang fails the test instead of stalling the suite. A hung fn is left behind, with whatever
// it holds (hence shared_ptrs, never references to the test's locals).
template <typename Fn>
bool returns_within(double seconds, Fn fn) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  std::thread([done, task = std::make_shared<Fn>(std::move(fn))]() mutable {
    (*task)();
    task.reset();  // what fn holds is released before the caller goes on, not after
    done->set_value();
  }).detach();
  return finished.wait_for(std::chrono::duration<double>(seconds)) == std::future_status::ready;
}

}  // namespace

TEST(DataLoader, PrefetchAndSyncGiveTheSamplersOrder) {
  IndexDataset ds(103, 5);
  for (int world : {1, 3}) {
    for (int rank = 0; rank < world; ++rank) {
      DistributedSampler s1(103, world, rank, true, 17), s2(103, world, rank, true, 17);
      DataLoader pre(ds, s1, 8, true), sync(ds, s2, 8, false);
      EXPECT_TRUE(pre.prefetching());
      EXPECT_FALSE(sync.prefetching());
      for (uint64_t e = 0; e < 3; ++e) {
        Seen a = run_epoch(pre, e), b = run_epoch(sync, e);
        DistributedSampler ref(103, world, rank, true, 17);
        ref.set_epoch(e);
        EXPECT_EQ(a.indices, ref.indices());
        EXPECT_EQ(b.indices, ref.indices());
        EXPECT_EQ(a.sizes, b.sizes);
        EXPECT_EQ(a.batch_index, b.batch_index);
      }
    }
  }
}

TEST(DataLoader, BatchesPerEpochAndLastPartialBatch) {
  IndexDataset ds(103, 3);
  // 103 samples on 3 ranks: 35 per rank (padded), batches of 8: 4 full + one of 3.
  for (int rank = 0; rank < 3; ++rank) {
    DistributedSampler s(103, 3, rank, true, 1);
    DataLoader loader(ds, s, 8);
    EXPECT_EQ(loader.batches_per_epoch(), 5u);
    Seen seen = run_epoch(loader, 0);
    EXPECT_EQ(seen.sizes, (std::vector<size_t>{8, 8, 8, 8, 3}));
    EXPECT_EQ(seen.batch_index, (std::vector<size_t>{0, 1, 2, 3, 4}));
    // The next epoch starts with a full batch again.
    EXPECT_EQ(run_epoch(loader, 1).sizes.front(), 8u);
  }
  DistributedSampler exact = DistributedSampler::exact(103, 1, 0);
  DataLoader one(ds, exact, 103);
  EXPECT_EQ(one.batches_per_epoch(), 1u);
  DataLoader big(ds, exact, 1000);
  EXPECT_EQ(run_epoch(big, 0).sizes, (std::vector<size_t>{103}));
}

// The buffers hold at most the rows the sampler yields: --eval-batch-size 100000000 allocated
// [10^8, 784] floats twice (313 GB) for a shard of 1000 test samples and aborted the job.
TEST(DataLoader, ABatchSizeAboveTheShardAllocatesOnlyTheShard) {
  IndexDataset ds(103, 10000);  // 2e9 rows of these would be 80 TB
  DistributedSampler exact = DistributedSampler::exact(103, 2, 1);
  std::unique_ptr<DataLoader> huge;
  ASSERT_NO_THROW(huge = std::make_unique<DataLoader>(ds, exact, 2000000000));
  EXPECT_EQ(huge->batches_per_epoch(), 1u);
  EXPECT_EQ(run_epoch(*huge, 0).sizes, (std::vector<size_t>{51}));
  DistributedSampler train(103, 2, 0, true, 3);  // padded: 52 per rank
  DataLoader training(ds, train, 2000000000);
  EXPECT_EQ(run_epoch(training, 0).sizes, (std::vector<size_t>{52}));
  EXPECT_EQ(run_epoch(training, 1).sizes, (std::vector<size_t>{52}));
}

TEST(DataLoader, SkipBatchesResumesExactly) {
  IndexDataset ds(100, 2);
  for (bool prefetch : {true, false}) {
    DistributedSampler s(100, 2, 1, true, 5);
    DataLoader loader(ds, s, 7, prefetch);
    Seen full = run_epoch(loader, 2);
    ASSERT_EQ(full.sizes.size(), 8u);  // 50 per rank: 7 x 7 + 1
    for (size_t skip : {1, 3, 7, 8}) {
      Seen rest = run_epoch(loader, 2, skip);
      EXPECT_EQ(rest.indices,
                std::vector<size_t>(full.indices.begin() + std::min<size_t>(skip * 7, 50),
                                    full.indices.end()))
          << "skip " << skip;
      std::vector<size_t> idx;
      for (size_t b = skip; b < 8; ++b) idx.push_back(b);
      EXPECT_EQ(rest.batch_index, idx);
    }
    EXPECT_THROW(loader.start_epoch(2, 9), Error);
  }
}

TEST(DataLoader, RefusedSkipLeavesTheEpochAsItWas) {
  // 100 samples in batches of 10: skipping 50 is refused. The check came after the sampler
  // had moved to the new epoch and the prefetch was cancelled, and next() then waited forever.
  struct Rig {
    explicit Rig(bool prefetch) : ds(100, 2), s(100, 1, 0, true, 0), loader(ds, s, 10, prefetch) {}
    IndexDataset ds;
    DistributedSampler s;
    DataLoader loader;
  };
  for (bool prefetch : {true, false}) {
    auto rig = std::make_shared<Rig>(prefetch);
    DistributedSampler ref(100, 1, 0, true, 0);
    ref.set_epoch(0);
    const std::vector<size_t> epoch0 = ref.indices();
    ref.set_epoch(1);
    const std::vector<size_t> epoch1 = ref.indices();
    rig->loader.start_epoch(0);
    ASSERT_NE(rig->loader.next(), nullptr);
    EXPECT_THROW(rig->loader.start_epoch(1, 50), Error);
    const bool returned = returns_within(20, [rig, epoch0, epoch1] {
      const Batch* b = rig->loader.next();
      ASSERT_NE(b, nullptr);
      EXPECT_EQ(b->epoch, 0u);
      EXPECT_EQ(b->index, 1u);
      EXPECT_EQ(size_t(b->x.f32()[0]), epoch0[10]);  // epoch 0's order, not epoch 1's
      Seen rest = run_epoch(rig->loader, 1, 5);
      EXPECT_EQ(rest.indices, std::vector<size_t>(epoch1.begin() + 50, epoch1.end()));
    });
    EXPECT_TRUE(returned) << "prefetch " << prefetch << ": next() hung after a refused start_epoch";
  }
}

TEST(DataLoader, ReusesTwoBuffers) {
  IndexDataset ds(64, 4);
  for (bool prefetch : {true, false}) {
    DistributedSampler s(64, 1, 0, true, 3);
    DataLoader loader(ds, s, 10, prefetch);
    std::set<const float*> xs;
    std::set<const int32_t*> ys;
    std::set<const Batch*> batches;
    for (uint64_t e = 0; e < 4; ++e) {
      loader.start_epoch(e);
      const Batch* prev = nullptr;
      while (const Batch* b = loader.next()) {
        xs.insert(b->x.f32());
        ys.insert(b->y.data<int32_t>());
        batches.insert(b);
        EXPECT_NE(b, prev);  // double buffering alternates
        prev = b;
      }
    }
    EXPECT_EQ(xs.size(), 2u);
    EXPECT_EQ(ys.size(), 2u);
    EXPECT_EQ(batches.size(), 2u);
  }
}

TEST(DataLoader, PrefetchDoesNotTouchTheBatchInUse) {
  // While the caller holds batch k, the worker fills batch k + 1 into the other buffer; the
  // held batch must stay intact however long the caller takes.
  IndexDataset ds(40, 16);
  DistributedSampler s(40, 1, 0, false);
  DataLoader loader(ds, s, 4, true);
  loader.start_epoch(0);
  size_t expect = 0;
  while (const Batch* b = loader.next()) {
    std::vector<float> copy(b->x.f32(), b->x.f32() + b->x.numel());
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_EQ(std::vector<float>(b->x.f32(), b->x.f32() + b->x.numel()), copy);
    EXPECT_EQ(size_t(b->x.f32()[0]), expect);
    expect += 4;
  }
}

TEST(DataLoader, ErrorsPropagateFromTheWorker) {
  for (bool prefetch : {true, false}) {
    IndexDataset ds(50, 3);
    ds.fail_at = 23;
    DistributedSampler s(50, 1, 0, false);
    DataLoader loader(ds, s, 10, prefetch);
    loader.start_epoch(0);
    ASSERT_NE(loader.next(), nullptr);  // 0..9
    ASSERT_NE(loader.next(), nullptr);  // 10..19
    try {
      loader.next();
      FAIL() << "no error for sample 23";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot read sample 23"), std::string::npos);
    }
    EXPECT_THROW(loader.next(), Error);  // the epoch stays failed
    ds.fail_at = size_t(-1);
    EXPECT_EQ(run_epoch(loader, 1).indices.size(), 50u);  // a new epoch recovers
  }
  IndexDataset bad(10, 2);
  bad.bad_label = true;
  DistributedSampler s(10, 1, 0);
  DataLoader loader(bad, s, 4);
  loader.start_epoch(0);
  try {
    loader.next();
    FAIL() << "no error for label 7 of 7 classes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside 0..6"), std::string::npos) << e.what();
  }
}

TEST(DataLoader, DestructorJoinsMidEpoch) {
  IndexDataset ds(1000, 8);
  ds.sleep_us = 200;
  DistributedSampler s(1000, 1, 0);
  {
    DataLoader loader(ds, s, 500, true);
    loader.start_epoch(0);
    ASSERT_NE(loader.next(), nullptr);  // the worker now fills the second half (0.1 s)
  }
  {
    DataLoader idle(ds, s, 16, true);  // never started
  }
  {
    DataLoader loader(ds, s, 500, true);
    loader.start_epoch(0);
    loader.start_epoch(1);  // abandons the fill in flight
    ASSERT_NE(loader.next(), nullptr);
    EXPECT_EQ(loader.next()->index, 1u);
  }
  // Cancellation stops a fill within a sample, not after the whole batch: counted in reads, not
  // seconds (a loader that never cancels reads about 2500 in under 2 s, so a time limit could
  // only fail from load).
  EXPECT_LT(ds.reads.load(), 2000u);
}

TEST(DataLoader, RejectsBadUse) {
  IndexDataset ds(10, 2);
  DistributedSampler s(10, 1, 0);
  EXPECT_THROW(DataLoader(ds, s, 0), Error);
  DistributedSampler other(11, 1, 0);
  try {
    DataLoader loader(ds, other, 4);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built for 11 samples but the dataset has 10"),
              std::string::npos);
  }
  DataLoader loader(ds, s, 4);
  EXPECT_THROW(loader.next(), Error);  // before start_epoch
}

TEST(DataLoader, RanksRunTheSameNumberOfBatches) {
  IndexDataset ds(101, 1);
  std::set<size_t> counts;
  std::set<size_t> covered;
  for (int r = 0; r < 4; ++r) {
    DistributedSampler s(101, 4, r, true, 8);
    DataLoader loader(ds, s, 6);
    Seen seen = run_epoch(loader, 0);
    counts.insert(seen.sizes.size());
    EXPECT_EQ(seen.sizes.size(), loader.batches_per_epoch());
    covered.insert(seen.indices.begin(), seen.indices.end());
  }
  EXPECT_EQ(counts.size(), 1u);
  EXPECT_EQ(covered.size(), 101u);
}

TEST(DataLoader, WorkersGiveTheSameBatches) {
  IndexDataset ds(103, 5);
  DistributedSampler ref_s(103, 1, 0, true, 17);
  DataLoader ref(ds, ref_s, 10, /*prefetch=*/false);
  const Seen want = run_epoch(ref, 2);
  for (size_t workers : {2, 3, 7, 16}) {  // 16 > rows of the last batch (3)
    for (bool prefetch : {false, true}) {
      SCOPED_TRACE(testing::Message() << workers << " workers, prefetch " << prefetch);
      DistributedSampler s(103, 1, 0, true, 17);
      DataLoader loader(ds, s, 10, prefetch, /*pin_memory=*/false, workers);
      const Seen got = run_epoch(loader, 2);
      EXPECT_EQ(got.indices, want.indices);
      EXPECT_EQ(got.sizes, want.sizes);
      EXPECT_EQ(run_epoch(loader, 3).indices.size(), 103u);  // the pool is reused
    }
  }
}

TEST(DataLoader, WorkerErrorsReachNext) {
  // Sample 60 sits in a later row range, filled by a helper thread, not the caller.
  IndexDataset ds(64, 3);
  ds.fail_at = 60;
  for (bool prefetch : {false, true}) {
    DistributedSampler s(64, 1, 0, /*shuffle=*/false, 0);
    DataLoader loader(ds, s, 64, prefetch, /*pin_memory=*/false, 4);
    loader.start_epoch(0);
    try {
      loader.next();
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cannot read sample 60"), std::string::npos) << e.what();
    }
  }
  IndexDataset bad(64, 3);
  bad.bad_label = true;
  DistributedSampler s(64, 1, 0, false, 0);
  DataLoader loader(bad, s, 64, true, false, 4);
  loader.start_epoch(0);
  try {
    loader.next();
    FAIL() << "no error";
  } catch (const Error& e) {
    // Every range fails; the lowest one's error is the one reported, whatever the timing.
    EXPECT_NE(std::string(e.what()).find("sample 0 has label 7"), std::string::npos) << e.what();
  }
  DistributedSampler s0(64, 1, 0, false, 0);
  EXPECT_THROW(DataLoader(ds, s0, 8, true, false, 0), Error);
}

TEST(DataLoader, WorkersCancelMidBatch) {
  IndexDataset ds(200, 4);
  ds.sleep_us = 200;
  DistributedSampler s(200, 1, 0, true, 5);
  DataLoader loader(ds, s, 100, /*prefetch=*/true, /*pin_memory=*/false, 3);
  loader.start_epoch(0);
  loader.start_epoch(1);  // abandons the fill in flight, on every worker
  EXPECT_EQ(run_epoch(loader, 1).indices.size(), 200u);
}

TEST(SyntheticDataset, DeterministicPerIndex) {
  SyntheticDataset a(1000, 32, 10, 7), b(1000, 32, 10, 7), c(1000, 32, 10, 8);
  EXPECT_EQ(a.sample_shape(), (Shape{32}));
  EXPECT_EQ(a.num_classes(), 10);
  std::vector<float> x1(32), x2(32), x3(32);
  // Read b in another order first: sample i must not depend on what was read before.
  for (size_t i = 999; i > 990; --i) b.get(i, x2.data());
  for (size_t i : {0, 5, 999}) {
    int32_t l1 = a.get(i, x1.data()), l2 = b.get(i, x2.data());
    EXPECT_EQ(l1, l2);
    EXPECT_EQ(x1, x2);
    c.get(i, x3.data());
    EXPECT_NE(x1, x3);
  }
  EXPECT_THROW(a.get(1000, x1.data()), Error);
  EXPECT_THROW(SyntheticDataset(0, 4, 10, 1), Error);
  EXPECT_THROW(SyntheticDataset(10, 4, 1, 1), Error);
}

TEST(SyntheticDataset, LearnableByNearestCentroid) {
  // Centroids estimated from 2000 samples classify 1000 others: a lower bound on what an MLP
  // reaches on the same data.
  for (size_t dim : {16, 32, 784}) {
    SyntheticDataset ds(3000, dim, 10, 42);
    std::vector<double> centroid(10 * dim, 0.0);
    std::vector<int> count(10, 0);
    std::vector<float> x(dim);
    for (size_t i = 0; i < 2000; ++i) {
      int32_t y = ds.get(i, x.data());
      ASSERT_GE(y, 0);
      ASSERT_LT(y, 10);
      ++count[y];
      for (size_t k = 0; k < dim; ++k) centroid[y * dim + k] += x[k];
    }
    for (int c = 0; c < 10; ++c) {
      EXPECT_GT(count[c], 120) << "class " << c << " is rare";
      for (size_t k = 0; k < dim; ++k) centroid[c * dim + k] /= count[c];
    }
    int correct = 0;
    for (size_t i = 2000; i < 3000; ++i) {
      int32_t y = ds.get(i, x.data());
      int best = 0;
      double best_d = 1e300;
      for (int c = 0; c < 10; ++c) {
        double d = 0;
        for (size_t k = 0; k < dim; ++k) d += std::pow(x[k] - centroid[c * dim + k], 2);
        if (d < best_d) best_d = d, best = c;
      }
      correct += best == y;
    }
    EXPECT_GT(correct, 900) << "dim " << dim;
    RecordProperty("accuracy_dim_" + std::to_string(dim), correct);
  }
}
