#include "runtime/perf/backward_profile.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "runtime/core/error.h"

namespace dp {

size_t BackwardProfile::grad_bytes() const {
  size_t total = 0;
  for (const ParamTiming& p : params) total += p.bytes;
  return total;
}

std::vector<size_t> BackwardProfile::ready_order() const {
  std::vector<size_t> order(params.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [this](size_t a, size_t b) {
    if (params[a].ready_us != params[b].ready_us) return params[a].ready_us < params[b].ready_us;
    return a > b;
  });
  return order;
}

void BackwardProfile::validate() const {
  DP_CHECK(!params.empty(), "profile: no parameters");
  auto ok = [](double t) { return std::isfinite(t) && t >= 0; };
  DP_CHECK(ok(pre_backward_us) && ok(backward_us) && ok(post_backward_us),
           "profile: step times must be finite and not negative (pre {} us, backward {} us, post "
           "{} us)",
           pre_backward_us, backward_us, post_backward_us);
  // Far beyond any model (a petabyte of gradients), and sums of it stay exact in size_t and
  // in the cost model's doubles.
  constexpr size_t kMaxBytes = size_t(1) << 50;
  size_t total = 0;
  for (const ParamTiming& p : params) {
    DP_CHECK(p.bytes > 0, "profile: parameter '{}' has no bytes", p.name);
    DP_CHECK(p.bytes <= kMaxBytes - total,
             "profile: the gradients add up to more than 2^50 bytes at parameter '{}' ({} bytes)",
             p.name, p.bytes);
    total += p.bytes;
    DP_CHECK(ok(p.ready_us), "profile: parameter '{}' is ready at {} us", p.name, p.ready_us);
  }
}

}  // namespace dp
