#include "runtime/perf/bucket_choice.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "runtime/core/error.h"
#include "runtime/ddp/bucket_assignment.h"

namespace dp {

std::vector<double> BucketSearch::default_grid() {
  std::vector<double> grid;
  for (int k = -4; k <= 12; ++k) grid.push_back(std::pow(2.0, k / 2.0));  // 0.25 .. 64
  return grid;
}

namespace {

std::vector<size_t> bytes_of(const BackwardProfile& profile) {
  std::vector<size_t> bytes;
  bytes.reserve(profile.params.size());
  for (const ParamTiming& p : profile.params) bytes.push_back(p.bytes);
  return bytes;
}

}  // namespace

BucketChoice evaluate_buckets(const BackwardProfile& profile, const AllReduceCost& cost,
                              double first_mb, double cap_mb, const SimOptions& sim) {
  BucketChoice c;
  c.first_mb = first_mb;
  c.cap_mb = cap_mb;
  c.assignment = assign_buckets(profile.ready_order(), bytes_of(profile), mb_to_bytes(first_mb),
                                mb_to_bytes(cap_mb));
  c.prediction = simulate_step(profile, c.assignment, cost, sim);
  return c;
}

BucketChoice choose_buckets(const BackwardProfile& profile, const AllReduceCost& cost,
                            const BucketSearch& search) {
  profile.validate();
  DP_CHECK(!search.first_mb.empty() && !search.cap_mb.empty(), "bucket search: an empty grid");
  const std::vector<size_t> order = search.order.empty() ? profile.ready_order() : search.order;
  const std::vector<size_t> bytes = bytes_of(profile);
  std::vector<BucketChoice> all;
  all.reserve(search.first_mb.size() * search.cap_mb.size());
  for (double first : search.first_mb) {
    for (double cap : search.cap_mb) {
      BucketChoice c;
      c.first_mb = first;
      c.cap_mb = cap;
      c.assignment = assign_buckets(order, bytes, mb_to_bytes(first), mb_to_bytes(cap));
      c.prediction = simulate_step(profile, c.assignment, cost, search.sim);
      all.push_back(std::move(c));
    }
  }
  double best = all.front().prediction.step_us;
  for (const BucketChoice& c : all) best = std::min(best, c.prediction.step_us);
  const double tied = best * (1 + search.tie_fraction);
  const BucketChoice* pick = nullptr;
  for (const BucketChoice& c : all) {
    if (c.prediction.step_us > tied) continue;
    auto key = [](const BucketChoice& x) {
      return std::make_tuple(x.assignment.size(), -x.cap_mb, -x.first_mb);
    };
    if (pick == nullptr || key(c) < key(*pick)) pick = &c;
  }
  DP_CHECK(pick != nullptr, "bucket search: no candidate within {} of the best prediction {} us",
           search.tie_fraction, best);
  return *pick;
}

}  // namespace dp
