#pragma once
// Page-locked ("pinned") host memory. Copies between the device and pinned memory are true
// DMA transfers that run asynchronously on a stream and overlap compute; from ordinary
// (pageable) memory cudaMemcpyAsync first copies through a driver staging buffer and
// returns only after that, so the "async" copy blocks the host. The data loader's
// host-to-device batches and the MPI backend's host staging of GPU tensors use these.
//
// The buffer must not be rewritten (or freed) while an asynchronous copy still reads it:
// record an event after the copy and synchronize it (or the stream) before reuse.
// Destruction does not wait for pending copies.
#include <cuda_runtime_api.h>

#include <cstddef>

namespace dp {

class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  // cudaHostAllocPortable: pinned for every device of the process, not only the current
  // one, so a buffer can feed any GPU. 0 bytes allocates nothing.
  explicit PinnedBuffer(size_t bytes, unsigned int flags = cudaHostAllocPortable);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& o) noexcept { swap(o); }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return size_; }
  unsigned int flags() const { return flags_; }
  explicit operator bool() const { return ptr_ != nullptr; }

 private:
  void swap(PinnedBuffer& o) noexcept;
  void* ptr_ = nullptr;
  size_t size_ = 0;
  unsigned int flags_ = 0;
};

}  // namespace dp
