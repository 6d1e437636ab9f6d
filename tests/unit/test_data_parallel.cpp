// The pieces of --mode dp (runtime/dp) and its trainer, in one process. That DataParallel ends
// bit-identical to DDP under mpirun is tests/e2e/test_data_parallel.sh.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "runtime/dp/gather.h"
#include "runtime/dp/global_batch_dataset.h"
#include "runtime/dp/replica_threads.h"
#include "runtime/dp/replicate.h"
#include "runtime/dp/scatter.h"
#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/linear.h"
#include "runtime/train/data_parallel.h"
#include "samplers/distributed_sampler.h"
#include "tests/support/float_bits.h"

using namespace dp;
using dp::test::bits_of;

namespace {

std::vector<float> random_values(size_t n, uint64_t seed) {
  Philox rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = rng.normal() * 3.0f;
  return v;
}

// A dataset whose sample i is just its index (for order checks).
class CountingDataset : public ClassificationDataset {
 public:
  explicit CountingDataset(size_t n) : n_(n) {}
  size_t size() const override { return n_; }
  DataKind kind() const override { return DataKind::vectors; }
  Shape sample_shape() const override { return {1}; }
  size_t sample_numel() const override { return 1; }
  int num_classes() const override { return 2; }
  int32_t get(size_t i, float* dst) const override {
    *dst = float(i);
    return int32_t(i % 2);
  }
  std::string describe() const override { return "counting"; }

 private:
  size_t n_;
};

}  // namespace

// --- ReplicaThreads (parallel_apply) ------------------------------------------------------------

TEST(ReplicaThreads, RunsEveryReplicaOnceAndAllAtOnce) {
  constexpr size_t kN = 4;
  ReplicaThreads threads(kN);
  EXPECT_EQ(threads.size(), kN);
  for (int round = 0; round < 50; ++round) {
    std::atomic<size_t> arrived{0};
    std::atomic<bool> alone{false};
    std::vector<int> calls(kN, 0);
    std::vector<std::thread::id> who(kN);
    threads.run([&](size_t r) {
      ++calls[r];
      who[r] = std::this_thread::get_id();
      // Every replica waits here until all have arrived: only a concurrent run gets through;
      // one that runs the replicas one after the other waits out the deadline.
      ++arrived;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (arrived.load() < kN && std::chrono::steady_clock::now() < deadline)
        std::this_thread::yield();
      if (arrived.load() < kN) alone = true;
    });
    ASSERT_FALSE(alone.load()) << "the replicas did not run at the same time";
    for (size_t r = 0; r < kN; ++r) EXPECT_EQ(calls[r], 1) << "replica " << r;
    EXPECT_EQ(who[0], std::this_thread::get_id()) << "replica 0 runs on the caller";
    for (size_t r = 1; r < kN; ++r) EXPECT_NE(who[r], std::this_thread::get_id());
  }
}

TEST(ReplicaThreads, BindsEachReplicaToACoreOfItsOwnWhenThereAreEnough) {
  cpu_set_t before;
  ASSERT_EQ(pthread_getaffinity_np(pthread_self(), sizeof(before), &before), 0);
  if (CPU_COUNT(&before) < 2) GTEST_SKIP() << "needs 2 CPUs";
  {
    ReplicaThreads threads(2);
    ASSERT_TRUE(threads.pinned());
    EXPECT_NE(threads.cpu(0), threads.cpu(1));
    std::vector<int> on(2, -1);
    threads.run([&](size_t r) {
      cpu_set_t mine;
      pthread_getaffinity_np(pthread_self(), sizeof(mine), &mine);
      if (CPU_COUNT(&mine) == 1 && CPU_ISSET(threads.cpu(r), &mine)) on[r] = threads.cpu(r);
    });
    EXPECT_EQ(on[0], threads.cpu(0));
    EXPECT_EQ(on[1], threads.cpu(1));
    // A thread started under with_caller_affinity may run anywhere the caller could.
    cpu_set_t started;
    threads.with_caller_affinity([&] {
      std::thread([&] {
        pthread_getaffinity_np(pthread_self(), sizeof(started), &started);
      }).join();
    });
    EXPECT_TRUE(CPU_EQUAL(&started, &before));
    cpu_set_t caller;
    pthread_getaffinity_np(pthread_self(), sizeof(caller), &caller);
    EXPECT_TRUE(CPU_COUNT(&caller) == 1 && CPU_ISSET(threads.cpu(0), &caller))
        << "the caller is bound to replica 0's CPU again";
  }
  cpu_set_t after;
  pthread_getaffinity_np(pthread_self(), sizeof(after), &after);
  EXPECT_TRUE(CPU_EQUAL(&before, &after)) << "the caller's affinity was not restored";
  // More replicas than CPUs: nobody is bound.
  ReplicaThreads many(size_t(CPU_COUNT(&before)) + 1);
  EXPECT_FALSE(many.pinned());
  EXPECT_EQ(many.cpu(0), -1);
}

