#pragma once
// torch.nn.parallel.replicate: what DataParallel copies from replica 0 to every other replica
// before each forward: every parameter's value and every buffer (BatchNorm's running
// statistics). The replicas' own values are overwritten; their gradients are not touched.
#include <string>
#include <vector>

#include "runtime/nn/module.h"

namespace dp {

// The tensors of one replica that replicate() copies, in registration order.
struct ReplicaState {
  std::vector<Parameter*> params;
  std::vector<Buffer*> buffers;
  static ReplicaState of(Module& model) { return {model.parameters(), model.buffers()}; }
};

// Throws dp::Error naming the first difference unless `other` has the parameters and buffers
// of `first` (names, shapes, dtypes, in the same order): the replicas must be built alike.
void check_same_replica(const ReplicaState& first, const ReplicaState& other, size_t replica);

// Copies every parameter value and buffer of `from` into `to` (any devices: a GPU copy is
// ordered after the source device's queued work, runtime/core/device.h).
void replicate(const ReplicaState& from, const ReplicaState& to);

// Bytes replicate() moves per replica.
size_t replicate_bytes(const ReplicaState& state);

}  // namespace dp
