#pragma once
// Normal initialisation (GPT-2's N(0, 0.02) and its scaled residual projections), seeded per
// parameter by name like runtime/nn/init.h: identical on every rank, independent of the order
// in which layers are built.
#include <cstdint>
#include <string>

#include "runtime/core/tensor.h"

namespace dp {

// Fills the float32 tensor t with N(0, std^2) drawn from Philox(seed, stable_name_hash(name)).
void normal_init(Tensor& t, float std, uint64_t seed, const std::string& name);

}  // namespace dp
