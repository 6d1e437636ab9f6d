// ProcessGroups on CUDA tensors: NcclProcessGroup (a world of one without MPI, plus the MPI
// bootstrap) and the MPI backend's host staging. Started plainly (ctest) every group is a
// world of one. The MPI-staging tests also run as N ranks SHARING one GPU, which is how
// multi-rank GPU logic is tested on a one-GPU machine:
//   mpirun -np 2 build/tests/dprun_gpu_tests --gtest_filter='MpiStaging.*'
//   mpirun -np 4 build/tests/dprun_gpu_tests --gtest_filter='MpiStaging.*'
// and on a node with N GPUs `mpirun -np N ... --gtest_filter='NcclGroupMpi.*'` runs the NCCL
// group for real (expected values are computed for any world size).
#include <gtest/gtest.h>

#include <mpi.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "runtime/comm/cuda/nccl_process_group.h"
#include "runtime/comm/gather_strings.h"
#include "runtime/comm/mpi_process_group.h"
#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/error.h"
#include "runtime/core/tensor.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

using dp::Device;
using dp::DType;
using dp::ReduceOp;
using dp::Tensor;
using namespace std::chrono_literals;

const std::vector<size_t> kSizes = {1, 7, 257, 4097, 100003};

// Element i of rank r's data: a small nonzero multiple of 1/8, so sums over ranks are exact.
float value(int rank, size_t i, size_t salt) {
  const int k = static_cast<int>((i * 7919 + size_t(rank) * 104729 + salt * 31) % 64) - 32;
  return static_cast<float>(k >= 0 ? k + 1 : k) / 8.0f;
}

std::vector<float> values(int rank, size_t n, size_t salt) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = value(rank, i, salt);
  return v;
}

Tensor on_gpu(const std::vector<float>& v, int device) {
  return Tensor::from_vector({static_cast<int64_t>(v.size())}, v).to(Device::cuda(device));
}

using dp::gpu_test::ensure_mpi;

dp::NcclProcessGroupOptions quick() {
  dp::NcclProcessGroupOptions o;
  o.device = 0;
  o.init_timeout = 60s;
  o.timeout = 60s;
  return o;
}

std::unique_ptr<dp::NcclProcessGroup> solo(dp::NcclProcessGroupOptions o = quick()) {
  DP_CUDA_CHECK(cudaSetDevice(0));
  dp::NcclCommOptions c;
  c.init_timeout = o.init_timeout;
  c.timeout = o.timeout;
  auto comm = std::make_unique<dp::NcclComm>(dp::NcclComm::unique_id(), 0, 1, 0, c);
  return std::make_unique<dp::NcclProcessGroup>(std::move(comm), o);
}

