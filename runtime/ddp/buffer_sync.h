#pragma once
// Module buffers under DDP (BatchNorm's running statistics): PyTorch's broadcast_buffers.
// Each rank's forward updates its own buffers from its own batch; broadcasting rank 0's
// before every forward keeps the replicas identical without averaging anything, as
// DistributedDataParallel does by default.
//
// The buffers are moved into one flat arena from the process group (their values become
// views of it, like gradients in the Reducer's buckets), so a broadcast is one collective
// whatever the number of layers.
#include <chrono>
#include <string>
#include <vector>

#include "runtime/comm/process_group.h"
#include "runtime/nn/parameter.h"

namespace dp {

class BufferSync {
 public:
  // Collective: compares every rank's buffer list (names, shapes, dtypes; a difference is a
  // dp::CollectiveError naming the first one and both ranks), then packs the buffers
  // (float32) into one arena on their device and broadcasts rank 0's values.
  BufferSync(std::vector<Buffer*> buffers, ProcessGroup& pg, std::chrono::milliseconds timeout);

  // Collective: every rank's buffers become rank 0's. Nothing to do without buffers or
  // with one rank.
  void broadcast(const std::string& why);

  size_t numel() const { return arena_.defined() ? arena_.numel() : 0; }

 private:
  std::vector<Buffer*> buffers_;
  ProcessGroup& pg_;
  std::chrono::milliseconds timeout_;
  Tensor arena_;
  std::string tag_;
};

// One line per buffer, "name dtype[shape]", in registration order.
std::vector<std::string> buffer_signature(const std::vector<Buffer*>& buffers);

}  // namespace dp
