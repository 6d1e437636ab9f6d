// The GPU communication path's two costs that decide whether a training step is fast:
//  1. device allocation: a cudaMalloc + cudaFree pair against a warm dp::CachingAllocator
//     allocate + free of the same size (what the caching buys per bucket or activation);
//  2. NCCL all-reduce through dp::NcclComm, in nccl-tests' format (size, count, type, time,
//     algbw, busbw), GPU time per collective from events on the comm stream, plus the
//     latency of one issue + wait() round trip from the host (what the Reducer pays).
//
//   bench_gpu_comm [--min-bytes 1024] [--max-bytes 268435456] [--iters 20]
//   mpirun -np <GPUs> bench_gpu_comm ...        (one rank per GPU)
//
// The last line is a one-line summary for scripts (tests/gpu/run.sh prints it).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#ifdef DPRUN_HAVE_CUDA
#include <mpi.h>

#include "runtime/comm/cuda/nccl_comm.h"
#include "runtime/comm/mpi_runtime.h"
#include "runtime/core/clock.h"
#include "runtime/core/cuda/allocator.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"

namespace {

size_t arg(int argc, char** argv, const char* name, size_t def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtoull(argv[i + 1], nullptr, 10);
  }
  return def;
}

double median(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

// Median microseconds of an alloc + free pair, cudaMalloc/cudaFree against the cache.
void bench_allocator(int rank, double& cache_us_25mb, double& cuda_us_25mb) {
  dp::CudaStream stream(dp::cuda_current_device());
  dp::CachingAllocator alloc;
  if (rank == 0) {
    std::printf("# device allocation: median us per allocate+free pair\n");
    std::printf("# %12s | %14s %14s\n", "size(B)", "cudaMalloc", "cached");
  }
  for (size_t bytes : {size_t(4096), size_t(1) << 20, size_t(25) << 20, size_t(256) << 20}) {
    std::vector<double> raw, cached;
    for (int i = 0; i < 30; ++i) {
      void* p = nullptr;
      double t0 = dp::now_us();
      DP_CUDA_CHECK(cudaMalloc(&p, bytes));
      DP_CUDA_CHECK(cudaFree(p));
      raw.push_back(dp::now_us() - t0);
    }
    alloc.free(alloc.allocate(bytes, stream.get()));  // warm
    for (int i = 0; i < 1000; ++i) {
      double t0 = dp::now_us();
      alloc.free(alloc.allocate(bytes, stream.get()));
      cached.push_back(dp::now_us() - t0);
    }
    if (rank == 0) {
      std::printf("  %12zu | %14.2f %14.3f\n", bytes, median(raw), median(cached));
    }
    if (bytes == (size_t(25) << 20)) {
      cache_us_25mb = median(cached);
      cuda_us_25mb = median(raw);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  dp::MpiRuntime mpi(&argc, &argv);
  const int rank = mpi.info().rank, world = mpi.info().size;
  if (dp::cuda_device_count() == 0) {
    if (rank == 0) std::printf("no GPU: bench_gpu_comm needs a CUDA GPU; nothing measured\n");
    return 0;
  }
  const size_t min_bytes = std::max<size_t>(arg(argc, argv, "--min-bytes", 1024), 4);
  const size_t max_bytes = arg(argc, argv, "--max-bytes", size_t(256) << 20);
  const int iters = static_cast<int>(std::max<size_t>(arg(argc, argv, "--iters", 20), 1));
  try {
    dp::NcclComm comm(MPI_COMM_WORLD);
    DP_CUDA_CHECK(cudaSetDevice(comm.device()));
    double cache_us = 0, cuda_us = 0;
    bench_allocator(rank, cache_us, cuda_us);

    if (rank == 0) {
      std::printf(
          "# NCCL all-reduce (sum, float32, in place), %d rank(s); busbw = algbw * "
          "2(n-1)/n; latency = one issue + wait() from the host\n",
          world);
      std::printf("# %12s %12s %6s | %10s %8s %8s | %12s\n", "size(B)", "count", "type", "time(us)",
                  "algbw", "busbw", "latency(us)");
    }
    dp::CudaStream compute(comm.device());
    void* buf = dp::default_cuda_allocator().allocate(max_bytes, compute.get(), comm.device());
    DP_CUDA_CHECK(cudaMemsetAsync(buf, 0, max_bytes, compute.get()));
    dp::CudaEvent ready(false, comm.device());
    ready.record(compute);
    dp::CudaEvent start(true, comm.device()), end(true, comm.device());
    double last_busbw = 0;
    for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
      const size_t count = bytes / 4;
      for (int i = 0; i < 5; ++i) {
        comm.allreduce(buf, count, dp::NcclDType::f32, dp::ReduceOp::sum, ready.get(), "warm")
            ->wait();
      }
      MPI_Barrier(MPI_COMM_WORLD);
      start.record(comm.stream());
      dp::NcclWorkPtr last;
      for (int i = 0; i < iters; ++i) {
        last = comm.allreduce(buf, count, dp::NcclDType::f32, dp::ReduceOp::sum, nullptr, "bench");
      }
      end.record(comm.stream());
      last->wait();
      end.synchronize();
      const double us = 1e3 * start.elapsed_ms(end) / iters;
      std::vector<double> lat;
      for (int i = 0; i < 10; ++i) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = dp::now_us();
        comm.allreduce(buf, count, dp::NcclDType::f32, dp::ReduceOp::sum, nullptr, "latency")
            ->wait();
        lat.push_back(dp::now_us() - t0);
      }
      const double algbw = double(bytes) / us / 1e3;  // GB/s
      const double busbw = algbw * (world > 1 ? 2.0 * (world - 1) / world : 1.0);
      last_busbw = busbw;
      if (rank == 0) {
        std::printf("  %12zu %12zu %6s | %10.1f %8.2f %8.2f | %12.1f\n", bytes, count, "float", us,
                    algbw, busbw, median(lat));
      }
    }
    dp::default_cuda_allocator().record_stream(buf, comm.stream());
    dp::default_cuda_allocator().free(buf);
    comm.finalize();
    if (rank == 0) {
      std::printf(
          "summary: %d rank(s); all-reduce %s busbw %.1f GB/s; allocate+free of 25 MiB: "
          "%.2f us cached vs %.1f us cudaMalloc/cudaFree\n",
          world,
          max_bytes >= (size_t(1) << 20) ? (std::to_string(max_bytes >> 20) + " MiB").c_str()
                                         : (std::to_string(max_bytes) + " B").c_str(),
          last_busbw, cache_us, cuda_us);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu_comm: error: [rank %d] %s\n", rank, e.what());
    dp::abort_job(1);
  }
  return 0;
}

#else  // no CUDA toolkit at build time

int main() {
  std::printf("bench_gpu_comm: this build has no CUDA; nothing measured\n");
  return 0;
}

#endif
