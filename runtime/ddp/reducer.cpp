#include "runtime/ddp/reducer.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "runtime/core/clock.h"
#include "runtime/core/error.h"
#include "runtime/core/units.h"
#include "runtime/ddp/bucket_assignment.h"
#include "runtime/ddp/replica_check.h"

namespace dp {

namespace {

std::vector<size_t> param_bytes(const std::vector<Parameter*>& params) {
  std::vector<size_t> bytes;
  bytes.reserve(params.size());
  for (const Parameter* p : params) bytes.push_back(p->value.nbytes());
  return bytes;
}

// Length of the union of [start, end] intervals, each clipped to start no earlier than
// `from`: the time some all-reduce was running (after `from`). Sorts a copy in `spans`,
// whose capacity carries over from step to step.
double union_length(const std::vector<BucketSpan>& in, std::vector<BucketSpan>& spans,
                    double from = 0) {
  spans.assign(in.begin(), in.end());
  for (BucketSpan& s : spans) {
    s.start_us = std::max(s.start_us, from);
    s.end_us = std::max(s.end_us, s.start_us);
  }
  std::sort(spans.begin(), spans.end(),
            [](const BucketSpan& a, const BucketSpan& b) { return a.start_us < b.start_us; });
  double total = 0, cur_start = 0, cur_end = -1;
  for (const auto& s : spans) {
    if (s.start_us > cur_end) {
      if (cur_end > cur_start) total += cur_end - cur_start;
      cur_start = s.start_us;
      cur_end = s.end_us;
    } else {
      cur_end = std::max(cur_end, s.end_us);
    }
  }
  if (cur_end > cur_start) total += cur_end - cur_start;
  return total;
}

}  // namespace

Reducer::Reducer(std::vector<Parameter*> params, ProcessGroup& pg, ReducerOptions options)
    : params_(std::move(params)), pg_(pg), opt_(std::move(options)) {
  DP_CHECK(!params_.empty(), "the Reducer needs at least one parameter");
  for (const Parameter* p : params_) {
    DP_CHECK(p->value.dtype() == DType::f32,
             "parameter '{}' is {}: gradients are reduced in float32", p->name,
             dtype_name(p->value.dtype()));
  }
  DP_CHECK(opt_.arena == nullptr || opt_.arena->covers(params_),
           "the Reducer's parameter arena must hold exactly its {} parameters, in order",
           params_.size());
  verify_replicas_match(params_, pg_, opt_.timeout);

  if (!opt_.assignment.empty()) {
    check_assignment(opt_.assignment, params_.size());
    build_buckets(opt_.assignment);
    record_order_ = false;
  } else {
    std::vector<size_t> reverse(params_.size());
    for (size_t i = 0; i < reverse.size(); ++i) reverse[i] = reverse.size() - 1 - i;
    build_buckets(assign_buckets(reverse, param_bytes(params_), mb_to_bytes(opt_.first_bucket_mb),
                                 mb_to_bytes(opt_.bucket_cap_mb)));
  }

  // Rank 0's values win even though every rank initialised from the same seed: a replica
  // must not depend on every rank having computed the same floats. The bucket buffers
  // (zero gradients until the first backward) carry the values.
  for (Bucket& b : buckets_) {
    for (size_t j = 0; j < b.params.size(); ++j) {
      const Tensor& v = params_[b.params[j]]->value;
      b.flat.view(b.offsets[j], v.shape()).copy_(v);  // any device
    }
    b.work = pg_.broadcast(b.flat, 0, b.tag + " (initial parameters)");
  }
  for (Bucket& b : buckets_) {
    wait_bucket(b);
    for (size_t j = 0; j < b.params.size(); ++j) {
      Tensor& v = params_[b.params[j]]->value;
      v.copy_(b.flat.view(b.offsets[j], v.shape()));
    }
    b.flat.zero_();
    b.work.reset();
  }

  marked_.assign(params_.size(), 0);
  ready_us_.assign(params_.size(), 0.0);
  observed_order_.reserve(params_.size());
  stats_.spans.reserve(buckets_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i]->on_grad_ready = [this, i](Parameter&) { mark_ready(i); };
  }
}

