#pragma once
#include <vector>

#include "runtime/nn/parameter.h"

namespace dp {

// torch.nn.utils.clip_grad_norm_ with the 2-norm: total = sqrt(sum of all squared gradient
// elements); when total > max_norm every gradient is scaled by max_norm / (total + 1e-6).
// Returns total (before clipping). Call it after the Reducer's finish(), on the averaged
// gradients, so that every rank computes the same total and scales identically.
double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm);

}  // namespace dp
