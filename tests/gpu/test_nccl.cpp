// NcclComm on a real GPU. This binary has gtest_main, not an MPI main, so most tests build a
// world of one WITHOUT MPI (ncclGetUniqueId + the id constructor): fewer moving parts, and
// the collective, event and watchdog logic is the same. The MPI bootstrap is tested over
// MPI_COMM_WORLD, with MPI initialised here once; started plainly that is a world of one,
// and `mpirun -np N dprun_gpu_tests --gtest_filter='NcclMpi.*'` on a node with N GPUs runs
// the same checks as a real N-rank job (expected values are computed for any N).
//
// Data is fresh random every run (the seed is printed on failure) and never zero, and
// out-of-place results land in buffers pre-filled with a NaN pattern, so a collective that
// does nothing, or reads its input too early, cannot pass.
#include <gtest/gtest.h>

#include <mpi.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/comm/cuda/nccl_comm.h"
#include "runtime/core/clock.h"
#include "runtime/core/cuda/allocator.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/pinned.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/error.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

using dp::CudaEvent;
using dp::CudaStream;
using dp::DeviceBuffer;
using dp::NcclComm;
using dp::NcclCommOptions;
using dp::NcclDType;
using dp::ReduceOp;
using namespace std::chrono_literals;

// Element i of rank r's input for a given seed: k / 8 with k a nonzero integer in
// [-64, 64]. Exact in float32 and in bfloat16 (at most 8 significant bits: |k| <= 64 needs
// 7), and sums of up to 16 ranks stay exact in float32, so the expected sum is exact.
float value(uint64_t seed, int rank, size_t i) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t(rank) * 0x100000001B3ull + i + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  int k = int(z % 128) - 64;
  if (k >= 0) ++k;  // -64..-1, 1..64
  return float(k) / 8.0f;
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t(u >> 16);  // exact for the values above: the low half is zero
}

float from_bf16(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint64_t fresh_seed() {
  return (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
}

// "" when equal (bit for bit), else how many elements differ and the first of them: a
// failure must not print a million-element vector.
template <typename T>
std::string diff(const std::vector<T>& got, const std::vector<T>& want) {
  if (got.size() != want.size()) {
    return "size " + std::to_string(got.size()) + " != " + std::to_string(want.size());
  }
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0 && bad++ == 0) first = i;
  }
  if (bad == 0) return "";
  return std::to_string(bad) + " of " + std::to_string(got.size()) + " elements differ, first at " +
         std::to_string(first) + ": got " + std::to_string(got[first]) + ", want " +
         std::to_string(want[first]);
}

// Device buffers filled from host data and read back, all through one stream.
struct Buffers {
  CudaStream& stream;
  std::vector<DeviceBuffer> held;

  void* upload(const void* host, size_t bytes) {
    held.emplace_back(bytes, stream.get(), stream.device());
    DP_CUDA_CHECK(
        cudaMemcpyAsync(held.back().data(), host, bytes, cudaMemcpyHostToDevice, stream.get()));
    return held.back().data();
  }
  void* sentinel(size_t bytes) {  // 0xFF bytes: NaN as float32 and as bfloat16
    held.emplace_back(bytes, stream.get(), stream.device());
    DP_CUDA_CHECK(cudaMemsetAsync(held.back().data(), 0xFF, bytes, stream.get()));
    return held.back().data();
  }
  template <typename T>
  std::vector<T> download(const void* dev, size_t count) {
    std::vector<T> h(count);
    DP_CUDA_CHECK(
        cudaMemcpyAsync(h.data(), dev, count * sizeof(T), cudaMemcpyDeviceToHost, stream.get()));
    stream.synchronize();
    return h;
  }
  // The comm stream reads and writes these buffers: the allocator must know (allocator.h).
  void used_by(cudaStream_t s) {
    for (auto& b : held) b.record_stream(s);
  }
};

NcclCommOptions quick_options() {
  NcclCommOptions o;
  o.init_timeout = 60s;
  o.timeout = 60s;
  return o;
}

// A world of one without MPI, on cuda:0.
std::unique_ptr<NcclComm> solo(NcclCommOptions o = quick_options()) {
  DP_CUDA_CHECK(cudaSetDevice(0));
  return std::make_unique<NcclComm>(NcclComm::unique_id(), 0, 1, 0, o);
}