Reducer::~Reducer() {
  for (Parameter* p : params_) p->on_grad_ready = nullptr;
}

std::vector<Tensor> Reducer::carve(Tensor& arena, const std::vector<size_t>& sizes, DType dtype) {
  // One arena from pg_.allocate() (shared memory under the MPI backend, so that the
  // all-reduces need no copies), on the parameters' device (the gradient views must be where
  // backward writes them). Views start on 64-byte boundaries: while a peer writes its reduced
  // slice of bucket k into this rank's arena, this rank writes bucket k + 1, and the two must
  // not share a cache line. A rebuild only reorders the same parameters, so it re-carves the
  // arena; it allocates (collectively: every rank computes the same layout) only if the
  // padding grew past it, and the old arena then stays allocated until the process group is
  // destroyed. A reused arena keeps its contents.
  const size_t align = 64 / dtype_size(dtype);
  std::vector<size_t> starts;
  size_t total = 0;
  for (size_t numel : sizes) {
    starts.push_back((total + align - 1) / align * align);
    total = starts.back() + numel;
  }
  if (!arena.defined() || arena.numel() < total) {
    arena = pg_.allocate(total, dtype, params_.front()->value.device());
  }
  std::vector<Tensor> views;
  views.reserve(sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i)
    views.push_back(arena.view(starts[i], {static_cast<int64_t>(sizes[i])}));
  return views;
}

std::vector<std::pair<size_t, size_t>> Reducer::arena_ranges(
    const std::vector<std::vector<size_t>>& assignment) const {
  const ParameterArena& a = *opt_.arena;
  std::vector<std::pair<size_t, size_t>> ranges;
  for (const auto& members : assignment) {
    // Adjacent in the arena: the members' indices (which are the arena's) have no gap.
    const auto [lo, hi] = std::minmax_element(members.begin(), members.end());
    if (*hi - *lo + 1 != members.size()) return {};
    ranges.emplace_back(a.offset(*lo), a.offset(*hi) + params_[*hi]->value.numel());
  }
  return ranges;
}

void Reducer::build_buckets(const std::vector<std::vector<size_t>>& assignment) {
  std::vector<Tensor> flats;
  std::vector<std::vector<size_t>> offsets(assignment.size());
  ParameterArena* const arena = opt_.arena;
  const auto ranges =
      arena != nullptr ? arena_ranges(assignment) : std::vector<std::pair<size_t, size_t>>{};
  arena_views_ = arena != nullptr && !ranges.empty();
  if (arena != nullptr && !ranges.empty()) {
    // Collective like carve(): every rank has the same arena layout and the same assignment.
    // The padding inside a bucket's range travels with it: it is zero on every rank, so it is
    // reduced to zero (and cast to zero by the comm hooks), and not copying is worth ~15
    // floats per parameter on the wire.
    if (!grad_block_.defined())
      grad_block_ = pg_.allocate(arena->numel(), DType::f32, params_.front()->value.device());
    grad_block_.zero_();
    arena->rebind_grads(grad_block_);
    for (size_t k = 0; k < assignment.size(); ++k) {
      const auto [begin, end] = ranges[k];
      flats.push_back(arena->grads().view(begin, {static_cast<int64_t>(end - begin)}));
      for (size_t p : assignment[k]) offsets[k].push_back(arena->offset(p) - begin);
    }
  } else {
    std::vector<size_t> sizes;
    for (size_t k = 0; k < assignment.size(); ++k) {
      size_t numel = 0;
      for (size_t p : assignment[k]) {
        offsets[k].push_back(numel);
        numel += params_[p]->value.numel();
      }
      sizes.push_back(numel);
    }
    flats = carve(arena_, sizes, DType::f32);
    arena_.zero_();  // a fresh arena is zero already; a re-carved one holds the last step's
  }
  // The wire buffers of a comm hook: never zeroed, launch() overwrites all of a bucket's
  // before every all-reduce.
  std::vector<Tensor> wires;
  if (opt_.comm_hook != CommHook::none) {
    std::vector<size_t> sizes;
    sizes.reserve(flats.size());
    for (const Tensor& f : flats) sizes.push_back(f.numel());
    wires = carve(wire_arena_, sizes, comm_hook_wire_dtype(opt_.comm_hook));
  }

  buckets_.clear();
  buckets_.reserve(assignment.size());
  bucket_of_.assign(params_.size(), 0);
  for (const auto& members : assignment) {
    Bucket b;
    b.index = buckets_.size();
    b.params = members;
    b.offsets = offsets[b.index];
    for (size_t p : members) bucket_of_[p] = b.index;
    b.flat = flats[b.index];
    if (!wires.empty()) b.wire = wires[b.index];
    for (size_t j = 0; j < members.size() && !arena_views_; ++j) {
      Parameter* p = params_[members[j]];
      p->grad = b.flat.view(b.offsets[j], p->value.shape());
    }
    b.tag = fmt::format("bucket {}", b.index);
    buckets_.push_back(std::move(b));
  }
}

