#pragma once
// torch.nn.parallel.scatter for one tensor: the global batch is cut along its first dimension
// into one equal chunk per replica, and chunk r is copied to replica r's own input buffer (on
// its device: a host-to-device copy for a GPU replica; on the CPU, a copy into memory the
// replica's thread owns, the same movement DataParallel pays for).
#include <cstddef>

#include "runtime/core/tensor.h"

namespace dp {

// Copies rows [r * n / N, (r + 1) * n / N) of `global` ([n, ...], n divisible by N =
// `replicas`) into `out`, which is (re)allocated as [n / N, ...] of global's dtype on `device`
// only when its shape changes. Returns the bytes copied.
size_t scatter_chunk(const Tensor& global, size_t replicas, size_t replica, Tensor& out,
                     Device device);

}  // namespace dp
