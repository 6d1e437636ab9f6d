/* LD_PRELOAD shim for test_bench_allreduce.sh: MPI_Allreduce adds 1 to the first element of
 * every in-place float32 all-reduce of more than 1000 elements, so that the benchmark's
 * correctness count must see wrong sums and fail the run. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <mpi.h>

int MPI_Allreduce(const void* send, void* recv, int count, MPI_Datatype type, MPI_Op op,
                  MPI_Comm comm) {
  typedef int (*allreduce_fn)(const void*, void*, int, MPI_Datatype, MPI_Op, MPI_Comm);
  static allreduce_fn real = 0;
  if (!real) real = (allreduce_fn)dlsym(RTLD_NEXT, "MPI_Allreduce");
  const int rc = real(send, recv, count, type, op, comm);
  if (send == MPI_IN_PLACE && type == MPI_FLOAT && count > 1000) ((float*)recv)[0] += 1.0f;
  return rc;
}