void Reducer::zero_grad() {
  DP_CHECK(!in_backward_, "zero_grad() during backward (finish() was not called)");
  if (!pending_rebuild_.empty()) {
    build_buckets(pending_rebuild_);  // leaves the buffers zero
    pending_rebuild_.clear();
    return;
  }
  if (arena_views_) {
    grad_block_.zero_();  // one memset: every bucket and the (zero) padding between them
    return;
  }
  for (Bucket& b : buckets_) b.flat.zero_();
}

void Reducer::prepare_for_backward(bool sync) {
  DP_CHECK(!in_backward_, "prepare_for_backward() called twice without finish() in between");
  in_backward_ = true;
  sync_ = sync;
  std::fill(marked_.begin(), marked_.end(), 0);
  num_marked_ = 0;
  last_ready_us_ = 0;
  next_to_launch_ = 0;
  // A shared parameter counts its uses per backward; start every count afresh.
  for (Parameter* p : params_) p->reset_uses();
  if (record_order_) observed_order_.clear();  // only the synchronising backward's order counts
  for (Bucket& b : buckets_) {
    b.pending = b.params.size();
    b.work.reset();
    b.ready_us = 0;
  }
}

void Reducer::mark_ready(size_t i) {
  Parameter& p = *params_[i];
  DP_CHECK(in_backward_,
           "parameter '{}' reported its gradient outside of a backward pass "
           "(prepare_for_backward() was not called)",
           p.name);
  DP_CHECK(!marked_[i],
           "parameter '{}' reported its gradient twice in one backward pass "
           "(a parameter used twice in forward must report once, after its last use)",
           p.name);
  marked_[i] = 1;
  ++num_marked_;
  ready_us_[i] = now_us();  // ~20 ns: cheap enough to keep for every step
  if (num_marked_ == params_.size()) {
    last_ready_us_ = ready_us_[i];
    last_ready_cpu_us_ = thread_cpu_us();
  }
  if (record_order_) observed_order_.push_back(i);
  if (!sync_) return;
  Bucket& b = buckets_[bucket_of_[i]];
  if (--b.pending == 0) {
    b.ready_us = now_us();
    if (opt_.overlap) launch_ready_in_order();
  }
}