TEST(ReplicaThreads, RethrowsTheLowestReplicasErrorAfterAllFinished) {
  ReplicaThreads threads(3);
  std::atomic<int> finished{0};
  try {
    threads.run([&](size_t r) {
      if (r == 2) throw Error("replica 2 failed");
      if (r == 1) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        ++finished;
        throw Error("replica 1 failed");
      }
      ++finished;
    });
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "replica 1 failed");
  }
  EXPECT_EQ(finished.load(), 2) << "run() returned before every replica finished";
  // Still usable, and the old errors are gone.
  std::atomic<int> calls{0};
  threads.run([&](size_t) { ++calls; });
  EXPECT_EQ(calls.load(), 3);
}

TEST(ReplicaThreads, OneReplicaRunsOnTheCaller) {
  ReplicaThreads threads(1);
  std::thread::id who;
  threads.run([&](size_t r) {
    EXPECT_EQ(r, 0u);
    who = std::this_thread::get_id();
  });
  EXPECT_EQ(who, std::this_thread::get_id());
  EXPECT_THROW(ReplicaThreads(0), Error);
}

// --- gather: bit for bit the shared-memory all-reduce's arithmetic ------------------------------

TEST(GradientGather, ReplicaZeroGetsTheMeanInRankOrderBitForBit) {
  for (size_t n : {2u, 3u, 4u}) {
    std::vector<std::unique_ptr<Parameter>> owned;
    std::vector<std::vector<Parameter*>> replicas(n);
    std::vector<std::vector<float>> grads(n);
    for (size_t r = 0; r < n; ++r) {
      // Two parameters of odd sizes, so that nothing lines up by chance.
      for (int64_t size : {37, 1000}) {
        owned.push_back(std::make_unique<Parameter>("p" + std::to_string(size), Shape{size}));
        std::vector<float> v = random_values(size_t(size), 100 * r + size_t(size));
        owned.back()->grad.copy_(Tensor::from_vector({size}, v));
        replicas[r].push_back(owned.back().get());
      }
    }
    std::vector<std::vector<float>> before(n);
    for (size_t r = 0; r < n; ++r)
      for (Parameter* p : replicas[r])
        for (float x : p->grad.to_vector()) before[r].push_back(x);
    GradientGather gather(replicas);
    EXPECT_EQ(gather.bytes(), (n - 1) * 1037 * sizeof(float));
    gather.gather();
    std::vector<float> after;
    for (Parameter* p : replicas[0])
      for (float x : p->grad.to_vector()) after.push_back(x);
    const float scale = 1.0f / float(n);
    for (size_t j = 0; j < after.size(); ++j) {
      // runtime/comm/shm_allreduce.cpp's reduce_slice: acc = b0 + b1, acc += b_q, acc *= 1/n.
      float acc = before[0][j] + before[1][j];
      for (size_t q = 2; q < n; ++q) acc += before[q][j];
      acc *= scale;
      ASSERT_EQ(bits_of(after[j]), bits_of(acc)) << n << " replicas, element " << j;
    }
    // The other replicas' gradients are read, not written.
    for (size_t r = 1; r < n; ++r) {
      std::vector<float> now;
      for (Parameter* p : replicas[r])
        for (float x : p->grad.to_vector()) now.push_back(x);
      EXPECT_EQ(now, before[r]);
    }
  }
}

