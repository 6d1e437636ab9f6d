// The bf16_compress and fp16_compress comm hooks and bfloat16/float16 collectives on CUDA
// tensors: the NCCL group (a
// world of one without MPI) and the MPI backend's host staging. Started plainly (ctest) every
// group is a world of one; the MPI tests also run as N ranks sharing one GPU:
//   mpirun -np 2 build/tests/dprun_gpu_tests --gtest_filter='CommHookCudaMpi.*'
// (expected values are computed for any world size).
#include <gtest/gtest.h>

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "models/mlp.h"
#include "runtime/comm/cuda/nccl_process_group.h"
#include "runtime/comm/mpi_process_group.h"
#include "runtime/core/cuda/allocator.h"
#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/error.h"
#include "runtime/core/half_float.h"
#include "runtime/core/tensor.h"
#include "runtime/ddp/comm_hook.h"
#include "runtime/ddp/reducer.h"
#include "tests/gpu/gpu_test_util.h"

namespace {

using dp::bf16;
using dp::Device;
using dp::DType;
using dp::f16;
using dp::ReduceOp;
using dp::Tensor;
using namespace std::chrono_literals;

// Rank r's element i: an H value whose sums over ranks need rounding.
template <typename H>
float value(int rank, size_t i) {
  const float s = std::sin(0.37f * float(i) + 1.3f * float(rank) + 0.1f);
  return dp::round_to<H>(std::ldexp(s, int(i % 9) - 4));
}

// Not 16-bit values: the hook must round them.
float raw_value(int rank, size_t i) {
  return std::sin(0.011f * float(i) + 0.7f * float(rank)) / 3.0f;
}

template <typename H>
Tensor half_on(Device d, size_t n, int rank) {
  Tensor h = Tensor::zeros({int64_t(n)}, dp::dtype_of<H>::value);
  for (size_t i = 0; i < n; ++i) h.data<H>()[i] = dp::narrow<H>(value<H>(rank, i));
  return h.to(d);
}

template <typename H>
std::vector<uint16_t> bits_of(const Tensor& t) {
  Tensor h = t.to(Device::cpu());
  std::vector<uint16_t> b(h.numel());
  for (size_t i = 0; i < b.size(); ++i) b[i] = h.data<H>()[i].bits;
  return b;
}

// One ulp of H at |x| (bfloat16: 8 significant bits, float16: 11 and at least 2^-24).
template <typename H>
float ulp(float x) {
  int e = 0;
  std::frexp(x, &e);
  if (std::is_same<H, f16>::value) return std::max(std::ldexp(1.0f, e - 11), 0x1p-24f);
  return x == 0.0f ? 0.0f : std::ldexp(1.0f, e - 8);
}

// sum/avg of 16-bit CUDA tensors against the float32 reduction of every rank's inputs: exact
// for one rank, within one ulp per combine otherwise (NCCL and MPI_Allreduce round every
// combine). Broadcast and allgather move the bits.
template <typename H>
void check_half_collectives(dp::ProcessGroup& pg, int device) {
  const int rank = pg.rank(), world = pg.size();
  const Device d = Device::cuda(device);
  for (size_t n : {size_t(1), size_t(257), size_t(100003)}) {
    SCOPED_TRACE("n=" + std::to_string(n));
    Tensor s = half_on<H>(d, n, rank), a = half_on<H>(d, n, rank), b = half_on<H>(d, n, rank);
    Tensor in = half_on<H>(d, n, rank);
    Tensor g = Tensor::zeros({int64_t(n * size_t(world))}, dp::dtype_of<H>::value, d);
    auto w1 = pg.allreduce(s, ReduceOp::sum, "16-bit sum");
    auto w2 = pg.allreduce(a, ReduceOp::avg, "16-bit avg");
    auto w3 = pg.broadcast(b, world - 1, "16-bit bcast");
    auto w4 = pg.allgather(in, g, "16-bit gather");
    for (auto& w : {w1, w2, w3, w4}) w->wait(60s);
    const std::vector<uint16_t> sb = bits_of<H>(s), ab = bits_of<H>(a);
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      float sum = value<H>(0, i), mag = std::fabs(sum);
      for (int r = 1; r < world; ++r) {
        sum += value<H>(r, i);
        mag += std::fabs(value<H>(r, i));
      }
      const float avg = sum * (1.0f / float(world));
      const float got_s = dp::widen(H{sb[i]}), got_a = dp::widen(H{ab[i]});
      if (world == 1) {
        bad += got_s != dp::round_to<H>(sum) || got_a != dp::round_to<H>(avg);
      } else {
        bad += std::fabs(got_s - sum) > float(world) * ulp<H>(mag) ||
               std::fabs(got_a - avg) > 2.0f * ulp<H>(mag);
      }
    }
    EXPECT_EQ(bad, 0u) << "sum/avg elements off";
    const std::vector<uint16_t> bb = bits_of<H>(b), gb = bits_of<H>(g);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(bb[i], dp::narrow<H>(value<H>(world - 1, i)).bits) << "broadcast " << i;
    }
    for (size_t i = 0; i < n * size_t(world); ++i) {
      ASSERT_EQ(gb[i], dp::narrow<H>(value<H>(int(i / n), i % n)).bits) << "allgather " << i;
    }
  }
}

