#include "runtime/optim/clip_grad.h"

#include <cmath>

#include "runtime/ops/cpu/elementwise.h"

namespace dp {

double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm) {
  DP_CHECK(std::isfinite(max_norm) && max_norm > 0.0,
           "clip_grad_norm: max_norm {} must be finite and > 0", max_norm);
  double sq = 0;
  for (const Parameter* p : params) {
    DP_CHECK(p != nullptr, "clip_grad_norm: null parameter");
    sq += sum_squares(p->grad.numel(), p->grad.f32());
  }
  const double total = std::sqrt(sq);
  // torch multiplies by min(coef, 1) unconditionally; skipping coef >= 1 gives the same
  // result without a pass over memory. A non-finite total leaves the gradients as they are
  // (torch would turn them into NaN or 0): the caller sees the norm and can skip the step.
  const double coef = max_norm / (total + 1e-6);
  if (std::isfinite(total) && coef < 1.0) {
    const float c = static_cast<float>(coef);
    for (Parameter* p : params) scale(p->grad.numel(), c, p->grad.f32());
  }
  return total;
}

}  // namespace dp
