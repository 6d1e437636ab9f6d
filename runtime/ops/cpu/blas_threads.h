#pragma once
// OpenBLAS starts one thread per CPU of the process's affinity mask. Under `mpirun -np 4
// --oversubscribe` on 2 cores (or any launch that does not bind each rank to its own cores)
// every rank then runs 2 GEMM threads, 8 on 2 cores, and a step is 1.2-1.6x slower. torchrun
// sets OMP_NUM_THREADS=1 for several processes per node; dprun divides the CPUs it may use
// between the ranks on its node, unless the user chose a thread count.
#include <string>

namespace dp {

struct BlasThreads {
  int threads = 1;     // what this rank's GEMMs use
  std::string reason;  // for the header: why this many
};

// The thread count for a rank that may run on `cpus` CPUs beside `local_ranks - 1` other
// ranks of its node: the user's when `user_threads` > 0 (OPENBLAS_NUM_THREADS,
// OMP_NUM_THREADS), else the rank's share of the CPUs (at least 1), never more than what the
// library started with (`library_threads`).
BlasThreads choose_blas_threads(int cpus, int local_ranks, int user_threads, int library_threads);

// Applies choose_blas_threads for this process (its affinity mask, the variables above) and
// returns the choice; call after MPI told the node's rank count, before any GEMM.
BlasThreads configure_blas_threads(int local_ranks);

// "N thread(s)", with configure_blas_threads' reason when it ran in this process.
std::string describe_blas_threads();

}  // namespace dp
