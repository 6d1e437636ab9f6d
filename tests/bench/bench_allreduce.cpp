// All-reduce bandwidth, in nccl-tests' format (size, count, type, time, algbw, busbw), for
// dprun's ProcessGroup (the communication thread, what training uses) on an ordinary tensor
// (ring or MPI_Allreduce), on a buffer from pg.allocate() (shared memory when all ranks
// share a node: what the Reducer's buckets use), and a plain MPI_Allreduce from the calling
// thread: pg vs mpi is the cost of the thread, shm vs pg what shared memory saves.
//   mpirun -np 2 build/bench_allreduce [--min-bytes 1024] [--max-bytes 33554432] [--iters 50]
//                                      [--no-shm 1]   (the group without its shared path)
#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "runtime/comm/mpi_process_group.h"
#include "runtime/comm/mpi_runtime.h"
#include "runtime/core/clock.h"

namespace {

size_t arg(int argc, char** argv, const char* name, size_t def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::strtoull(argv[i + 1], nullptr, 10);
  }
  return def;
}

// Median over iterations of the slowest rank's time, in microseconds.
template <typename F>
double time_us(F&& f, int iters) {
  std::vector<double> t;
  for (int i = 0; i < iters + 5; ++i) {
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = dp::now_us();
    f();
    double dt = dp::now_us() - t0, worst = 0;
    MPI_Allreduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (i >= 5) t.push_back(worst);
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  dp::MpiRuntime mpi(&argc, &argv);
  const int world = mpi.info().size, rank = mpi.info().rank;
  size_t min_bytes = arg(argc, argv, "--min-bytes", 1024);
  size_t max_bytes = arg(argc, argv, "--max-bytes", 32u << 20);
  int iters = static_cast<int>(arg(argc, argv, "--iters", 50));
  {
    dp::MpiProcessGroupOptions options;
    options.shared_memory = arg(argc, argv, "--no-shm", 0) == 0;
    dp::MpiProcessGroup pg(MPI_COMM_WORLD, options);
    if (rank == 0) {
      std::printf("# dprun all-reduce (sum, float32), %d ranks; busbw = algbw * 2(n-1)/n\n", world);
      std::printf("# shm: pg.allocate()d buffer, %s\n",
                  pg.uses_shared_memory() ? "shared memory" : "ordinary memory (no shared path)");
      std::printf("# %12s %12s %6s | %10s %8s %8s | %10s %8s %8s | %10s %8s %8s\n", "size(B)",
                  "count", "type", "pg time(us)", "algbw", "busbw", "shm time(us)", "algbw",
                  "busbw", "mpi time(us)", "algbw", "busbw");
    }
    // One buffer for every size: views of its start, as the Reducer's buckets are views.
    dp::Tensor shared = pg.allocate(max_bytes / 4);
    for (size_t bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
      size_t count = bytes / 4;
      dp::Tensor t = dp::Tensor::zeros({static_cast<int64_t>(count)});
      t.fill_(1.0f);
      dp::Tensor s = shared.view(0, {static_cast<int64_t>(count)});
      s.fill_(1.0f);
      double pg_us = time_us([&] { pg.allreduce(t, dp::ReduceOp::sum)->wait(); }, iters);
      double shm_us = time_us([&] { pg.allreduce(s, dp::ReduceOp::sum)->wait(); }, iters);
      double mpi_us = time_us(
          [&] {
            MPI_Allreduce(MPI_IN_PLACE, t.raw(), static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                          MPI_COMM_WORLD);
          },
          iters);
      double factor = world > 1 ? 2.0 * (world - 1) / world : 1.0;
      if (rank == 0) {
        auto bw = [&](double us) { return bytes / us / 1e3; };
        std::printf(
            "  %12zu %12zu %6s | %10.1f %8.2f %8.2f | %10.1f %8.2f %8.2f | %10.1f %8.2f %8.2f\n",
            bytes, count, "float", pg_us, bw(pg_us), bw(pg_us) * factor, shm_us, bw(shm_us),
            bw(shm_us) * factor, mpi_us, bw(mpi_us), bw(mpi_us) * factor);
      }
    }
  }
  return 0;
}
