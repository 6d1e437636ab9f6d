#pragma once
// Argument checks and descriptions that every ProcessGroup shares. A bad call must fail
// synchronously, before anything is queued, and identically on every rank: then every rank
// throws the same dp::Error at the same call and none is left waiting in a collective.
// The checks therefore look only at what all ranks agree on (shapes, dtypes, root, world
// size), never at the rank itself.
#include <string>

#include "runtime/comm/process_group.h"
#include "runtime/core/tensor.h"

namespace dp {

void check_allreduce(const Tensor& t, ReduceOp op, const std::string& tag);
void check_broadcast(const Tensor& t, int root, int world_size, const std::string& tag);
void check_allgather(const Tensor& in, const Tensor& out, int world_size, const std::string& tag);

// What Work::description() says, e.g. "allreduce(avg) float32[1234] 'bucket 3'".
std::string describe_allreduce(const Tensor& t, ReduceOp op, const std::string& tag);
std::string describe_broadcast(const Tensor& t, int root, const std::string& tag);
std::string describe_allgather(const Tensor& in, const Tensor& out, const std::string& tag);
std::string describe_barrier(const std::string& tag);

}  // namespace dp
