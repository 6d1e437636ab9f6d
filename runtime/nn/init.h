#pragma once
// Seeded parameter initialisation that is identical on every rank and independent of the
// order in which layers are built: each parameter draws from its own Philox stream, keyed
// by a stable hash of its name. Rank 0's broadcast at Reducer construction then only
// confirms what every rank already holds.
#include <cstdint>
#include <string>

#include "runtime/core/tensor.h"
#include "runtime/nn/parameter.h"

namespace dp {

// 64-bit FNV-1a of the bytes of `s`: stable across compilers, platforms and runs
// (std::hash is not).
uint64_t stable_name_hash(const std::string& s);

// Fills the float tensor t with U[lo, hi) drawn from Philox(seed, stable_name_hash(name)).
void uniform_init(Tensor& t, float lo, float hi, uint64_t seed, const std::string& name);

// PyTorch's default for nn.Linear: kaiming_uniform(a = sqrt(5)) on the weight and the
// matching bias rule, which both reduce to U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void init_linear(Parameter& weight, Parameter& bias, size_t fan_in, uint64_t seed);

}  // namespace dp
