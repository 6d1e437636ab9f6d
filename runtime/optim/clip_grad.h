#pragma once
#include <string>
#include <vector>

#include "runtime/nn/parameter.h"

namespace dp {

// torch.nn.utils.clip_grad_norm_ with the 2-norm: total = sqrt(sum of all squared gradient
// elements); when total > max_norm every gradient is scaled by max_norm / (total + 1e-6).
// Returns total (before clipping). Call it after the Reducer's finish(), on the averaged
// gradients, so that every rank computes the same total and scales identically.
double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm);

// The 2-norm over every gradient element (what clip_grad_norm returns), without clipping:
// not finite exactly when some gradient element is not.
double grad_norm(const std::vector<Parameter*>& params);
// The name of the first parameter (in list order) whose gradient has a NaN or an infinity,
// and that value; "" when all are finite. Reads every gradient (to the host from a GPU):
// for the error path, after grad_norm found one.
std::string first_nonfinite_grad(const std::vector<Parameter*>& params, float* value = nullptr);

}  // namespace dp