// The ready event the compute stream records after "writing the gradients".
CudaEvent ready_on(CudaStream& s) {
  CudaEvent e(false, s.device());
  e.record(s);
  return e;
}

const size_t kOddSizes[] = {1, 7, 1001, 65537, (size_t(1) << 20) + 3};

// ---------------------------------------------------------------------------------------
// Without a GPU

TEST(NcclDevice, LocalRankPicksItsGpu) {
  EXPECT_EQ(dp::select_nccl_device(0, "n0", 0, 4, 8, -1), 0);
  EXPECT_EQ(dp::select_nccl_device(5, "n1", 1, 4, 4, -1), 1);
  EXPECT_EQ(dp::select_nccl_device(3, "n0", 3, 4, 4, -1), 3);
  EXPECT_EQ(dp::select_nccl_device(0, "n0", 0, 1, 2, 1), 1);  // an explicit device
}

TEST(NcclDevice, MoreRanksThanGpusIsRefused) {
  try {
    dp::select_nccl_device(6, "node3", 2, 3, 2, -1);
    FAIL() << "3 ranks on 2 GPUs was accepted";
  } catch (const dp::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rank 6"), std::string::npos) << m;
    EXPECT_NE(m.find("node3"), std::string::npos) << m;
    EXPECT_NE(m.find("NCCL refuses two ranks on one GPU"), std::string::npos) << m;
    EXPECT_NE(m.find("--backend mpi --allow-device-sharing"), std::string::npos) << m;
  }
}

// Slurm's per-task binding (--gpus-per-task=1): every rank of a 4-rank node sees only its own
// GPU, as cuda:0. The launcher has compared the GPUs' UUIDs and passes the device it planned;
// counting one visible GPU against 4 local ranks must not refuse that.
TEST(NcclDevice, ExplicitDeviceUnderPerTaskGpuBinding) {
  for (int lr = 0; lr < 4; ++lr) EXPECT_EQ(dp::select_nccl_device(4 + lr, "n1", lr, 4, 1, 0), 0);
  EXPECT_THROW(dp::select_nccl_device(4, "n1", 0, 4, 1, -1), dp::Error);  // no device named
  EXPECT_THROW(dp::select_nccl_device(4, "n1", 0, 4, 1, 1), dp::Error);   // not visible
}

TEST(NcclDevice, NoGpuOrBadDeviceIsRefused) {
  EXPECT_THROW(dp::select_nccl_device(0, "n0", 0, 1, 0, -1), dp::Error);
  EXPECT_THROW(dp::select_nccl_device(0, "n0", 0, 1, 2, 2), dp::Error);
  EXPECT_THROW(dp::select_nccl_device(0, "n0", 1, 1, 2, -1), dp::Error);
}

TEST(NcclDType, SizesAndNames) {
  EXPECT_EQ(dp::nccl_dtype_size(NcclDType::f32), 4u);
  EXPECT_EQ(dp::nccl_dtype_size(NcclDType::bf16), 2u);
  EXPECT_EQ(dp::nccl_dtype_size(NcclDType::i32), 4u);
  EXPECT_STREQ(dp::nccl_dtype_name(NcclDType::bf16), "bfloat16");
}

// ---------------------------------------------------------------------------------------
// A world of one, without MPI

TEST(NcclSolo, CommunicatorBasics) {
  DP_REQUIRE_GPU();
  auto comm = solo();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_EQ(comm->device(), 0);
  EXPECT_NE(comm->stream(), nullptr);
  EXPECT_FALSE(comm->aborted());
  EXPECT_EQ(comm->issued(), 0u);
  comm->finalize();
  comm->finalize();  // twice is harmless
  EXPECT_THROW(comm->allreduce(nullptr, 0, NcclDType::f32, ReduceOp::sum, nullptr), dp::Error);
}

