#pragma once
// The NCCL process group as code without the CUDA toolkit sees it: the launcher and the
// Trainer build everywhere, and a build without CUDA/NCCL fails here with a clear dp::Error
// (runtime/comm/nccl_backend.cpp) instead of at link time. The implementation lives in
// runtime/comm/cuda/nccl_process_group.{h,cpp}.
#include <mpi.h>

#include <chrono>
#include <memory>

#include "runtime/comm/process_group.h"

namespace dp {

struct NcclProcessGroupOptions {
  // The GPU this rank drives (the device the Trainer resolved); -1: cuda:<local rank>.
  int device = -1;
  // Communicator set-up, including the first connection between ranks.
  std::chrono::milliseconds init_timeout{std::chrono::minutes(5)};
  // A collective not done this long after it was issued is a hang: the watchdog aborts the
  // communicator and fails every pending Work with a dp::Error naming the collective.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

// Whether this build has the NCCL backend.
bool nccl_compiled();

// Collective over `comm` (every rank calls it at the same point; MPI must be running). The
// group must be destroyed before MPI_Finalize.
std::unique_ptr<ProcessGroup> make_nccl_process_group(MPI_Comm comm,
                                                      const NcclProcessGroupOptions& options);

}  // namespace dp
