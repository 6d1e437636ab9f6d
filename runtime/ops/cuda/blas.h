#pragma once
// The per-device cuBLASLt context the layers' GEMMs run on.
#include "runtime/ops/cuda/gemm.h"

namespace dp::cuda {

// The CublasLt of `device`, created on first use (handle, 32 MiB workspace, plan cache) and
// kept for the life of the process, like compute_stream(device): destroying it at exit would
// race with the driver's teardown. Its workspace is shared by every call, so it must only be
// used for work on compute_stream(device), from one thread at a time (the training loop);
// work on another stream needs a CublasLt of its own (see gemm.h).
CublasLt& blas(int device);

}  // namespace dp::cuda
