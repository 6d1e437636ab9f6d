#pragma once
// Measures what a gradient all-reduce costs on the process group itself: the same backend,
// the same placement (a buffer from allocate(), so that the shared-memory path applies as
// it does to the buckets), the real link. Collective: every rank calls it with the same
// sizes; each rank gets a fit of its own timings (they differ little: an all-reduce ends for
// all ranks at about the same time).
#include <chrono>
#include <cstddef>
#include <vector>

#include "runtime/comm/process_group.h"
#include "runtime/perf/allreduce_cost.h"

namespace dp {

struct ProbeOptions {
  std::vector<size_t> sizes_bytes;  // at least two distinct sizes
  int repeats = 5;                  // timed all-reduces per size, after one untimed
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

// Sizes that span the buckets automatic sizing considers: 64 KiB, 1 MiB and min(8 MiB,
// max_bytes) (the model's gradient bytes: no bucket is larger), fewer when they coincide.
std::vector<size_t> default_probe_sizes(size_t max_bytes);

// Each size's median time (the communication thread's start to end of the collective, the
// span the runtime reports per bucket), fitted to t = alpha + S * beta.
AllReduceFit measure_allreduce(ProcessGroup& pg, const ProbeOptions& options);

}  // namespace dp