TEST(GradientGather, RefusesReplicasThatDoNotMatch) {
  Parameter a("w", {4}), b("w", {5});
  EXPECT_THROW(GradientGather({{&a}, {&b}}), Error);
  EXPECT_THROW(GradientGather({{&a}, {}}), Error);
}

TEST(MeanOverReplicas, IsTheLossAllReducesArithmetic) {
  const std::vector<float> v = {2.3025851f, 2.2999f, 1.0e-3f, 7.5f};
  EXPECT_EQ(bits_of(mean_over_replicas({v[0], v[1]})), bits_of((v[0] + v[1]) * 0.5f));
  EXPECT_EQ(bits_of(mean_over_replicas(v)), bits_of((((v[0] + v[1]) + v[2]) + v[3]) * 0.25f));
  EXPECT_EQ(mean_over_replicas({v[2]}), v[2]);
}

// --- scatter ----------------------------------------------------------------------------------

TEST(Scatter, ChunkRGetsRowsOfReplicaR) {
  std::vector<float> rows(6 * 3);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = float(i);
  const Tensor global = Tensor::from_vector({6, 3}, rows);
  Tensor out;
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(scatter_chunk(global, 3, r, out, Device::cpu()), 2 * 3 * sizeof(float));
    ASSERT_EQ(out.shape(), (Shape{2, 3}));
    std::vector<float> want(rows.begin() + std::ptrdiff_t(6 * r),
                            rows.begin() + std::ptrdiff_t(6 * r + 6));
    EXPECT_EQ(out.to_vector(), want);
  }
  const void* kept = out.raw();
  scatter_chunk(global, 3, 0, out, Device::cpu());
  EXPECT_EQ(out.raw(), kept) << "the replica's buffer is reused while the shape stays";
  const Tensor labels = Tensor::from_vector({6}, std::vector<int32_t>{0, 1, 2, 3, 4, 5});
  Tensor y;
  scatter_chunk(labels, 2, 1, y, Device::cpu());
  EXPECT_EQ(y.dtype(), DType::i32);
  EXPECT_EQ(std::vector<int32_t>(y.data<int32_t>(), y.data<int32_t>() + 3),
            (std::vector<int32_t>{3, 4, 5}));
  EXPECT_THROW(scatter_chunk(global, 4, 0, out, Device::cpu()), Error);  // 6 rows, 4 chunks
}

// --- replicate --------------------------------------------------------------------------------

TEST(Replicate, CopiesParametersAndBuffersNotGradients) {
  Linear a("fc", 3, 2, 1), b("fc", 3, 2, 2);
  BatchNorm2d bn_a("bn", 2), bn_b("bn", 2);
  ReplicaState sa{a.parameters(), bn_a.buffers()};
  ReplicaState sb{b.parameters(), bn_b.buffers()};
  check_same_replica(sa, sb, 1);
  sa.buffers[0]->value.fill_(0.25f);
  sb.params[0]->grad.fill_(7.0f);
  replicate(sa, sb);
  for (size_t i = 0; i < sa.params.size(); ++i)
    EXPECT_EQ(sb.params[i]->value.to_vector(), sa.params[i]->value.to_vector());
  EXPECT_EQ(sb.buffers[0]->value.to_vector(), (std::vector<float>{0.25f, 0.25f}));
  EXPECT_EQ(sb.params[0]->grad.to_vector(), std::vector<float>(6, 7.0f));
  EXPECT_EQ(replicate_bytes(sa), (6 + 2 + 2 + 2 + 1) * sizeof(float));

  Linear wide("fc", 4, 2, 1);
  ReplicaState sw{wide.parameters(), bn_b.buffers()};
  try {
    check_same_replica(sa, sw, 3);
    FAIL() << "a different shape passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("replica 3"), std::string::npos) << e.what();
  }
}

// --- the global batch order: chunk r of step s is DDP rank r's batch s -------------------------

