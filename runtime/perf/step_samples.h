#pragma once
// The timings of a few training steps, reduced to one BackwardProfile: the median of every
// figure over the steps (one slow step, a page fault or a descheduled thread, moves no
// median), each parameter's ready time the median of its own.
#include <string>
#include <vector>

#include "runtime/perf/allreduce_calibration.h"
#include "runtime/perf/backward_profile.h"

namespace dp {

struct StepSample {
  double pre_backward_us = 0;   // step start to the synchronising backward's start
  double backward_us = 0;       // that backward
  double wait_us = 0;           // finish(): waiting for the buckets after backward
  double post_backward_us = 0;  // finish() returned to the step's end
  double data_us = 0;
  double forward_us = 0;
  double optimizer_us = 0;
  std::vector<double> ready_us;     // per parameter, relative to the backward's start
  std::vector<BucketTiming> spans;  // each bucket's all-reduce, relative to backward's start
};

// `names` and `bytes` per parameter, in the order of every sample's ready_us.
BackwardProfile median_profile(const std::vector<StepSample>& samples,
                               const std::vector<std::string>& names,
                               const std::vector<size_t>& bytes);

double median(std::vector<double> values);

// What the ranks measured, as the slowest rank makes it look to this one: an all-reduce
// cannot complete before every rank has written the bucket, so a peer that is behind (its
// data, its forward or its backward slower: on a loaded CPU by tens of ms) delays it as if
// the gradient were late. `gathered[(r * steps + s) * params + p]` is rank r's time from its
// step start to parameter p's gradient in step s (pre_backward_us + ready_us); the ranks'
// steps start together (the previous step's loss all-reduce lines them up). Each ready time of
// `own` becomes the latest over the ranks, relative to this rank's backward start; each
// bucket's span (bucket i of `assignment`, as the Reducer lists them) starts no earlier than
// its latest gradient, so that the wait for the peer is not taken for all-reduce time.
std::vector<StepSample> slowest_rank_view(std::vector<StepSample> own,
                                          const std::vector<float>& gathered, int world,
                                          const std::vector<std::vector<size_t>>& assignment);

}  // namespace dp
