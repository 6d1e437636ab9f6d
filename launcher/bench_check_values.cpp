#include "launcher/bench_check_values.h"

#include "runtime/core/error.h"

namespace dp {

namespace {

constexpr size_t kMaxContributors = 64;
// The periods of the two terms in i: coprime and odd, so that their sum has an odd period
// that no shift by a power of two matches, whatever the number of contributors.
constexpr size_t kBasePeriod = 3;
constexpr size_t kShiftPeriod = 5;

}  // namespace

CheckValues::CheckValues(int world) {
  DP_CHECK(world >= 1, "bench-allreduce: a world of {} rank(s)", world);
  stride_ = (size_t(world) + kMaxContributors - 1) / kMaxContributors;
  sums_.assign(kBasePeriod * kShiftPeriod * stride_, 0.0f);
  for (size_t i = 0; i < sums_.size(); ++i)
    for (size_t r = i % stride_; r < size_t(world); r += stride_) sums_[i] += value(int(r), i);
}

float CheckValues::value(int rank, size_t i) const {
  const size_t r = size_t(rank);
  if (r % stride_ != i % stride_) return 0.0f;
  const size_t shift_term = r < stride_ ? i % kShiftPeriod : 0;
  return float(1 + (r + i) % kBasePeriod + shift_term);
}

}  // namespace dp
