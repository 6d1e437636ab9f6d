#include "runtime/core/cuda/pinned.h"

#include <utility>

#include "runtime/core/cuda/allocator.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

PinnedBuffer::PinnedBuffer(size_t bytes, unsigned int flags) : flags_(flags) {
  if (bytes == 0) return;
  void* p = nullptr;
  cudaError_t e = cudaHostAlloc(&p, bytes, flags);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail(
        "cudaHostAlloc({}) of pinned host memory failed: {} ({}). Pinned memory is limited by "
        "the locked-memory limit (ulimit -l; containers: --ulimit memlock=-1) and by physical "
        "memory; use smaller or fewer staging buffers",
        format_bytes(bytes), cudaGetErrorString(e), cudaGetErrorName(e));
  }
  ptr_ = p;
  size_ = bytes;
}

PinnedBuffer::~PinnedBuffer() {
  if (!ptr_) return;
  cudaError_t e = cudaFreeHost(ptr_);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    try {
      log::warn("cudaFreeHost of a {} pinned buffer failed: {}", format_bytes(size_),
                cudaGetErrorString(e));
    } catch (...) {
    }
  }
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    PinnedBuffer tmp(std::move(o));
    swap(tmp);
  }
  return *this;
}

void PinnedBuffer::swap(PinnedBuffer& o) noexcept {
  std::swap(ptr_, o.ptr_);
  std::swap(size_, o.size_);
  std::swap(flags_, o.flags_);
}

}  // namespace dp