TEST(NcclSolo, AllReduceSumAndAvgFloat32) {
  DP_REQUIRE_GPU();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto comm = solo();
  CudaStream compute(0);
  uint64_t expected_seq = 0;
  for (size_t n : kOddSizes) {
    for (ReduceOp op : {ReduceOp::sum, ReduceOp::avg}) {
      std::vector<float> in(n);
      for (size_t i = 0; i < n; ++i) in[i] = value(seed + n, 0, i);
      Buffers b{compute, {}};
      void* send = b.upload(in.data(), n * 4);
      void* recv = b.sentinel(n * 4);
      void* inplace = b.upload(in.data(), n * 4);
      CudaEvent ready = ready_on(compute);
      auto w1 = comm->allreduce(send, recv, n, NcclDType::f32, op, ready.get(), "oop");
      auto w2 = comm->allreduce(inplace, n, NcclDType::f32, op, ready.get(), "inplace");
      w1->wait();
      w2->wait();
      EXPECT_EQ(w1->seq(), ++expected_seq);
      EXPECT_EQ(w2->seq(), ++expected_seq);
      EXPECT_TRUE(w1->done());
      EXPECT_GE(w1->elapsed_ms(), 0.0f);
      b.used_by(comm->stream());
      // World of one: sum and avg are the input itself, bit for bit.
      EXPECT_EQ(diff(b.download<float>(recv, n), in), "") << "n=" << n << " op=" << int(op);
      EXPECT_EQ(diff(b.download<float>(inplace, n), in), "") << "n=" << n << " op=" << int(op);
      EXPECT_EQ(diff(b.download<float>(send, n), in), "")
          << "out-of-place all-reduce changed its input";
    }
  }
  EXPECT_EQ(comm->issued(), expected_seq);
}

TEST(NcclSolo, AllReduceBfloat16) {
  DP_REQUIRE_GPU();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto comm = solo();
  CudaStream compute(0);
  for (size_t n : kOddSizes) {
    std::vector<uint16_t> in(n);
    for (size_t i = 0; i < n; ++i) in[i] = to_bf16(value(seed, 0, i));
    Buffers b{compute, {}};
    void* send = b.upload(in.data(), n * 2);
    void* recv = b.sentinel(n * 2);
    CudaEvent ready = ready_on(compute);
    comm->allreduce(send, recv, n, NcclDType::bf16, ReduceOp::avg, ready.get(), "bf16")->wait();
    b.used_by(comm->stream());
    EXPECT_EQ(diff(b.download<uint16_t>(recv, n), in), "") << "n=" << n;
  }
}

TEST(NcclSolo, BroadcastAndAllGather) {
  DP_REQUIRE_GPU();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto comm = solo();
  CudaStream compute(0);
  for (size_t n : kOddSizes) {
    std::vector<float> in(n);
    for (size_t i = 0; i < n; ++i) in[i] = value(seed, 0, i);
    Buffers b{compute, {}};
    void* send = b.upload(in.data(), n * 4);
    void* bc = b.sentinel(n * 4);
    void* ag = b.sentinel(n * 4);
    CudaEvent ready = ready_on(compute);
    auto wb = comm->broadcast(send, bc, n, NcclDType::f32, 0, ready.get(), "bcast");
    auto wg = comm->allgather(send, ag, n, NcclDType::f32, ready.get(), "gather");
    EXPECT_NE(wb->description().find("broadcast(root=0) float32[" + std::to_string(n) + "]"),
              std::string::npos)
        << wb->description();
    EXPECT_NE(wg->description().find("'gather'"), std::string::npos) << wg->description();
    wb->wait();
    wg->wait();
    b.used_by(comm->stream());
    EXPECT_EQ(diff(b.download<float>(bc, n), in), "") << "broadcast n=" << n;
    EXPECT_EQ(diff(b.download<float>(ag, n), in), "") << "allgather n=" << n;
  }
}

