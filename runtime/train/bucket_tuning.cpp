#include "runtime/train/bucket_tuning.h"

#include <nlohmann/json.hpp>

#include "runtime/comm/process_group.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"
#include "runtime/core/units.h"
#include "runtime/ddp/reducer.h"
#include "runtime/perf/allreduce_calibration.h"
#include "runtime/perf/allreduce_probe.h"

namespace dp {

namespace {

// [buckets, size of each, parameter indices...] as int32: one broadcast, of a length every
// rank knows (at most one bucket per parameter).
Tensor encode(const std::vector<std::vector<size_t>>& assignment, size_t num_params) {
  Tensor t = Tensor::zeros({static_cast<int64_t>(1 + 2 * num_params)}, DType::i32);
  int32_t* p = t.data<int32_t>();
  size_t k = 0;
  p[k++] = static_cast<int32_t>(assignment.size());
  for (const auto& b : assignment) p[k++] = static_cast<int32_t>(b.size());
  for (const auto& b : assignment)
    for (size_t i : b) p[k++] = static_cast<int32_t>(i);
  return t;
}

std::vector<std::vector<size_t>> decode(const Tensor& t, size_t num_params) {
  const int32_t* p = t.data<int32_t>();
  const auto limit = static_cast<int32_t>(num_params);
  DP_CHECK(p[0] >= 1 && p[0] <= limit, "auto buckets: rank 0 sent {} buckets", p[0]);
  std::vector<std::vector<size_t>> out(static_cast<size_t>(p[0]));
  size_t k = 1 + out.size(), total = 0;
  for (size_t b = 0; b < out.size(); ++b) {
    const int32_t n = p[1 + b];
    DP_CHECK(n >= 1 && total + size_t(n) <= num_params, "auto buckets: a bucket of {} parameters",
             n);
    total += size_t(n);
    for (int32_t j = 0; j < n; ++j) out[b].push_back(static_cast<size_t>(p[k++]));
  }
  return out;  // Reducer::set_assignment checks the indices
}

}  // namespace

BucketTuner::BucketTuner(BucketTuningOptions options, Reducer& reducer, ProcessGroup& pg,
                         JsonLog* log)
    : opt_(std::move(options)), reducer_(reducer), pg_(pg), log_(log) {
  DP_CHECK(opt_.profile_steps >= 1, "auto buckets: profile at least one step");
  first_ = opt_.start_step + 2;
  last_ = opt_.start_step + 1 + opt_.profile_steps;
}

BackwardProfile BucketTuner::profile() const {
  std::vector<std::string> names;
  std::vector<size_t> bytes;
  for (const Parameter* p : reducer_.parameters()) {
    names.push_back(p->name);
    bytes.push_back(p->value.nbytes());
  }
  return median_profile(samples_, names, bytes);
}

void BucketTuner::after_step(uint64_t step, const StepMetrics& m) {
  if (step == last_ && !decided_) decide(/*choose=*/true);
  // The step after the decision rebuilds the buckets: measure from the one after it.
  if (decided_ && step >= last_ + 2 && !opt_.profile_out.empty() && pg_.rank() == 0) {
    if (measured_.size() < kMeasuredSteps) {
      measured_.push_back(m);
    } else {
      measured_[measured_count_ % kMeasuredSteps] = m;  // medians do not care about order
    }
    ++measured_count_;
  }
}

void BucketTuner::decide(bool choose) {
  decided_ = true;
  // Every rank's ready times (from its step start), so that rank 0 sees the slowest rank's.
  const size_t params = reducer_.parameters().size(), steps = samples_.size();
  // Before they become the slowest rank's: predict extrapolates from this rank's own.
  own_ready_us_.clear();
  for (const ParamTiming& t : profile().params) own_ready_us_.push_back(t.ready_us);
  if (pg_.size() > 1) {
    Tensor mine = Tensor::zeros({static_cast<int64_t>(steps * params)});
    Tensor all = Tensor::zeros({static_cast<int64_t>(size_t(pg_.size()) * steps * params)});
    for (size_t s = 0; s < steps; ++s)
      for (size_t p = 0; p < params; ++p)
        mine.f32()[s * params + p] =
            float(samples_[s].pre_backward_us + samples_[s].ready_us.at(p));
    pg_.allgather(mine, all, "profile ready times")->wait(opt_.timeout);
    samples_ = slowest_rank_view(std::move(samples_),
                                 std::vector<float>(all.f32(), all.f32() + all.numel()), pg_.size(),
                                 reducer_.assignment());
  }
  const BackwardProfile prof = profile();
  ProbeOptions probe;
  probe.sizes_bytes = default_probe_sizes(prof.grad_bytes());
  probe.timeout = opt_.timeout;
  probe_ = opt_.measure ? opt_.measure(pg_, probe) : measure_allreduce(pg_, probe);
  std::vector<BucketTiming> spans;
  for (const StepSample& s : samples_) spans.insert(spans.end(), s.spans.begin(), s.spans.end());
  busy_ = calibrate_busy(spans, probe_);
  const AllReduceFit idle = probe_, busy = busy_;
  const AllReduceCost cost = [idle](double bytes) { return idle.time_us(bytes); };
  SimOptions sim;
  sim.overlap = opt_.overlap;
  sim.wire_ratio = opt_.wire_ratio;
  sim.busy_cost = [busy](double bytes) { return busy.time_us(bytes); };
  set_link_burst(sim, opt_.link_burst_bytes, hosts_, cost);

  const size_t num_params = reducer_.parameters().size();
  const bool tune = choose && auto_buckets();
  if (pg_.rank() == 0) {
    // What the profiled steps used (the caps in the observed order), as the baseline.
    BucketChoice fixed;
    fixed.first_mb = opt_.first_mb;
    fixed.cap_mb = opt_.cap_mb;
    fixed.assignment = reducer_.assignment();
    fixed.prediction = simulate_step(prof, fixed.assignment, cost, sim);
    in_use_ = fixed;
    if (tune) {
      BucketSearch search;
      search.sim = sim;
      if (!opt_.auto_first) search.first_mb = {opt_.first_mb};
      if (!opt_.auto_cap) search.cap_mb = {opt_.cap_mb};
      // Keep the buckets ranges of the parameter arena (in-place gradients, fused step).
      if (reducer_.buckets_are_arena_views())
        for (size_t i = num_params; i-- > 0;) search.order.push_back(i);
      in_use_ = choose_buckets(prof, cost, search);
    }
    if (!opt_.quiet) {
      log::rank0(
          "all-reduce over {} rank(s): {:.0f} us + {:.3f} ms/MB alone, {:.0f} us + {:.3f} ms/MB "
          "during backward (steps {}..{}: backward {:.1f} ms, step without communication {:.1f} "
          "ms)",
          pg_.size(), idle.alpha_us, idle.us_per_byte * 1048.576, busy.alpha_us,
          busy.us_per_byte * 1048.576, first_, last_, prof.backward_us / 1000,
          prof.compute_us() / 1000);
      if (tune)
        log::rank0(
            "auto buckets: first {:.3g} MB, cap {:.3g} MB: {} bucket(s), predicted step {:.1f} "
            "ms, exposed {:.1f} ms/step (fixed {:.3g}/{:.3g} MB: {} bucket(s), {:.1f} ms, "
            "exposed {:.1f} ms)",
            in_use_.first_mb, in_use_.cap_mb, in_use_.assignment.size(),
            in_use_.prediction.step_us / 1000, in_use_.prediction.exposed_us / 1000, fixed.first_mb,
            fixed.cap_mb, fixed.assignment.size(), fixed.prediction.step_us / 1000,
            fixed.prediction.exposed_us / 1000);
    }
    if (tune && log_ != nullptr && log_->is_open()) {
      std::vector<double> bucket_mb;
      for (const SimBucket& b : in_use_.prediction.buckets)
        bucket_mb.push_back(bytes_to_mb(double(b.bytes)));
      log_->write({{"type", "auto_buckets"},
                   {"step", last_},
                   {"first_mb", in_use_.first_mb},
                   {"cap_mb", in_use_.cap_mb},
                   {"bucket_mb", bucket_mb},
                   {"predicted_step_ms", in_use_.prediction.step_us / 1000},
                   {"predicted_exposed_ms", in_use_.prediction.exposed_us / 1000},
                   {"fixed_predicted_step_ms", fixed.prediction.step_us / 1000},
                   {"fixed_predicted_exposed_ms", fixed.prediction.exposed_us / 1000},
                   {"idle_alpha_us", idle.alpha_us},
                   {"idle_us_per_byte", idle.us_per_byte},
                   {"busy_alpha_us", busy.alpha_us},
                   {"busy_us_per_byte", busy.us_per_byte}});
    }
  }
  if (!tune) return;
  // Rank 0 decides; every rank takes its assignment (the ranks' profiles differ a little,
  // and their buckets must not).
  Tensor msg =
      encode(pg_.rank() == 0 ? in_use_.assignment : std::vector<std::vector<size_t>>{}, num_params);
  if (pg_.size() > 1) pg_.broadcast(msg, 0, "auto bucket assignment")->wait(opt_.timeout);
  reducer_.set_assignment(decode(msg, num_params));
}

void BucketTuner::finish() {
  if (!decided_) {
    if (auto_buckets() && pg_.rank() == 0)
      log::warn(
          "auto buckets: the run ended before its profile (steps {}..{}) did: kept {:.3g}/{:.3g} "
          "MB",
          first_, last_, opt_.first_mb, opt_.cap_mb);
    if (samples_.empty() || opt_.profile_out.empty()) return;
    decide(/*choose=*/false);  // for the profile's all-reduce figures
  }
  if (pg_.rank() == 0 && !opt_.profile_out.empty()) write_profile();
}

void BucketTuner::write_profile() const {
  RunProfile p;
  p.world_size = pg_.size();
  p.backend = pg_.backend();
  p.model = opt_.model;
  p.batch_size = opt_.batch_size;
  p.grad_accum = opt_.grad_accum;
  p.overlap = opt_.overlap;
  p.wire_ratio = opt_.wire_ratio;
  p.link_burst_bytes = opt_.link_burst_bytes;
  p.hosts = hosts_;
  p.first_step = first_;
  p.last_step = std::min<uint64_t>(last_, first_ + samples_.size() - 1);
  p.compute = profile();
  p.own_ready_us = own_ready_us_;
  p.allreduce_idle = probe_;
  p.allreduce_busy = busy_;
  p.first_bucket_mb = in_use_.first_mb;
  p.bucket_cap_mb = in_use_.cap_mb;
  p.auto_buckets = auto_buckets();
  p.assignment = in_use_.assignment;
  p.predicted_step_us = in_use_.prediction.step_us;
  p.predicted_exposed_us = in_use_.prediction.exposed_us;
  if (!measured_.empty()) {
    auto med = [this](double StepMetrics::*field) {
      std::vector<double> v;
      for (const StepMetrics& m : measured_) v.push_back(m.*field * 1000);
      return median(std::move(v));
    };
    p.measured.steps = measured_.size();
    p.measured.step_us = med(&StepMetrics::step_ms);
    p.measured.backward_us = med(&StepMetrics::backward_ms);
    p.measured.comm_us = med(&StepMetrics::comm_ms);
    p.measured.exposed_us = med(&StepMetrics::exposed_comm_ms);
    p.measured.other_wait_us = med(&StepMetrics::other_wait_ms);
  }
  write_run_profile(opt_.profile_out, p);
  if (!opt_.quiet)
    log::rank0("profile written to {} (steps {}..{}; {} measured step(s) after it)",
               opt_.profile_out, p.first_step, p.last_step, p.measured.steps);
}

}  // namespace dp
