#include "runtime/comm/nccl_backend.h"

#include "runtime/core/error.h"

namespace dp {

// With the toolkit, runtime/comm/cuda/nccl_process_group.cpp defines both.
#ifndef DPRUN_HAVE_CUDA
bool nccl_compiled() {
  return false;
}

std::unique_ptr<ProcessGroup> make_nccl_process_group(MPI_Comm, const NcclProcessGroupOptions&) {
  fail("--backend nccl: this dprun was built without CUDA/NCCL; use --backend mpi");
}
#endif

}  // namespace dp