// The checks every world size shares: sum, avg, broadcast from the last rank, allgather,
// on CUDA tensors and on CPU tensors (staged by the group).
void check_collectives(dp::ProcessGroup& pg, int device) {
  const int rank = pg.rank(), world = pg.size();
  for (size_t n : kSizes) {
    SCOPED_TRACE("n=" + std::to_string(n));
    std::vector<float> sum(n, 0.0f), gathered;
    for (int r = 0; r < world; ++r) {
      std::vector<float> v = values(r, n, n);
      for (size_t i = 0; i < n; ++i) sum[i] += v[i];
      gathered.insert(gathered.end(), v.begin(), v.end());
    }
    std::vector<float> avg(sum);
    for (float& x : avg) x /= float(world);

    Tensor s = on_gpu(values(rank, n, n), device);
    Tensor a = on_gpu(values(rank, n, n), device);
    Tensor b = on_gpu(values(rank, n, n), device);
    Tensor g =
        Tensor::zeros({static_cast<int64_t>(n * size_t(world))}, DType::f32, Device::cuda(device));
    Tensor in = on_gpu(values(rank, n, n), device);
    // All four in flight at once: the group must keep them in order and their buffers alive.
    auto w1 = pg.allreduce(s, ReduceOp::sum, "sum");
    auto w2 = pg.allreduce(a, ReduceOp::avg, "avg");
    auto w3 = pg.broadcast(b, world - 1, "bcast");
    auto w4 = pg.allgather(in, g, "gather");
    for (auto& w : {w1, w2, w3, w4}) {
      w->wait(60s);
      EXPECT_TRUE(w->done());
      EXPECT_LE(w->start_us(), w->end_us()) << w->description();
    }
    EXPECT_TRUE(dp::gpu_test::all_equal(s.to_vector(), sum));
    EXPECT_TRUE(dp::gpu_test::all_close(a.to_vector(), avg, 1e-6, 1.0));
    EXPECT_TRUE(dp::gpu_test::all_equal(b.to_vector(), values(world - 1, n, n)));
    EXPECT_TRUE(dp::gpu_test::all_equal(g.to_vector(), gathered));

    // CPU tensors: the control collectives (eval totals, settings check).
    Tensor c = Tensor::from_vector({static_cast<int64_t>(n)}, values(rank, n, n));
    pg.allreduce(c, ReduceOp::sum, "cpu sum")->wait(60s);
    EXPECT_TRUE(dp::gpu_test::all_equal(c.to_vector(), sum));
  }
  const std::vector<std::string> names =
      dp::allgather_strings(pg, "rank" + std::to_string(rank), 60s, "names");
  ASSERT_EQ(names.size(), size_t(world));
  for (int r = 0; r < world; ++r) EXPECT_EQ(names[size_t(r)], "rank" + std::to_string(r));
  pg.barrier("end")->wait(60s);
}

TEST(NcclGroup, CollectivesOnCudaAndCpuTensors) {
  DP_REQUIRE_GPU();
  auto pg = solo();
  EXPECT_EQ(pg->backend(), "nccl");
  EXPECT_EQ(pg->size(), 1);
  Tensor buf = pg->allocate(1000, DType::f32, Device::cuda(0));
  EXPECT_TRUE(buf.is_cuda());
  EXPECT_EQ(buf.numel(), 1000u);
  EXPECT_FALSE(pg->allocate(10).is_cuda());
  check_collectives(*pg, 0);
}

TEST(NcclGroup, WorkHasDeviceTime) {
  DP_REQUIRE_GPU();
  auto pg = solo();
  Tensor t = on_gpu(values(0, 1 << 20, 3), 0);
  auto w = pg->allreduce(t, ReduceOp::sum, "timed");
  w->wait(60s);
  EXPECT_GE(w->device_ms(), 0.0);
  EXPECT_GT(w->end_us(), 0.0);
  EXPECT_NE(w->description().find("'timed'"), std::string::npos) << w->description();
}

TEST(NcclGroup, BadArgumentsFailBeforeAnythingIsIssued) {
  DP_REQUIRE_GPU();
  auto pg = solo();
  Tensor i = Tensor::zeros({4}, DType::i32, Device::cuda(0));
  EXPECT_THROW(pg->allreduce(i, ReduceOp::avg), dp::Error);  // integer average
  Tensor t = Tensor::zeros({4}, DType::f32, Device::cuda(0));
  EXPECT_THROW(pg->broadcast(t, 1), dp::Error);  // root out of range
  Tensor out_cpu = Tensor::zeros({4});
  EXPECT_THROW(pg->allgather(t, out_cpu), dp::Error);  // mixed devices
  pg->allreduce(t, ReduceOp::sum)->wait(60s);          // still healthy
}

