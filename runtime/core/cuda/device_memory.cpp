// Tensor memory on CUDA devices (the hooks declared in runtime/core/device.h).
#include <cuda_runtime_api.h>

#include <cstring>
#include <memory>

#include "runtime/core/cuda/allocator.h"
#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/pinned.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"

namespace dp {

void* cuda_alloc_zeroed(size_t bytes, int device, std::shared_ptr<void>* owner) {
  if (bytes == 0) {
    owner->reset();
    return nullptr;
  }
  DeviceGuard guard(device);
  cudaStream_t stream = compute_stream(device);
  // Stream-ordered: the caching allocator hands this block to work on the compute stream
  // at once, and frees it back for that stream, so no synchronisation is needed.
  void* p = default_cuda_allocator().allocate(bytes, stream, device);
  DP_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, stream));
  *owner = std::shared_ptr<void>(p, [](void* q) { default_cuda_allocator().free(q); });
  return p;
}

void* cuda_host_alloc_zeroed(size_t bytes, std::shared_ptr<void>* owner) {
  if (bytes == 0) {
    owner->reset();
    return nullptr;
  }
  auto buf = std::make_shared<PinnedBuffer>(bytes);
  std::memset(buf->data(), 0, bytes);
  void* p = buf->data();
  *owner = std::move(buf);
  return p;
}

void cuda_set_current_device(int device) {
  const cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail("cannot make cuda:{} the current device: {} ({}); check CUDA_VISIBLE_DEVICES", device,
         cudaGetErrorString(e), cudaGetErrorName(e));
  }
}

void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  // The copy is ordered on the compute stream of the device it involves (the destination's
  // when both are devices, after the source's stream has drained).
  const int device = dst_device.is_cuda() ? dst_device.index : src_device.index;
  if (dst_device.is_cuda() && src_device.is_cuda() && src_device.index != dst_device.index) {
    DP_CUDA_CHECK(cudaStreamSynchronize(compute_stream(src_device.index)));
  }
  DeviceGuard guard(device);
  cudaStream_t stream = compute_stream(device);
  DP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
  // The host reads what it copied out right after this returns; a copy from pageable host
  // memory has been staged before cudaMemcpyAsync returns, so only device-to-host waits.
  // A copy from pinned memory is still in flight on return: its owner keeps it unchanged
  // until the stream has passed it (the data loader's pinned batches, see the Trainer).
  if (dst_device.is_cpu()) DP_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void cuda_sync(int device) {
  DeviceGuard guard(device);
  DP_CUDA_CHECK(cudaStreamSynchronize(compute_stream(device)));
}

void cuda_zero(void* p, int device, size_t bytes) {
  if (bytes == 0) return;
  DeviceGuard guard(device);
  DP_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, compute_stream(device)));
}

}  // namespace dp