// A rank's gradient value as `hook` puts it on the wire, widened.
float on_wire(dp::CommHook hook, float g, int world) {
  return hook == dp::CommHook::fp16_compress ? dp::round_to<f16>(g * (1.0f / float(world)))
                                             : dp::round_to<bf16>(g);
}

// The Reducer with `hook` on a model on `device`: every rank writes raw_value(rank) into
// every gradient; afterwards each gradient is the hook's reduction (exact for one rank).
void check_reducer(dp::ProcessGroup& pg, int device, dp::CommHook hook) {
  const bool fp16 = hook == dp::CommHook::fp16_compress;
  const int rank = pg.rank(), world = pg.size();
  auto model = dp::make_mlp(40, {24}, 10, 3);
  model->to(Device::cuda(device));
  dp::ReducerOptions o;
  o.first_bucket_mb = 1e-3;  // several buckets
  o.bucket_cap_mb = 2e-3;
  o.comm_hook = hook;
  dp::Reducer reducer(model->parameters(), pg, o);
  for (const dp::Bucket& b : reducer.buckets()) {
    ASSERT_TRUE(b.wire.is_cuda());
    ASSERT_EQ(b.wire.dtype(), dp::comm_hook_wire_dtype(hook));
  }
  std::vector<Tensor> mine;  // host values, uploaded each step (no device allocation)
  for (dp::Parameter* p : model->parameters()) {
    std::vector<float> v(p->grad.numel());
    for (size_t i = 0; i < v.size(); ++i) v[i] = raw_value(rank, i);
    mine.push_back(Tensor::from_vector(p->grad.shape(), v));
  }
  auto step = [&] {
    reducer.zero_grad();
    reducer.prepare_for_backward(true);
    auto params = model->parameters();
    for (size_t k = 0; k < params.size(); ++k) {
      params[k]->grad.copy_(mine[k]);
      params[k]->grad_ready();
    }
    reducer.finish();
  };
  for (int i = 0; i < 3; ++i) step();  // past the rebuild: buffers are final
  const dp::AllocatorStats before = dp::default_cuda_allocator().stats();
  for (int i = 0; i < 3; ++i) step();
  const dp::AllocatorStats after = dp::default_cuda_allocator().stats();
  EXPECT_EQ(after.cuda_malloc_calls, before.cuda_malloc_calls)
      << "before: " << before.str() << "\nafter: " << after.str();
  for (dp::Parameter* p : model->parameters()) {
    const std::vector<float> got = p->grad.to_vector();
    for (size_t i = 0; i < got.size(); ++i) {
      float acc = on_wire(hook, raw_value(0, i), world), mag = std::fabs(acc);
      for (int r = 1; r < world; ++r) {
        acc += on_wire(hook, raw_value(r, i), world);
        mag += std::fabs(on_wire(hook, raw_value(r, i), world));
      }
      // fp16_compress sums the pre-divided values; bf16_compress averages.
      const float avg = fp16 ? acc : acc * (1.0f / float(world));
      if (world == 1) {
        ASSERT_EQ(got[i], fp16 ? dp::round_to<f16>(avg) : dp::round_to<bf16>(avg))
            << p->name << " " << i;
      } else {
        const float tol = fp16 ? float(world) * ulp<f16>(mag) : 2.0f * ulp<bf16>(mag);
        ASSERT_NEAR(got[i], avg, tol) << p->name << " " << i;
      }
    }
  }
  for (const dp::BucketSpan& s : reducer.last_stats().spans) {
    EXPECT_EQ(s.bytes, reducer.buckets()[s.bucket].flat.numel() * 2);
  }
}

