#pragma once
// A caching device allocator (PyTorch's design, simplified). cudaMalloc and cudaFree are
// slow (each can take milliseconds and cudaFree synchronises the whole device), so a
// training step must not call them: after the first step every allocation is served from
// memory this allocator already holds. stats().cuda_malloc_calls staying constant from step
// to step is how tests prove it.
//
// Sizes. A request is rounded up to a multiple of 512 B when it is at most 1 MiB ("small")
// and to a multiple of 2 MiB otherwise ("large"). Small requests are carved out of 2 MiB
// segments; a large request that misses the cache gets a segment of exactly its rounded
// size. A free block larger than the request is split; neighbours in the same segment
// merge again when both are free, so a whole segment can be returned by empty_cache().
//
// Reuse. Free blocks are binned per device, per pool (small/large) and per stream; a
// request takes the smallest free block of its pool and stream that fits (best fit).
//
// Streams (the rule callers must follow). Every block belongs to the stream it was
// allocated on. A freed block is reusable AT ONCE by later work on that same stream: the
// stream runs in issue order, so the next user's kernels start after the last user's
// finished, even though free() returned before the GPU got there. Use on ANOTHER stream
// (the NCCL comm stream reading a gradient bucket written on the compute stream) must be
// declared with record_stream(ptr, other_stream) before the free: free() then records an
// event on every such stream and the block is reused only once those events have completed.
// Without it, the block could be handed out and overwritten while the other stream is still
// reading it.
//
// OOM. When cudaMalloc reports out-of-memory the allocator waits for pending cross-stream
// frees, returns every wholly free cached segment of that device to CUDA and retries once;
// if that fails too, a dp::Error names the request, the allocator's stats and the device's
// free/total memory.
//
// Thread safety: every public member function may be called from any thread.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace dp {

struct AllocatorStats {
  size_t allocated_bytes = 0;  // live blocks, rounded sizes
  size_t requested_bytes = 0;  // live blocks, sizes as asked for
  size_t reserved_bytes = 0;   // held from cudaMalloc: live + cached
  size_t peak_allocated_bytes = 0;
  size_t peak_reserved_bytes = 0;
  size_t active_blocks = 0;
  uint64_t alloc_calls = 0;        // allocations of at least one byte
  uint64_t cache_hits = 0;         // allocations served without cudaMalloc
  uint64_t cuda_malloc_calls = 0;  // every attempt, including ones that ran out of memory
  uint64_t cuda_free_calls = 0;
  uint64_t ooms = 0;  // cudaMalloc out-of-memory results (a failed retry counts twice)

  std::string str() const;
};

// Formats a byte count for messages: "512 B", "1.50 MiB", "3.00 GiB".
std::string format_bytes(size_t bytes);

// What the allocator asks of the device. The CUDA implementation is the default; tests
// supply a fake one so that binning, splitting, stream rules and the OOM path can be
// checked on a machine without a GPU.
class DeviceMemoryBackend {
 public:
  virtual ~DeviceMemoryBackend() = default;
  virtual int current_device() = 0;
  // nullptr when the device is out of memory; any other failure throws dp::Error.
  virtual void* malloc(int device, size_t bytes) = 0;
  virtual void free(int device, void* ptr) = 0;
  // An event recorded now on `stream` (a stream of `device`).
  virtual cudaEvent_t record_event(int device, cudaStream_t stream) = 0;
  virtual bool event_done(int device, cudaEvent_t event) = 0;
  virtual void event_synchronize(int device, cudaEvent_t event) = 0;
  virtual void release_event(int device, cudaEvent_t event) = 0;
  // "cuda:0 has 1.2 GiB free of 79.1 GiB" for error messages; empty if unknown.
  virtual std::string describe_memory(int device) = 0;
};

std::unique_ptr<DeviceMemoryBackend> make_cuda_memory_backend();

class CachingAllocator {
 public:
  static constexpr size_t kMinBlock = 512;          // granularity of small requests
  static constexpr size_t kSmallSize = 1 << 20;     // largest "small" request
  static constexpr size_t kSmallSegment = 2 << 20;  // segment small requests are carved from
  static constexpr size_t kLargeGranularity = 2 << 20;

  // The size a request of `bytes` occupies.
  static size_t round_size(size_t bytes);

  // backend == nullptr: CUDA.
  explicit CachingAllocator(std::unique_ptr<DeviceMemoryBackend> backend = nullptr);
  // Returns every cached segment to the device. Blocks still allocated are leaked (their
  // memory may still be in use) and reported with a warning.
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // `bytes` of device memory on `device` (-1: the current device) for use on `stream`.
  // 0 bytes returns nullptr. Throws dp::Error when the device is out of memory.
  void* allocate(size_t bytes, cudaStream_t stream, int device = -1);
  // Returns a block to the cache (never to cudaFree). nullptr is ignored; a pointer this
  // allocator did not hand out (or freed twice) is a dp::Error.
  void free(void* ptr);
  // Declares that `stream` (of the block's device) uses the live block `ptr`; see the
  // stream rules at the top of this file. Recording the allocation stream is a no-op.
  void record_stream(void* ptr, cudaStream_t stream);
  // Waits for pending cross-stream frees, then returns every wholly free segment to CUDA.
  void empty_cache();

  AllocatorStats stats(int device) const;
  AllocatorStats stats() const;  // summed over devices (peaks are sums of per-device peaks)
  void reset_peak_stats();
  // The rounded size of the live allocation `ptr` (a dp::Error if there is none).
  size_t block_size(void* ptr) const;
  int current_device() const { return backend_->current_device(); }

 private:
  struct Block;
  struct BlockLess {
    bool operator()(const Block* a, const Block* b) const;
  };
  struct DeviceState;

  DeviceState& device_state(int device);
  Block* take_free_block(DeviceState& ds, bool small, cudaStream_t stream, size_t size);
  Block* new_segment(int device, DeviceState& ds, bool small, cudaStream_t stream, size_t size,
                     size_t requested);
  void split(DeviceState& ds, Block* block, size_t size);
  void return_to_pool(Block* block);
  void process_events(bool wait, int device);
  void release_cached(int device);
  std::string oom_message(int device, size_t requested, size_t segment);

  std::unique_ptr<DeviceMemoryBackend> backend_;
  mutable std::mutex mu_;
  std::map<int, std::unique_ptr<DeviceState>> devices_;
  std::unordered_map<void*, Block*> live_;
  struct PendingFree {
    cudaEvent_t event;
    Block* block;
  };
  std::vector<PendingFree> pending_;  // events that guard cross-stream frees
};

// The process-wide allocator the runtime allocates device memory from. It is never
// destroyed: at exit the CUDA runtime may already be unloading, and cudaFree would fail.
CachingAllocator& default_cuda_allocator();

// One device allocation owned by a scope: freed (to the allocator's cache) on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(size_t bytes, cudaStream_t stream, int device = -1,
               CachingAllocator& allocator = default_cuda_allocator());
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept { swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return size_; }
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  void record_stream(cudaStream_t stream);
  void reset() noexcept;  // frees now; a failure is logged (it runs in destructors)

 private:
  void swap(DeviceBuffer& o) noexcept;
  CachingAllocator* allocator_ = nullptr;
  void* ptr_ = nullptr;
  size_t size_ = 0;
  int device_ = -1;
  cudaStream_t stream_ = nullptr;
};

}  // namespace dp
