#pragma once
// `dprun bench-allreduce`: all-reduce bandwidth in nccl-tests' columns, dprun's process group
// next to a plain MPI_Allreduce in the same run. Runs under mpirun like training.
//
//   mpirun -np 4 dprun bench-allreduce [-b 8] [-e 256M] [-f 2] [-n 20] [-w 5]
//                                      [-d float|bfloat16|all] [--no-shm]

#include "runtime/comm/mpi_runtime.h"

namespace dp {

int bench_allreduce_main(int argc, char** argv, const MpiInfo& info);

}  // namespace dp
