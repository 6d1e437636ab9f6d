#include "launcher/bench_check_values.h"

#include "runtime/core/error.h"

namespace dp {

namespace {

constexpr size_t kMaxContributors = 64;

}  // namespace

CheckValues::CheckValues(int world) {
  DP_CHECK(world >= 1, "bench-allreduce: a world of {} rank(s)", world);
  stride_ = (size_t(world) + kMaxContributors - 1) / kMaxContributors;
  sums_.assign(3 * stride_, 0.0f);
  for (size_t i = 0; i < sums_.size(); ++i)
    for (size_t r = i % stride_; r < size_t(world); r += stride_) sums_[i] += value(int(r), i);
}

float CheckValues::value(int rank, size_t i) const {
  const size_t r = size_t(rank);
  return r % stride_ == i % stride_ ? float(1 + (r + i) % 3) : 0.0f;
}

}  // namespace dp
