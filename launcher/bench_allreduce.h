#pragma once
// `dprun bench-allreduce`: all-reduce bandwidth in nccl-tests' columns, dprun's process group
// (with --algo, default auto: hierarchical across several nodes), the same group forced flat,
// a plain MPI_Allreduce, and (where every rank has a GPU and the build has NCCL) dprun's NCCL
// process group, side by side in one run. Runs under mpirun like training.
//
//   mpirun -np 4 dprun bench-allreduce [-b 8] [-e 256M] [-f 2] [-n 20] [-w 5]
//                                      [-d float|bfloat16|all] [--no-shm]
//                                      [--algo auto|flat|hierarchical] [--nccl auto|on|off]

#include "runtime/comm/mpi_runtime.h"

namespace dp {

int bench_allreduce_main(int argc, char** argv, const MpiInfo& info);

}  // namespace dp
