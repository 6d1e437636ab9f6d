#pragma once
// The all-reduce while backward computes, from what the buckets' all-reduces did in the
// profiled steps, next to the probe's all-reduce alone (runtime/perf/allreduce_probe.h).
#include <vector>

#include "runtime/perf/allreduce_cost.h"

namespace dp {

// One bucket's all-reduce in a profiled step, times relative to the start of backward.
struct BucketTiming {
  double bytes = 0;  // on the wire
  double start_us = 0;
  double end_us = 0;
  double backward_us = 0;  // when that step's backward ended
};

// The all-reduce while backward computes (SimOptions::busy_cost), from the profiled steps:
// on a CPU it competes with backward for the cores and can take many times what it takes
// alone (`idle`, the probe). A bucket that ran wholly inside backward gives its duration; one
// that ran on past the end, at least a quarter of it inside, gives t_in / (1 - t_out / idle(S))
// (the share of its work left after backward took t_out at the idle rate); others give
// nothing. The median per size; with two sizes at least 4x apart, a least-squares fit of those
// whose bandwidth is at most the idle one (the link is no faster while backward computes: the
// excess goes into the latency); with one, `idle` scaled to it (never below `idle`); with none,
// `idle`.
AllReduceFit calibrate_busy(const std::vector<BucketTiming>& spans, const AllReduceFit& idle);

}  // namespace dp
