#pragma once
// dprun --mode dp: the DataParallel baseline (runtime/train/data_parallel.h) in this one
// process. It is refused under a launcher that started several processes: its replicas are
// threads (or GPUs) of ONE process, and N processes would each train N replicas on their own.
#include <string>

#include "launcher/options.h"

namespace dp {

// Trains with --mode dp in a launch of one process. Prints any error as
// "dprun: error: [rank R] ..." and returns the exit status.
int data_parallel_main(const LaunchOptions& o, int rank);

// The refusal of --mode dp in a launch of `world_size` > 1 processes. main() agrees on it with
// the other ranks, which may not have been given --mode dp (an MPMD launch) and would
// otherwise wait for this one.
std::string data_parallel_world_error(int world_size);

}  // namespace dp