std::unique_ptr<dp::NcclProcessGroup> solo() {
  dp::NcclProcessGroupOptions o;
  o.device = 0;
  o.init_timeout = 60s;
  o.timeout = 60s;
  DP_CUDA_CHECK(cudaSetDevice(0));
  dp::NcclCommOptions c;
  c.init_timeout = o.init_timeout;
  c.timeout = o.timeout;
  auto comm = std::make_unique<dp::NcclComm>(dp::NcclComm::unique_id(), 0, 1, 0, c);
  return std::make_unique<dp::NcclProcessGroup>(std::move(comm), o);
}

}  // namespace

TEST(CommHookCuda, CompressAndDecompressMatchTheHost) {
  DP_REQUIRE_GPU();
  const size_t n = 100003;
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = raw_value(0, i) * std::ldexp(1.0f, int(i % 41) - 20);
  Tensor f = Tensor::from_vector({int64_t(n)}, v).to(Device::cuda(0));
  Tensor w = Tensor::zeros({int64_t(n)}, DType::bf16, Device::cuda(0));
  dp::bf16_compress(f, w);
  const std::vector<uint16_t> b = bits_of<bf16>(w);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(b[i], dp::float_to_bf16(v[i]).bits) << i;
  Tensor back = Tensor::zeros({int64_t(n)}, DType::f32, Device::cuda(0));
  dp::decompress(w, back);
  const std::vector<float> got = back.to_vector();
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], dp::round_to_bf16(v[i])) << i;
}

// __float2half_rn against the host's float_to_f16, over normals, subnormals, flushes to zero
// and overflows to infinity (the division by the world size first, as the hook does).
TEST(CommHookCuda, Fp16CompressAndDecompressMatchTheHost) {
  DP_REQUIRE_GPU();
  const size_t n = 100003;
  const int world = 3;
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = raw_value(0, i) * std::ldexp(1.0f, int(i % 61) - 40);
  Tensor f = Tensor::from_vector({int64_t(n)}, v).to(Device::cuda(0));
  Tensor w = Tensor::zeros({int64_t(n)}, DType::f16, Device::cuda(0));
  dp::fp16_compress(f, w, world);
  const std::vector<float> divided = f.to_vector();
  const std::vector<uint16_t> b = bits_of<f16>(w);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(divided[i], v[i] * (1.0f / float(world))) << i;
    ASSERT_EQ(b[i], dp::float_to_f16(divided[i]).bits) << i;
  }
  Tensor back = Tensor::zeros({int64_t(n)}, DType::f32, Device::cuda(0));
  dp::decompress(w, back);
  const std::vector<float> got = back.to_vector();
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], dp::round_to<f16>(divided[i])) << i;
}

TEST(CommHookCuda, NcclBf16Collectives) {
  DP_REQUIRE_GPU();
  auto pg = solo();
  check_half_collectives<bf16>(*pg, 0);
}

TEST(CommHookCuda, NcclF16Collectives) {
  DP_REQUIRE_GPU();
  auto pg = solo();
  check_half_collectives<f16>(*pg, 0);
}

TEST(CommHookCuda, NcclReducerWithBf16Compress) {
  DP_REQUIRE_GPU();
  auto pg = solo();
  check_reducer(*pg, 0, dp::CommHook::bf16_compress);
}

TEST(CommHookCuda, NcclReducerWithFp16Compress) {
  DP_REQUIRE_GPU();
  auto pg = solo();
  check_reducer(*pg, 0, dp::CommHook::fp16_compress);
}

// The MPI backend on CUDA bfloat16 and float16 tensors: staged through the host, reduced there.
TEST(CommHookCudaMpi, HostStagedHalfCollectivesAndReducer) {
  DP_REQUIRE_GPU();
  const int device = dp::gpu_test::mpi_rank_device();
  for (bool shm : {true, false}) {
    SCOPED_TRACE(shm ? "shared memory on" : "shared memory off");
    dp::MpiProcessGroupOptions o;
    o.shared_memory = shm;
    o.max_count_per_call = 1000;  // the chunked path too
    dp::MpiProcessGroup pg(MPI_COMM_WORLD, o);
    for (DType dt : {DType::bf16, DType::f16}) {
      Tensor buf = pg.allocate(4096, dt, Device::cuda(device));
      EXPECT_TRUE(buf.is_cuda());
      EXPECT_EQ(buf.dtype(), dt);
    }
    check_half_collectives<bf16>(pg, device);
    check_half_collectives<f16>(pg, device);
    check_reducer(pg, device, dp::CommHook::bf16_compress);
    check_reducer(pg, device, dp::CommHook::fp16_compress);
  }
}
