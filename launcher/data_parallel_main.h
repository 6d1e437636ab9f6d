#pragma once
// dprun --mode dp: the DataParallel baseline (runtime/train/data_parallel.h) in this one
// process. It is refused under a launcher that started several processes: its replicas are
// threads (or GPUs) of ONE process, and N processes would each train N replicas on their own.
#include "launcher/options.h"

namespace dp {

// Trains with --mode dp; world_size is the launcher's (MPI's) process count, which must be 1.
// Prints any error as "dprun: error: [rank R] ..." and returns the exit status.
int data_parallel_main(const LaunchOptions& o, int rank, int world_size);

}  // namespace dp
