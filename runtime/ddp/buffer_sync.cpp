#include "runtime/ddp/buffer_sync.h"

#include "runtime/comm/gather_strings.h"
#include "runtime/core/error.h"
#include "runtime/ddp/replica_check.h"

namespace dp {

std::vector<std::string> buffer_signature(const std::vector<Buffer*>& buffers) {
  std::vector<std::string> sig;
  sig.reserve(buffers.size());
  for (const Buffer* b : buffers) sig.push_back(replica_entry(b->name, b->value));
  return sig;
}

BufferSync::BufferSync(std::vector<Buffer*> buffers, ProcessGroup& pg,
                       std::chrono::milliseconds timeout)
    : buffers_(std::move(buffers)), pg_(pg), timeout_(timeout) {
  auto per_rank = allgather_lines(pg_, buffer_signature(buffers_), timeout_, "buffer check");
  const std::string mismatch = describe_replica_mismatch(per_rank, "buffer");
  if (!mismatch.empty()) throw CollectiveError(mismatch);
  if (buffers_.empty()) return;
  size_t total = 0;
  const Device device = buffers_.front()->value.device();
  for (const Buffer* b : buffers_) {
    DP_CHECK(b->value.dtype() == DType::f32 && b->value.device() == device,
             "buffer '{}' is {} on {}: buffers are synchronised as float32 on one device ({})",
             b->name, b->value.str(), b->value.device().str(), device.str());
    total += b->value.numel();
  }
  arena_ = pg_.allocate(total, DType::f32, device);
  size_t offset = 0;
  for (Buffer* b : buffers_) {
    Tensor view = arena_.view(offset, b->value.shape());
    view.copy_(b->value);
    b->value = view;
    offset += view.numel();
  }
  broadcast("initial buffers");
}

void BufferSync::broadcast(const std::string& why) {
  if (!arena_.defined() || pg_.size() == 1) return;
  tag_.assign("buffers (").append(why).append(")");  // in the capacity of the last one
  pg_.broadcast(arena_, 0, tag_)->wait(timeout_);
}

}  // namespace dp