void Reducer::launch(Bucket& b) {
  switch (opt_.comm_hook) {
    case CommHook::none:
      b.work = pg_.allreduce(b.flat, ReduceOp::avg, b.tag);
      return;
    // On the gradients' device (CUDA: the compute stream, which the collective then waits
    // for); widened back in finish(), once the all-reduce is waited.
    case CommHook::bf16_compress:
      bf16_compress(b.flat, b.wire);
      break;
    case CommHook::fp16_compress:
      fp16_compress(b.flat, b.wire, pg_.size());  // divides the float32 bucket by the world
      break;
  }
  b.work = pg_.allreduce(b.wire, comm_hook_reduce_op(opt_.comm_hook), b.tag);
}

void Reducer::launch_ready_in_order() {
  // Strictly in bucket order: every rank then issues the same all-reduces in the same
  // order even when gradients become ready in a slightly different order on each rank.
  while (next_to_launch_ < buckets_.size() && buckets_[next_to_launch_].pending == 0) {
    launch(buckets_[next_to_launch_++]);
  }
}

void Reducer::wait_bucket(Bucket& b) {
  try {
    b.work->wait(opt_.timeout);
  } catch (const Error& e) {
    // A timeout (this wait's, or the shared-memory barrier's stored as the Work's error)
    // already wrote this rank's flight recorder to stderr and put its summary into the
    // message (Work::wait): this adds the step and what the bucket holds. A desync that
    // every rank detected stays a CollectiveError, so that every rank ends cleanly.
    const std::string& first = params_[b.params.front()]->name;
    const std::string& last = params_[b.params.back()]->name;
    const std::string msg =
        fmt::format("step {}: {} ({} parameters, {} .. {}, {:.3f} MB): {}", step_ + 1, b.tag,
                    b.params.size(), first, last, bytes_to_mb(b.bytes()), e.what());
    if (dynamic_cast<const CollectiveError*>(&e) != nullptr) throw CollectiveError(msg);
    throw Error(msg);
  }
}

void Reducer::finish(double backward_end_us) {
  DP_CHECK(in_backward_, "finish() without prepare_for_backward()");
  const double t0 = backward_end_us > 0 ? backward_end_us : now_us();
  // Where backward's compute ended: its last gradient plus the CPU time this thread ran after
  // it. The wall clock at finish() also counts the time this thread waited for a core, which
  // on a busy CPU is the communication thread running the last bucket's all-reduce: that
  // all-reduce delayed backward instead of hiding behind it, and counted as overlap (99% for
  // one bucket on one core, where none is possible).
  // Only the synchronising backward has all-reduces to measure against it.
  const double compute_end =
      sync_ && num_marked_ == params_.size() && last_ready_us_ > 0
          ? std::min(t0, last_ready_us_ + (thread_cpu_us() - last_ready_cpu_us_))
          : t0;
  if (num_marked_ < params_.size()) {
    // A shared parameter used fewer times than it has users has its gradient: it is ready
    // now (its bucket launches late, in order), as DDP takes it.
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!marked_[i] && params_[i]->partly_used()) {
        params_[i]->reset_uses();
        mark_ready(i);
      }
    }
  }
  if (num_marked_ < params_.size()) {
    std::vector<std::string> missing;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!marked_[i]) missing.push_back(params_[i]->name);
    }
    if (!opt_.find_unused_parameters) {
      in_backward_ = false;
      for (Bucket& b : buckets_) {
        if (b.work) b.work->wait(opt_.timeout);  // leave no collective in flight
      }
      fail(
          "step {}: {} of {} parameters got no gradient in this backward pass ({}); every "
          "parameter must get one each step, or pass --find-unused-parameters",
          step_ + 1, missing.size(), params_.size(), fmt::join(missing, ", "));
    }
    // An unused parameter contributes a zero gradient: its view is left as it is.
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!marked_[i]) mark_ready(i);
    }
  }
  in_backward_ = false;
  if (!sync_) return;

  // Without overlap nothing was launched during backward; with it, this launches only
  // what is left (normally nothing).
  for (Bucket& b : buckets_) {
    if (b.ready_us == 0) b.ready_us = t0;
  }
  launch_ready_in_order();
  DP_CHECK(next_to_launch_ == buckets_.size(), "internal: {} of {} buckets launched at finish()",
           next_to_launch_, buckets_.size());
  stats_.spans.clear();
  for (Bucket& b : buckets_) {
    wait_bucket(b);
    if (b.wire.defined()) decompress(b.wire, b.flat);  // the gradient views
    stats_.spans.push_back(
        {b.index, b.wire_bytes(), b.ready_us, b.work->start_us(), b.work->end_us()});
  }
  stats_.wait_us = now_us() - compute_end;
  stats_.backward_end_us = compute_end;
  stats_.total_us = union_length(stats_.spans, span_scratch_);
  stats_.exposed_us = union_length(stats_.spans, span_scratch_, compute_end);
  ++step_;

  if (record_order_) {
    record_order_ = false;
    if (opt_.rebuild_buckets) rebuild_from_observed_order();
  }
}

