#include "runtime/train/buffer_snapshot.h"

#include "runtime/nn/buffers.h"

namespace dp {

void BufferSnapshot::save(const std::vector<Buffer*>& buffers) {
  if (copies_.empty())
    for (Buffer* b : buffers) copies_.push_back({b, Tensor()});
  for (auto& [buffer, copy] : copies_) {
    ensure_like(copy, buffer->value, buffer->value.dtype(), buffer->value.device());
    copy.copy_(buffer->value);
  }
}

void BufferSnapshot::restore() {
  for (auto& [buffer, copy] : copies_) buffer->value.copy_(copy);
}

}  // namespace dp