TEST(GlobalBatchDataset, ChunkRIsDdpRankRsBatch) {
  struct Case {
    size_t size, replicas, batch;
  };
  // Padding (7 and 10 samples do not split evenly), a smaller last batch, one replica.
  for (Case c : {Case{10, 3, 2}, Case{7, 2, 3}, Case{600, 3, 10}, Case{64, 4, 16}, Case{5, 1, 2}}) {
    CountingDataset base(c.size);
    for (uint64_t epoch : {0u, 1u}) {
      GlobalBatchDataset order(base, c.replicas, c.batch, /*seed=*/7, epoch);
      std::vector<std::vector<size_t>> rank_lists;
      for (size_t r = 0; r < c.replicas; ++r) {
        DistributedSampler s(c.size, int(c.replicas), int(r), true, 7, false);
        s.set_epoch(epoch);
        rank_lists.push_back(s.indices());
      }
      const size_t per = rank_lists[0].size();
      ASSERT_EQ(order.per_replica(), per);
      ASSERT_EQ(order.size(), per * c.replicas);
      size_t pos = 0;
      for (size_t first = 0; first < per; first += c.batch) {
        const size_t b = std::min(c.batch, per - first);  // the ranks' batch s
        for (size_t r = 0; r < c.replicas; ++r)
          for (size_t j = 0; j < b; ++j, ++pos)
            ASSERT_EQ(order.base_index(pos), rank_lists[r][first + j])
                << "size " << c.size << ", " << c.replicas << " replicas, batch " << c.batch
                << ", epoch " << epoch << ", replica " << r << ", row " << first + j;
      }
      float x = -1;
      int32_t y = -1;
      order.fill(0, &x, &y);
      EXPECT_EQ(x, float(order.base_index(0)));
    }
  }
}

// --- the trainer ------------------------------------------------------------------------------

namespace {

TrainConfig tiny_config() {
  TrainConfig c;
  c.model = "mlp";
  c.model_options["hidden"] = "16";
  c.data = "synthetic:512";
  c.synthetic_test_size = 64;
  c.batch_size = 16;
  c.epochs = 1;
  c.max_steps = 12;
  c.lr_schedule = "constant";
  c.quiet = true;
  return c;
}

std::vector<float> trained(TrainConfig c, size_t replicas) {
  DataParallelTrainer t(std::move(c), replicas);
  t.run();
  std::vector<float> out;
  for (Parameter* p : t.parameters())
    for (float x : p->value.to_vector()) out.push_back(x);
  return out;
}

}  // namespace

TEST(DataParallelTrainer, TwoReplicasOfBTrainAsOneOf2B) {
  // The DDP contract, which DataParallel keeps: the gradient of N chunks of B averaged is the
  // gradient of the N*B batch (up to float32 rounding: the sums are grouped differently).
  TrainConfig two = tiny_config();
  TrainConfig one = tiny_config();
  one.batch_size = 32;
  const std::vector<float> a = trained(two, 2), b = trained(one, 1);
  ASSERT_EQ(a.size(), b.size());
  const std::vector<float> init = [] {
    TrainConfig c = tiny_config();
    c.max_steps = 1;
    c.lr = 1e-30f;  // one step that changes nothing measurable
    return trained(c, 1);
  }();
  double diff = 0, moved = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, double(std::fabs(a[i] - b[i])));
    moved = std::max(moved, double(std::fabs(b[i] - init[i])));
  }
  EXPECT_GT(moved, 1e-3) << "training did nothing";
  EXPECT_LT(diff, 1e-5) << "2 x 16 differs from 1 x 32 by more than rounding";
  // Deterministic: the same run again gives the same bits.
  EXPECT_EQ(trained(two, 2), a);
}

TEST(DataParallelTrainer, RefusesDdpOnlyOptionsByName) {
  auto refused = [](TrainConfig c, size_t replicas, const std::string& what) {
    try {
      DataParallelTrainer t(std::move(c), replicas);
      ADD_FAILURE() << what << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  TrainConfig c = tiny_config();
  c.sync_batchnorm = true;
  refused(c, 2, "--sync-batchnorm");
  c = tiny_config();
  c.broadcast_buffers = false;
  refused(c, 2, "--no-broadcast-buffers");
  c = tiny_config();
  c.comm_hook = "bf16_compress";
  refused(c, 2, "--comm-hook");
  c = tiny_config();
  c.checkpoint_dir = "/tmp/x";
  refused(c, 2, "--checkpoint-dir");
  refused(tiny_config(), 0, "--replicas");
  c = tiny_config();
  c.data = "synthetic:3";
  refused(c, 4, "--data synthetic:3 holds 3 samples, fewer than the 4 replicas");
}
