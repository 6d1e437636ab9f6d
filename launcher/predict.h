#pragma once
// `dprun predict`: from a profile that `dprun --profile-out` wrote, predicts step time,
// exposed communication, scaling efficiency and automatically chosen buckets on a modelled
// cluster from 8 to 1024 GPUs, and checks its predictions against measured runs (their
// profiles). It needs no MPI and runs before MPI is initialised.
//
//   dprun predict --profile FILE [--network h100-nvlink-ib|emulated|measured] [--gpus 8,16,..]
//                 [--link-gbit G --link-latency-us L --ranks-per-host R] [--algo best|ring|..]
//                 [--compute-scale F] [--validate RUN.json ...]

namespace dp {

// argv[1] is "predict". Prints the tables and returns 0, or prints "dprun: error: <what>" on
// stderr and returns 1.
int predict_main(int argc, char** argv);

}  // namespace dp
