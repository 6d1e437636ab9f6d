#pragma once
// This process's rank and the world size, for the tests that run under mpirun.
#include <mpi.h>

namespace dp::test {

inline int world() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

inline int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

}  // namespace dp::test
