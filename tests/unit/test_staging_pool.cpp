// The MPI backend's pool of host staging buffers: reuse by (dtype, numel), any shape, from
// several threads, and leases that outlive the pool.
#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

#include "runtime/comm/staging_pool.h"

using namespace dp;

namespace {

StagingPool host_pool() {
  return StagingPool([](const Shape& s, DType d) { return Tensor::zeros(s, d); });
}

}  // namespace

TEST(StagingPool, ReusesBuffersOfTheSameDtypeAndSize) {
  StagingPool pool = host_pool();
  const void* first = nullptr;
  {
    auto a = pool.acquire({4, 6}, DType::f32);
    EXPECT_EQ(a->shape(), (Shape{4, 6}));
    first = a->raw();
    a->f32()[0] = 7.0f;
  }
  EXPECT_EQ(pool.idle(), 1u);
  auto b = pool.acquire({24}, DType::f32);  // same numel, another shape: the same buffer
  EXPECT_EQ(b->raw(), first);
  EXPECT_EQ(b->f32()[0], 7.0f) << "contents are left as the last user left them";
  auto c = pool.acquire({24}, DType::f32);  // the first is leased: a new one
  EXPECT_NE(c->raw(), first);
  auto d = pool.acquire({24}, DType::i32);  // another dtype: a new one
  auto e = pool.acquire({12}, DType::bf16);
  EXPECT_EQ(pool.allocations(), 4u);
  EXPECT_EQ(pool.idle(), 0u);
}

TEST(StagingPool, SteadyStateAllocatesNothingAcrossThreads) {
  StagingPool pool = host_pool();
  // Taken on one thread, returned on another, as the backend's caller and comm thread do.
  for (int step = 0; step < 50; ++step) {
    std::vector<std::shared_ptr<Tensor>> leases;
    for (size_t n : {100, 2000, 100}) leases.push_back(pool.acquire({int64_t(n)}, DType::f32));
    std::thread([l = std::move(leases)]() mutable { l.clear(); }).join();
  }
  EXPECT_EQ(pool.allocations(), 3u);
  EXPECT_EQ(pool.idle(), 3u);
}

TEST(StagingPool, ALeaseMayOutliveThePool) {
  std::shared_ptr<Tensor> lease;
  {
    StagingPool pool = host_pool();
    lease = pool.acquire({8}, DType::f32);
  }
  lease->f32()[7] = 1.0f;  // still valid memory: the lease owns its buffer
  EXPECT_EQ(lease->to_vector()[7], 1.0f);
  lease.reset();  // returns into the pool's state, which the lease kept alive (no dangling pool)
}