// The comm stream must wait for `ready` (the compute stream's writes), and the compute
// stream for the collective (block_stream), with the host never blocking in between.
TEST(NcclSolo, ReadyEventAndBlockStreamOrderTheStreams) {
  DP_REQUIRE_GPU();
  const uint64_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto comm = solo();
  CudaStream compute(0);
  const size_t n = 4 * 1024 * 1024 + 1;
  std::vector<float> in(n);
  for (size_t i = 0; i < n; ++i) in[i] = value(seed, 0, i);
  dp::PinnedBuffer host_in(n * 4), host_out(n * 4);
  std::memcpy(host_in.data(), in.data(), n * 4);
  Buffers b{compute, {}};
  void* send = b.sentinel(n * 4);
  void* recv = b.sentinel(n * 4);
  // Loads NCCL's kernel for this op now: with lazy module loading its first launch may wait
  // for the spinning kernel below and block the host in the issue.
  comm->allreduce(send, recv, 1, NcclDType::f32, ReduceOp::avg, ready_on(compute).get())->wait();
  compute.synchronize();
  // "Backward": slow, then writes the gradients.
  dp::test::launch_spin(compute.get(), 1000);
  DP_CUDA_CHECK(
      cudaMemcpyAsync(send, host_in.data(), n * 4, cudaMemcpyHostToDevice, compute.get()));
  CudaEvent ready = ready_on(compute);
  const double t0 = dp::now_us();
  auto work = comm->allreduce(send, recv, n, NcclDType::f32, ReduceOp::avg, ready.get(), "bucket");
  EXPECT_LT(dp::now_us() - t0, 500e3) << "issuing the collective blocked the host";
  EXPECT_FALSE(work->done());
  // "Optimizer": reads the averaged gradients after the collective, on the compute stream.
  work->block_stream(compute.get());
  DP_CUDA_CHECK(
      cudaMemcpyAsync(host_out.data(), recv, n * 4, cudaMemcpyDeviceToHost, compute.get()));
  compute.synchronize();
  EXPECT_TRUE(work->done());
  work->wait();
  b.used_by(comm->stream());
  // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
  EXPECT_EQ(std::memcmp(host_out.data(), in.data(), n * 4), 0)
      << "the collective read its input before the ready event, or the copy-out ran before "
         "the collective";
  EXPECT_GT(work->complete_us(), work->enqueue_us());
}

// Steady state with the comm stream in the loop: allocate the bucket, all-reduce, wait, free
// with record_stream: from the second step on, no cudaMalloc.
TEST(NcclSolo, SteadyStateBucketsMakeNoCudaMalloc) {
  DP_REQUIRE_GPU();
  auto comm = solo();
  CudaStream compute(0);
  dp::CachingAllocator alloc;
  const std::vector<size_t> buckets = {1 << 18, 25 << 18, 25 << 18, 3 << 18};  // floats
  auto step = [&] {
    std::vector<void*> ptrs;
    std::vector<dp::NcclWorkPtr> works;
    for (size_t n : buckets) {
      void* p = alloc.allocate(n * 4, compute.get(), 0);
      DP_CUDA_CHECK(cudaMemsetAsync(p, 0, n * 4, compute.get()));
      CudaEvent ready = ready_on(compute);
      works.push_back(comm->allreduce(p, n, NcclDType::f32, ReduceOp::avg, ready.get()));
      alloc.record_stream(p, comm->stream());
      ptrs.push_back(p);
    }
    for (auto& w : works) w->wait(30s);
    for (void* p : ptrs) alloc.free(p);
    // The events free() just recorded on the comm stream complete a few microseconds later;
    // in training the next step's allocations come much later than that. Here they would
    // come at once, so let the stream get there first.
    DP_CUDA_CHECK(cudaStreamSynchronize(comm->stream()));
  };
  step();
  step();
  const auto warm = alloc.stats();
  for (int i = 0; i < 10; ++i) step();
  EXPECT_EQ(alloc.stats().cuda_malloc_calls, warm.cuda_malloc_calls) << alloc.stats().str();
}

TEST(NcclSolo, BadArgumentsFailWithoutBreakingTheCommunicator) {
  DP_REQUIRE_GPU();
  auto comm = solo();
  CudaStream compute(0);
  DeviceBuffer buf(4096, compute.get(), 0);
  EXPECT_THROW(comm->allreduce(buf.data(), 16, NcclDType::i32, ReduceOp::avg, nullptr), dp::Error);
  EXPECT_THROW(comm->broadcast(buf.data(), 16, NcclDType::f32, 1, nullptr), dp::Error);
  EXPECT_THROW(comm->allreduce(nullptr, 16, NcclDType::f32, ReduceOp::sum, nullptr), dp::Error);
  EXPECT_THROW(
      comm->allreduce(buf.data(), buf.as<char>() + 4, 16, NcclDType::f32, ReduceOp::sum, nullptr),
      dp::Error);                 // overlapping send and receive
  EXPECT_EQ(comm->issued(), 0u);  // refused before a sequence number was taken
  EXPECT_FALSE(comm->aborted());
  compute.synchronize();
  auto w = comm->allreduce(buf.data(), 16, NcclDType::i32, ReduceOp::sum, nullptr);
  w->wait();
  EXPECT_EQ(w->seq(), 1u);
  buf.record_stream(comm->stream());
}

