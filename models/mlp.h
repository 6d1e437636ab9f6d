#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "runtime/nn/sequential.h"

namespace dp {

// fc1 -> relu1 -> fc2 -> relu2 -> ... -> fcN (logits, no activation), with
// N = hidden.size() + 1. Parameters are fc1.weight, fc1.bias, fc2.weight, ...; each is
// initialised from (seed, its name), so every rank builds the same model.
// The mlp's parameter elements (weights and biases); nullopt past 2^64.
std::optional<size_t> mlp_parameter_count(size_t in_features, const std::vector<size_t>& hidden,
                                          size_t num_classes);

std::unique_ptr<Sequential> make_mlp(size_t in_features, const std::vector<size_t>& hidden,
                                     size_t num_classes, uint64_t seed);

}  // namespace dp
