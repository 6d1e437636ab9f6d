#pragma once
// The one compute stream per device that a process's kernels, tensor copies and memory
// operations are ordered on. Collectives run on their own streams and order themselves
// against this one with events (DESIGN.md, "The process model").
#include <cuda_runtime_api.h>

namespace dp {

// Created on first use (non-blocking: it never synchronises with the legacy default stream)
// and kept for the life of the process.
cudaStream_t compute_stream(int device);

}  // namespace dp