// The watchdog: a collective that cannot finish in time aborts the communicator and throws a
// message that names the rank, the sequence number, the description and the time; it does
// not hang, and neither does the communicator's destruction afterwards.
TEST(NcclSolo, WaitTimeoutAbortsAndNamesTheCollective) {
  DP_REQUIRE_GPU();
  auto comm = solo();
  CudaStream compute(0);
  DeviceBuffer buf(1 << 20, compute.get(), 0);
  DP_CUDA_CHECK(cudaMemsetAsync(buf.data(), 0, 1 << 20, compute.get()));
  // The same op first: a world of one runs an avg as a kernel of NCCL's, and with lazy module
  // loading (CUDA 12.2+ default) its first launch may wait for the spinning kernel below,
  // blocking the host in the issue until the collective could run after all.
  comm->allreduce(buf.data(), 16, NcclDType::f32, ReduceOp::avg, ready_on(compute).get())->wait();
  // The ready event completes only after a 1.5 s kernel: the collective cannot start.
  dp::test::launch_spin(compute.get(), 1500);
  CudaEvent ready = ready_on(compute);
  auto w =
      comm->allreduce(buf.data(), 1001, NcclDType::f32, ReduceOp::avg, ready.get(), "bucket 7");
  // The analyzer follows no exception: to it the try always ends in FAIL()'s return.
  // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): read after the catch
  const auto t0 = std::chrono::steady_clock::now();
  try {
    w->wait(200ms);
    FAIL() << "wait() returned although the collective could not have run";
  } catch (const dp::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rank 0 of 1"), std::string::npos) << m;
    EXPECT_NE(m.find("#2"), std::string::npos) << m;
    EXPECT_NE(m.find("allreduce(avg) float32[1001] 'bucket 7'"), std::string::npos) << m;
    EXPECT_NE(m.find("did not complete within 0.2 s"), std::string::npos) << m;
    EXPECT_NE(m.find("aborted"), std::string::npos) << m;
  }
  const double waited =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(waited, 10.0) << "the timeout path itself took too long";
  EXPECT_TRUE(comm->aborted());
  EXPECT_TRUE(w->done());
  EXPECT_THROW(w->wait(), dp::Error);  // again: still an error, not a success
  try {
    comm->allreduce(buf.data(), 16, NcclDType::f32, ReduceOp::sum, nullptr);
    FAIL() << "a collective was issued on an aborted communicator";
  } catch (const dp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("aborted earlier"), std::string::npos) << e.what();
  }
  EXPECT_THROW(comm->finalize(), dp::Error);
  comm.reset();  // must return: no ncclCommDestroy on an aborted communicator
  DP_CUDA_CHECK(cudaDeviceSynchronize());  // and the device is healthy afterwards
}

// wait() without a timeout still has a deadline: the communicator's options.timeout.
TEST(NcclSolo, WaitWithoutTimeoutUsesTheCommunicatorDeadline) {
  DP_REQUIRE_GPU();
  NcclCommOptions o = quick_options();
  o.timeout = 300ms;
  auto comm = solo(o);
  CudaStream compute(0);
  DeviceBuffer buf(4096, compute.get(), 0);
  DP_CUDA_CHECK(cudaMemsetAsync(buf.data(), 0, 4096, compute.get()));
  comm->allreduce(buf.data(), 16, NcclDType::f32, ReduceOp::sum, ready_on(compute).get())->wait();
  dp::test::launch_spin(compute.get(), 1500);
  auto w = comm->allreduce(buf.data(), 16, NcclDType::f32, ReduceOp::sum, ready_on(compute).get());
  EXPECT_THROW(w->wait(), dp::Error);
  EXPECT_TRUE(comm->aborted());
  comm.reset();
  DP_CUDA_CHECK(cudaDeviceSynchronize());
}

TEST(NcclSolo, ExplicitAbort) {
  DP_REQUIRE_GPU();
  auto comm = solo();
  comm->abort("test says so");
  EXPECT_TRUE(comm->aborted());
  try {
    comm->broadcast(nullptr, 0, NcclDType::f32, 0, nullptr);
    FAIL();
  } catch (const dp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("test says so"), std::string::npos) << e.what();
  }
}