void Reducer::rebuild_from_observed_order() {
  // Ranks may observe different orders; rank 0's is the one every rank uses.
  Tensor order = Tensor::zeros({static_cast<int64_t>(params_.size())}, DType::i32);
  int32_t* o = order.data<int32_t>();
  for (size_t i = 0; i < observed_order_.size(); ++i)
    o[i] = static_cast<int32_t>(observed_order_[i]);
  pg_.broadcast(order, 0, "bucket rebuild order")->wait(opt_.timeout);
  std::vector<size_t> agreed(o, o + params_.size());
  auto assignment = assign_buckets(agreed, param_bytes(params_), mb_to_bytes(opt_.first_bucket_mb),
                                   mb_to_bytes(opt_.bucket_cap_mb));
  bool same = assignment.size() == buckets_.size();
  for (size_t i = 0; same && i < assignment.size(); ++i) same = assignment[i] == buckets_[i].params;
  // Over a parameter arena, buckets in the observed order that are not contiguous ranges of it
  // (a layer reports its weight before its bias, so a cap can split the pair the other way
  // round) would cost the in-place gradient block and the fused optimizer step; the buckets
  // in reverse registration order, which differ from them only by such swaps, are kept.
  const bool keeps_arena = arena_views_ && arena_ranges(assignment).empty();
  if (!same && !keeps_arena) pending_rebuild_ = std::move(assignment);
  observed_order_.clear();
  observed_order_.shrink_to_fit();
}

void Reducer::set_assignment(std::vector<std::vector<size_t>> assignment) {
  check_assignment(assignment, params_.size());
  record_order_ = false;  // an explicit layout replaces the rebuild in the observed order
  bool same = assignment.size() == buckets_.size();
  for (size_t i = 0; same && i < assignment.size(); ++i) same = assignment[i] == buckets_[i].params;
  pending_rebuild_.clear();
  if (!same) pending_rebuild_ = std::move(assignment);
}

std::vector<std::vector<size_t>> Reducer::assignment() const {
  if (!pending_rebuild_.empty()) return pending_rebuild_;  // what the next step uses
  std::vector<std::vector<size_t>> out;
  for (const Bucket& b : buckets_) out.push_back(b.params);
  return out;
}

std::string Reducer::layout() const {
  std::string s = fmt::format("{} bucket{}", buckets_.size(), buckets_.size() == 1 ? "" : "s");
  if (arena_views_) s += " (views of the parameter arena's gradients)";
  if (opt_.comm_hook != CommHook::none) {
    s += fmt::format(" (comm hook {}: {} on the wire)", comm_hook_name(opt_.comm_hook),
                     dtype_name(comm_hook_wire_dtype(opt_.comm_hook)));
  }
  for (const Bucket& b : buckets_) {
    s += fmt::format("\n    #{}: {:.3f} MB, {} params [{} .. {}]", b.index, bytes_to_mb(b.bytes()),
                     b.params.size(), params_[b.params.front()]->name,
                     params_[b.params.back()]->name);
  }
  return s;
}

}  // namespace dp
