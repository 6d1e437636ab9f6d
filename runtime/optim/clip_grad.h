#pragma once
#include <string>
#include <vector>

#include "runtime/nn/parameter.h"
#include "runtime/nn/parameter_arena.h"

namespace dp {

// torch.nn.utils.clip_grad_norm_ with the 2-norm: total = sqrt(sum of all squared gradient
// elements); when total > max_norm every gradient is scaled by max_norm / (total + 1e-6).
// Returns total (before clipping). Call it after the Reducer's finish(), on the averaged
// gradients, so that every rank computes the same total and scales identically.
//
// With an `arena` over exactly `params` whose gradients are intact, the sum of squares and
// the scaling are each ONE pass over the gradient block (its padding is zero, so it adds
// nothing and scales to zero). The scaling is bit-identical to the per-parameter path; the
// total is the same sum in another association order (equal to ~1e-16 relative), the same on
// every rank.
double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm,
                      ParameterArena* arena = nullptr);

// The 2-norm over every gradient element (what clip_grad_norm returns), without clipping:
// not finite exactly when some gradient element is not.
double grad_norm(const std::vector<Parameter*>& params, const ParameterArena* arena = nullptr);
// The name of the first parameter (in list order) whose gradient has a NaN or an infinity,
// and that value; "" when all are finite. Reads every gradient (to the host from a GPU):
// for the error path, after grad_norm found one.
std::string first_nonfinite_grad(const std::vector<Parameter*>& params, float* value = nullptr);

}  // namespace dp