TEST(NcclGroup, TimeoutAbortsAndFailsEveryPendingWork) {
  DP_REQUIRE_GPU();
  dp::NcclProcessGroupOptions o = quick();
  o.timeout = 300ms;
  auto pg = solo(o);
  Tensor t = on_gpu(values(0, 1001, 1), 0);
  Tensor u = on_gpu(values(0, 17, 2), 0);
  // Both ops once before the spin: a world of one runs the avg as a kernel of NCCL's, whose
  // first launch (lazy module loading) may wait for the spinning kernel, blocking the issue.
  pg->allreduce(t, ReduceOp::avg, "warm-up")->wait(60s);
  pg->allreduce(u, ReduceOp::sum, "warm-up")->wait(60s);
  // The compute stream is busy for 2 s: the collectives' ready event cannot complete, so
  // they cannot start within their 300 ms deadline.
  dp::test::launch_spin(dp::compute_stream(0), 2000);
  // The analyzer follows no exception: to it the first try always ends in FAIL()'s return.
  // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): read after the catches
  const auto t0 = std::chrono::steady_clock::now();
  auto w1 = pg->allreduce(t, ReduceOp::avg, "bucket 7");
  auto w2 = pg->allreduce(u, ReduceOp::sum, "bucket 8");
  try {
    w1->wait();  // no timeout of its own: the watchdog must complete it
    FAIL() << "the collective completed although it could not have run";
  } catch (const dp::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("allreduce(avg) float32[1001] on cuda:0 'bucket 7'"), std::string::npos) << m;
    EXPECT_NE(m.find("did not complete"), std::string::npos) << m;
    EXPECT_NE(m.find("aborted"), std::string::npos) << m;
  }
  try {
    w2->wait();
    FAIL() << "the second collective completed on an aborted communicator";
  } catch (const dp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'bucket 8'"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
  EXPECT_TRUE(pg->comm().aborted());
  EXPECT_THROW(pg->allreduce(t, ReduceOp::sum, "after"), dp::Error);
  pg.reset();  // returns: nothing left to wait for
  DP_CUDA_CHECK(cudaDeviceSynchronize());
}

TEST(NcclGroupMpi, BootstrapOverMpiWorld) {
  DP_REQUIRE_GPU();
  ensure_mpi();
  dp::NcclProcessGroupOptions o = quick();
  o.device = -1;  // cuda:<local rank>
  dp::NcclProcessGroup pg(MPI_COMM_WORLD, o);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  EXPECT_EQ(pg.rank(), rank);
  check_collectives(pg, pg.device());
}

// The MPI backend on CUDA tensors: copied to the host, reduced by MPI, copied back.
TEST(MpiStaging, CollectivesOnCudaTensors) {
  DP_REQUIRE_GPU();
  const int device = dp::gpu_test::mpi_rank_device();
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  for (bool shm : {true, false}) {
    SCOPED_TRACE(shm ? "shared memory on" : "shared memory off");
    dp::MpiProcessGroupOptions o;
    o.shared_memory = shm;
    o.max_count_per_call = 1000;  // the chunked MPI path too
    o.ring_min_bytes = 4096;      // and the ring all-reduce for the larger sizes
    dp::MpiProcessGroup pg(MPI_COMM_WORLD, o);
    Tensor buf = pg.allocate(4096, DType::f32, Device::cuda(device));
    ASSERT_TRUE(buf.is_cuda());
    EXPECT_EQ(buf.device().index, device);
    EXPECT_EQ(buf.to_vector(), std::vector<float>(4096, 0.0f));
    check_collectives(pg, device);
    // A view of an allocate()d device buffer, as the Reducer's buckets are.
    Tensor view = buf.view(100, {257});
    view.copy_(Tensor::from_vector({257}, values(rank, 257, 9)));
    std::vector<float> sum(257, 0.0f);
    for (int r = 0; r < pg.size(); ++r)
      for (size_t i = 0; i < 257; ++i) sum[i] += value(r, i, 9);
    pg.allreduce(view, ReduceOp::sum, "bucket view")->wait(60s);
    EXPECT_TRUE(dp::gpu_test::all_equal(view.to_vector(), sum));
    const std::vector<float> all = buf.to_vector();
    EXPECT_EQ(all[99], 0.0f);  // nothing outside the view was touched
    EXPECT_EQ(all[357], 0.0f);
    // Staging goes through pinned buffers that are reused: repeating a collective of a
    // shape already staged allocates no more page-locked memory.
    const size_t staged = pg.staging_buffers();
    EXPECT_GT(staged, 0u);
    for (int i = 0; i < 5; ++i) pg.allreduce(view, ReduceOp::sum, "again")->wait(60s);
    EXPECT_EQ(pg.staging_buffers(), staged);
  }
}

}  // namespace