// Set-up whose peer never arrives (rank 0 of 2, rank 1 never starts) ends at the deadline
// with an abort and a message, instead of hanging in ncclCommInitRank.
TEST(NcclSolo, InitWithAMissingPeerTimesOut) {
  DP_REQUIRE_GPU();
  DP_CUDA_CHECK(cudaSetDevice(0));
  NcclCommOptions o = quick_options();
  o.init_timeout = 3s;
  // The analyzer follows no exception: to it the try always ends in FAIL()'s return.
  // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): read after the catch
  const auto t0 = std::chrono::steady_clock::now();
  try {
    NcclComm comm(NcclComm::unique_id(), 0, 2, 0, o);
    FAIL() << "a 2-rank communicator was created with one rank";
  } catch (const dp::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rank 0 of 2"), std::string::npos) << m;
    EXPECT_NE(m.find("did not complete within 3.0 s"), std::string::npos) << m;
  }
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(took, 2.5);
  EXPECT_LT(took, 60.0) << "aborting the set-up took too long";
}

TEST(NcclSolo, ExceptionUnwindingAbortsInsteadOfWaitingInFinalize) {
  DP_REQUIRE_GPU();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): held to be destroyed by the unwinding
    auto comm = solo();
    throw std::runtime_error("unrelated failure");
  } catch (const std::runtime_error&) {
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
}

// ---------------------------------------------------------------------------------------
// Over MPI (world of one here; N ranks under mpirun)

using dp::gpu_test::ensure_mpi;

TEST(NcclMpi, BootstrapAndCollectivesOverMpiWorld) {
  DP_REQUIRE_GPU();
  ensure_mpi();
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  uint64_t seed = fresh_seed();
  MPI_Bcast(&seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
  SCOPED_TRACE("seed " + std::to_string(seed) + ", rank " + std::to_string(rank));
  NcclComm comm(MPI_COMM_WORLD, quick_options());
  ASSERT_EQ(comm.rank(), rank);
  ASSERT_EQ(comm.size(), world);
  DP_CUDA_CHECK(cudaSetDevice(comm.device()));
  CudaStream compute(comm.device());
  for (size_t n : kOddSizes) {
    std::vector<float> in(n), sum(n, 0.0f), root_data(n), gathered(n * size_t(world));
    for (size_t i = 0; i < n; ++i) {
      in[i] = value(seed + n, rank, i);
      root_data[i] = value(seed + n, world - 1, i);
      for (int r = 0; r < world; ++r) {
        sum[i] += value(seed + n, r, i);
        gathered[size_t(r) * n + i] = value(seed + n, r, i);
      }
    }
    Buffers b{compute, {}};
    void* send = b.upload(in.data(), n * 4);
    void* s_recv = b.sentinel(n * 4);
    void* a_recv = b.sentinel(n * 4);
    void* bc = b.upload(in.data(), n * 4);
    void* ag = b.sentinel(n * 4 * size_t(world));
    CudaEvent ready = ready_on(compute);
    auto w1 = comm.allreduce(send, s_recv, n, NcclDType::f32, ReduceOp::sum, ready.get());
    auto w2 = comm.allreduce(send, a_recv, n, NcclDType::f32, ReduceOp::avg, ready.get());
    auto w3 = comm.broadcast(bc, n, NcclDType::f32, world - 1, ready.get());
    auto w4 = comm.allgather(send, ag, n, NcclDType::f32, ready.get());
    for (auto& w : {w1, w2, w3, w4}) w->wait(60s);
    b.used_by(comm.stream());
    EXPECT_EQ(diff(b.download<float>(s_recv, n), sum), "") << "sum, n=" << n;
    // NCCL may pre-multiply by 1/N before summing, which rounds: tolerate a few ulps of the
    // magnitudes involved (exact for a world of one or a power of two).
    const auto avg = b.download<float>(a_recv, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      float mag = 0;
      for (int r = 0; r < world; ++r) mag += std::fabs(value(seed + n, r, i));
      const float want = sum[i] / float(world);
      bad += std::fabs(avg[i] - want) > 4e-6f * mag;
    }
    EXPECT_EQ(bad, 0u) << "avg, n=" << n;
    EXPECT_EQ(diff(b.download<float>(bc, n), root_data), "") << "broadcast, n=" << n;
    EXPECT_EQ(diff(b.download<float>(ag, n * size_t(world)), gathered), "") << "allgather, n=" << n;
  }
  comm.finalize();
}

}  // namespace
