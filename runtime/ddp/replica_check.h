#pragma once
#include <chrono>
#include <string>
#include <vector>

#include "runtime/comm/process_group.h"
#include "runtime/nn/parameter.h"

namespace dp {

// "name dtype[shape]", with " on cuda" for a device tensor: the kind of device, not which
// one (ranks of one node compute on different GPUs, cuda:0 and cuda:1, with equal replicas).
std::string replica_entry(const std::string& name, const Tensor& value);

// One line per parameter (replica_entry), in registration order.
std::vector<std::string> parameter_signature(const std::vector<Parameter*>& params);

// Compares the parameter signatures of all ranks (all of them travel to every rank, so
// every rank reaches the same verdict and the same message). On a difference throws a
// dp::CollectiveError naming the first differing parameter and the two ranks, e.g.
//   "model replicas differ: parameter #2 is 'fc2.weight float32[128, 256]' on rank 0 but
//    'fc2.weight float32[100, 256]' on rank 1"
// Must be called by every rank: it is a collective.
void verify_replicas_match(const std::vector<Parameter*>& params, ProcessGroup& pg,
                           std::chrono::milliseconds timeout);

// The comparison itself, separated so it can be tested without ranks: returns "" when
// every rank's signature equals rank 0's, else the message above.
// `what` names the items compared ("parameter", "buffer").
std::string describe_replica_mismatch(const std::vector<std::vector<std::string>>& per_rank,
                                      const char* what = "parameter");

}  // namespace dp
