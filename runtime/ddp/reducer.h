#pragma once
// The Reducer (DESIGN.md, "The Reducer"): averages gradients across ranks with bucketed
// all-reduces that are launched from inside backward, as soon as a bucket's last gradient
// is written, so that communication hides behind the rest of backward.
//
// Per optimizer step (K micro-batches of gradient accumulation):
//   reducer.zero_grad();                      // clears the buckets (and rebuilds once)
//   for k in 0..K-1:
//     reducer.prepare_for_backward(k == K-1); // sync only on the last micro-batch
//     forward; loss; backward;                // layers call Parameter::grad_ready()
//     reducer.finish();                       // waits for the all-reduces when syncing
//   optimizer.step();
#include <chrono>
#include <string>
#include <vector>

#include "runtime/comm/process_group.h"
#include "runtime/ddp/bucket.h"
#include "runtime/ddp/comm_hook.h"
#include "runtime/nn/parameter.h"
#include "runtime/nn/parameter_arena.h"

namespace dp {

struct ReducerOptions {
  double first_bucket_mb = 1.0;
  double bucket_cap_mb = 25.0;
  // false: every bucket is launched only in finish(), after backward. Exists to measure
  // what overlap gains (--no-overlap).
  bool overlap = true;
  // Parameters that got no gradient in a backward are treated as ready with a zero
  // gradient at finish(); without it they are an error (instead of a hang).
  bool find_unused_parameters = false;
  // Rebuild the buckets once, after the first step, in the order gradients became ready.
  bool rebuild_buckets = true;
  // A collective that has not completed after this long is reported as a hang.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
  // What the gradient all-reduces put on the wire (runtime/ddp/comm_hook.h). Must be the
  // same on every rank (the collectives' dtypes differ otherwise).
  CommHook comm_hook = CommHook::none;
  // A bucket assignment to start from (parameter indices per bucket, e.g. a checkpoint's):
  // used instead of the reverse registration order, and kept (no rebuild), so that a
  // resumed run reduces in the same buckets as the run that wrote the checkpoint.
  std::vector<std::vector<size_t>> assignment;
  // The model's parameter arena, over exactly the Reducer's parameters in the same order, or
  // null. While every bucket is a contiguous range of it (the reverse registration order
  // makes them so), the arena's gradient block is moved into memory from the process group
  // and each bucket's flat buffer IS its range of that block, padding included (PyTorch's
  // gradient_as_bucket_view): backward writes the arena, the all-reduce reads it in place,
  // and the optimizer still sees one gradient block. A bucket that is not contiguous (an
  // observed or given order that interleaves) makes the Reducer carve its own buffers and
  // re-point the gradients there, as without an arena; the optimizer then steps per
  // parameter (ParameterArena::grads_intact()). The rebuild in the observed order is skipped
  // when its buckets would not be contiguous; an explicit assignment is always used.
  ParameterArena* arena = nullptr;
};

class Reducer {
 public:
  // Collective: checks that all ranks hold the same parameter list, broadcasts rank 0's
  // parameter values, builds the buckets and hooks every parameter's grad_ready().
  Reducer(std::vector<Parameter*> params, ProcessGroup& pg, ReducerOptions options);
  ~Reducer();
  Reducer(const Reducer&) = delete;
  Reducer& operator=(const Reducer&) = delete;

  void zero_grad();
  void prepare_for_backward(bool sync = true);
  void mark_ready(size_t param_index);
  // backward_end_us: when the caller's backward returned, if it timed it (now_us() clock), so
  // that the compute end the stats report is never after the backward the caller reports.
  void finish(double backward_end_us = 0);

  const std::vector<Bucket>& buckets() const { return buckets_; }
  const std::vector<Parameter*>& parameters() const { return params_; }
  const CommStats& last_stats() const { return stats_; }
  // Synchronising steps finished so far; messages name the step in progress as step() + 1.
  uint64_t step() const { return step_; }
  // A resumed run continues the count of the run it resumes, so that messages name the same
  // step as the log and the checkpoints.
  void set_step(uint64_t step) { step_ = step; }
  std::string layout() const;  // "2 buckets: #0 0.13 MB [fc3.bias ...] ..."
  // Whether the buckets are ranges of the parameter arena's gradient block (see
  // ReducerOptions::arena).
  bool buckets_are_arena_views() const { return arena_views_; }
  // The parameter indices of the buckets the next step uses (for a checkpoint).
  std::vector<std::vector<size_t>> assignment() const;
  // Buckets from the next zero_grad() on (automatic bucket sizing): every rank must pass the
  // same assignment (rank 0's, broadcast), as the rebuild after the first step uses rank 0's
  // order. Replaces that rebuild if it has not happened yet.
  void set_assignment(std::vector<std::vector<size_t>> assignment);
  // When each parameter's gradient was reported in the last backward (dp::now_us), by
  // parameter index; with find_unused_parameters an unused one reports at finish().
  const std::vector<double>& param_ready_us() const { return ready_us_; }

 private:
  void build_buckets(const std::vector<std::vector<size_t>>& assignment);
  void launch(Bucket& b);
  void launch_ready_in_order();
  void wait_bucket(Bucket& b);
  // Views of `sizes` elements carved out of `arena`, (re)allocated through pg_ when too small.
  std::vector<Tensor> carve(Tensor& arena, const std::vector<size_t>& sizes, DType dtype);
  // The buckets as ranges of the parameter arena's gradient block: each bucket's [begin, end)
  // element range in it, or empty when some bucket's members are not adjacent in the arena.
  std::vector<std::pair<size_t, size_t>> arena_ranges(
      const std::vector<std::vector<size_t>>& assignment) const;
  void rebuild_from_observed_order();

  std::vector<Parameter*> params_;
  ProcessGroup& pg_;
  ReducerOptions opt_;
  Tensor arena_;       // from pg_.allocate(): every bucket's flat buffer is a view into it
  Tensor wire_arena_;  // the same for the buckets' wire buffers, under a comm hook
  Tensor grad_block_;  // from pg_.allocate(): the parameter arena's gradient block, if used
  bool arena_views_ = false;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // param index -> bucket index
  std::vector<uint8_t> marked_;    // param marked ready in this backward
  std::vector<double> ready_us_;   // when it was marked
  size_t num_marked_ = 0;
  // When the last parameter reported its gradient: the wall clock, and this thread's CPU time.
  double last_ready_us_ = 0, last_ready_cpu_us_ = 0;
  size_t next_to_launch_ = 0;
  bool sync_ = true;
  bool in_backward_ = false;
  bool record_order_ = true;  // until the first synchronising step ends
  std::vector<size_t> observed_order_;
  std::vector<std::vector<size_t>> pending_rebuild_;
  uint64_t step_ = 0;
  CommStats stats_;
  std::vector<BucketSpan> span_scratch_;  // finish()'s sorting, without a copy per step
};

}  // namespace dp
