#include "runtime/core/cuda/allocator.h"

#include <algorithm>
#include <limits>
#include <set>
#include <utility>

#include <fmt/format.h>

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

std::string format_bytes(size_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes < 1024) return fmt::format("{} B", bytes);
  if (bytes < (size_t(1) << 20)) return fmt::format("{:.2f} KiB", b / 1024);
  if (bytes < (size_t(1) << 30)) return fmt::format("{:.2f} MiB", b / (1 << 20));
  if (bytes < (size_t(1) << 40)) return fmt::format("{:.2f} GiB", b / (1 << 30));
  return fmt::format("{:.2f} TiB", b / double(size_t(1) << 40));
}

std::string AllocatorStats::str() const {
  return fmt::format(
      "allocated {} in {} block(s) (peak {}), reserved {} (peak {}), {} allocation(s) of which "
      "{} from the cache, {} cudaMalloc and {} cudaFree call(s), {} out-of-memory result(s)",
      format_bytes(allocated_bytes), active_blocks, format_bytes(peak_allocated_bytes),
      format_bytes(reserved_bytes), format_bytes(peak_reserved_bytes), alloc_calls, cache_hits,
      cuda_malloc_calls, cuda_free_calls, ooms);
}

// ---------------------------------------------------------------------------------------
// The CUDA backend

namespace {

class CudaMemoryBackend : public DeviceMemoryBackend {
 public:
  ~CudaMemoryBackend() override {
    for (auto& [device, events] : event_pool_) {
      for (cudaEvent_t e : events) {
        if (cudaEventDestroy(e) != cudaSuccess) (void)cudaGetLastError();
      }
    }
  }

  int current_device() override { return cuda_current_device(); }

  void* malloc(int device, size_t bytes) override {
    DeviceGuard guard(device);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // not sticky: clear it so later checks do not see it
      return nullptr;
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      fail("cudaMalloc({}) on cuda:{} failed: {} ({})", format_bytes(bytes), device,
           cudaGetErrorString(e), cudaGetErrorName(e));
    }
    return p;
  }

  void free(int device, void* ptr) override {
    DeviceGuard guard(device);
    DP_CUDA_CHECK(cudaFree(ptr));
  }

  cudaEvent_t record_event(int device, cudaStream_t stream) override {
    DeviceGuard guard(device);
#if CUDART_VERSION >= 12080
    if (stream != nullptr) {
      int stream_device = -1;
      DP_CUDA_CHECK(cudaStreamGetDevice(stream, &stream_device));
      DP_CHECK(stream_device == device,
               "record_stream: the block lives on cuda:{} but the stream that used it is on "
               "cuda:{}; only streams of the block's device can be recorded",
               device, stream_device);
    }
#endif
    cudaEvent_t e = nullptr;
    auto& pool = event_pool_[device];
    if (!pool.empty()) {
      e = pool.back();
      pool.pop_back();
    } else {
      DP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    }
    cudaError_t r = cudaEventRecord(e, stream);
    if (r != cudaSuccess) {
      pool.push_back(e);
      cuda_fail("cudaEventRecord(guard of a cross-stream free)", r, __FILE__, __LINE__);
    }
    return e;
  }

  bool event_done(int device, cudaEvent_t event) override {
    DeviceGuard guard(device);
    return cuda_query_done(cudaEventQuery(event), "cudaEventQuery(guard of a cross-stream free)");
  }

  void event_synchronize(int device, cudaEvent_t event) override {
    DeviceGuard guard(device);
    DP_CUDA_CHECK(cudaEventSynchronize(event));
  }

  void release_event(int device, cudaEvent_t event) override {
    event_pool_[device].push_back(event);
  }

  std::string describe_memory(int device) override {
    try {
      DeviceGuard guard(device);
      size_t free_b = 0, total_b = 0;
      if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        (void)cudaGetLastError();
        return "";
      }
      return fmt::format("cuda:{} has {} free of {}", device, format_bytes(free_b),
                         format_bytes(total_b));
    } catch (const std::exception&) {
      return "";
    }
  }

 private:
  // Events are reused: creating one per cross-stream free would be a driver call in the
  // training step. Only touched under the allocator's lock.
  std::map<int, std::vector<cudaEvent_t>> event_pool_;
};

}  // namespace

std::unique_ptr<DeviceMemoryBackend> make_cuda_memory_backend() {
  return std::make_unique<CudaMemoryBackend>();
}

// ---------------------------------------------------------------------------------------
// Blocks and pools

struct CachingAllocator::Block {
  int device = 0;
  cudaStream_t stream = nullptr;  // the stream of the segment it was carved from
  size_t size = 0;
  size_t requested = 0;
  char* ptr = nullptr;
  bool small = false;
  bool allocated = false;
  int pending_events = 0;  // > 0: freed, waiting for other streams to finish with it
  Block* prev = nullptr;   // neighbours in the same cudaMalloc segment
  Block* next = nullptr;
  std::vector<cudaStream_t> stream_uses;  // streams other than `stream` (record_stream)

  // In its pool's free set exactly when this holds.
  bool in_pool() const { return !allocated && pending_events == 0; }
};

bool CachingAllocator::BlockLess::operator()(const Block* a, const Block* b) const {
  if (a->stream != b->stream) {
    return reinterpret_cast<uintptr_t>(a->stream) < reinterpret_cast<uintptr_t>(b->stream);
  }
  if (a->size != b->size) return a->size < b->size;
  return reinterpret_cast<uintptr_t>(a->ptr) < reinterpret_cast<uintptr_t>(b->ptr);
}

struct CachingAllocator::DeviceState {
  std::set<Block*, BlockLess> small_free;
  std::set<Block*, BlockLess> large_free;
  AllocatorStats stats;

  std::set<Block*, BlockLess>& pool(bool small) { return small ? small_free : large_free; }
};

size_t CachingAllocator::round_size(size_t bytes) {
  if (bytes <= kMinBlock) return kMinBlock;
  if (bytes <= kSmallSize) return (bytes + kMinBlock - 1) / kMinBlock * kMinBlock;
  return (bytes + kLargeGranularity - 1) / kLargeGranularity * kLargeGranularity;
}

CachingAllocator::CachingAllocator(std::unique_ptr<DeviceMemoryBackend> backend)
    : backend_(backend ? std::move(backend) : make_cuda_memory_backend()) {}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  try {
    process_events(/*wait=*/true, /*device=*/-1);
    for (auto& [device, ds] : devices_) release_cached(device);
  } catch (const std::exception& e) {
    try {
      log::warn("caching allocator shutdown: {}", e.what());
    } catch (...) {
    }
  }
  size_t live_bytes = 0;
  for (auto& [ptr, b] : live_) live_bytes += b->size;
  if (!live_.empty()) {
    try {
      log::warn(
          "caching allocator destroyed with {} live allocation(s) ({}); their memory is "
          "leaked because it may still be in use",
          live_.size(), format_bytes(live_bytes));
    } catch (...) {
    }
  }
  // Free the bookkeeping of everything still held: each segment's block list, reached from
  // any of its blocks by walking to the head.
  std::set<Block*> heads;
  auto add_head = [&](Block* b) {
    while (b->prev) b = b->prev;
    heads.insert(b);
  };
  for (auto& [ptr, b] : live_) add_head(b);
  for (auto& p : pending_) add_head(p.block);
  for (auto& [device, ds] : devices_) {
    for (Block* b : ds->small_free) add_head(b);
    for (Block* b : ds->large_free) add_head(b);
  }
  for (Block* h : heads) {
    while (h) {
      Block* n = h->next;
      delete h;
      h = n;
    }
  }
}

CachingAllocator::DeviceState& CachingAllocator::device_state(int device) {
  auto& ds = devices_[device];
  if (!ds) ds = std::make_unique<DeviceState>();
  return *ds;
}

CachingAllocator::Block* CachingAllocator::take_free_block(DeviceState& ds, bool small,
                                                           cudaStream_t stream, size_t size) {
  auto& pool = ds.pool(small);
  Block key;
  key.stream = stream;
  key.size = size;
  key.ptr = nullptr;
  auto it = pool.lower_bound(&key);
  if (it == pool.end() || (*it)->stream != stream) return nullptr;
  Block* b = *it;
  pool.erase(it);
  return b;
}

CachingAllocator::Block* CachingAllocator::new_segment(int device, DeviceState& ds, bool small,
                                                       cudaStream_t stream, size_t size,
                                                       size_t requested) {
  const size_t segment = small ? kSmallSegment : size;
  auto block = std::make_unique<Block>();  // before cudaMalloc: nothing to undo if this throws
  ++ds.stats.cuda_malloc_calls;
  void* p = backend_->malloc(device, segment);
  if (!p) {
    ++ds.stats.ooms;
    // Out of memory: wait for this device's pending cross-stream frees, give every wholly
    // free segment back to CUDA and try once more.
    process_events(/*wait=*/true, device);
    release_cached(device);
    ++ds.stats.cuda_malloc_calls;
    p = backend_->malloc(device, segment);
    if (!p) {
      ++ds.stats.ooms;
      throw Error(oom_message(device, requested, segment));
    }
  }
  block->device = device;
  block->stream = stream;
  block->size = segment;
  block->ptr = static_cast<char*>(p);
  block->small = small;
  ds.stats.reserved_bytes += segment;
  ds.stats.peak_reserved_bytes = std::max(ds.stats.peak_reserved_bytes, ds.stats.reserved_bytes);
  return block.release();
}

void CachingAllocator::split(DeviceState& ds, Block* block, size_t size) {
  if (block->size == size) return;
  // Sizes are multiples of the pool's granularity, so the remainder is a usable block.
  auto rest = std::make_unique<Block>();
  rest->device = block->device;
  rest->stream = block->stream;
  rest->size = block->size - size;
  rest->ptr = block->ptr + size;
  rest->small = block->small;
  rest->prev = block;
  rest->next = block->next;
  Block* r = rest.get();
  ds.pool(r->small).insert(r);  // may throw (bad_alloc) before the list is touched
  (void)rest.release();         // owned by the segment list from here on
  if (block->next) block->next->prev = r;
  block->next = r;
  block->size = size;
}

void* CachingAllocator::allocate(size_t bytes, cudaStream_t stream, int device) {
  if (bytes == 0) return nullptr;
  // Rounding must not overflow; nothing near this size exists anyway.
  DP_CHECK(bytes <= std::numeric_limits<size_t>::max() / 2,
           "device allocation of {} bytes requested: that is not a size (a negative number "
           "converted to size_t?)",
           bytes);
  if (device < 0) device = backend_->current_device();
  const size_t size = round_size(bytes);
  const bool small = size <= kSmallSize;

  std::lock_guard<std::mutex> lock(mu_);
  process_events(/*wait=*/false, /*device=*/-1);
  DeviceState& ds = device_state(device);
  Block* b = take_free_block(ds, small, stream, size);
  const bool hit = b != nullptr;
  if (!b) {
    b = new_segment(device, ds, small, stream, size, bytes);
  }
  try {
    split(ds, b, size);
    live_.emplace(b->ptr, b);
  } catch (...) {
    return_to_pool(b);  // b is not allocated: back where it came from
    throw;
  }
  b->allocated = true;
  b->requested = bytes;
  ds.stats.allocated_bytes += b->size;
  ds.stats.requested_bytes += bytes;
  ds.stats.peak_allocated_bytes = std::max(ds.stats.peak_allocated_bytes, ds.stats.allocated_bytes);
  ++ds.stats.active_blocks;
  ++ds.stats.alloc_calls;
  if (hit) ++ds.stats.cache_hits;
  return b->ptr;
}

void CachingAllocator::free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  DP_CHECK(it != live_.end(),
           "CachingAllocator::free({}): not a live allocation of this allocator (freed twice, "
           "an interior pointer, or memory from another allocator)",
           ptr);
  Block* b = it->second;
  live_.erase(it);
  DeviceState& ds = device_state(b->device);
  ds.stats.allocated_bytes -= b->size;
  ds.stats.requested_bytes -= b->requested;
  --ds.stats.active_blocks;
  b->allocated = false;
  b->requested = 0;
  if (b->stream_uses.empty()) {
    return_to_pool(b);
    return;
  }
  // Used on other streams: reusable only after each of them has passed this point.
  std::vector<cudaStream_t> uses;
  uses.swap(b->stream_uses);
  // A hold of its own until every event is recorded: if recording fails part way, the hold
  // is never released and the block is leaked, rather than handed out while a stream whose
  // use went unguarded may still read it.
  ++b->pending_events;
  for (cudaStream_t s : uses) {
    cudaEvent_t e = backend_->record_event(b->device, s);
    try {
      pending_.push_back({e, b});
    } catch (...) {
      backend_->release_event(b->device, e);
      throw;
    }
    ++b->pending_events;
  }
  --b->pending_events;  // all recorded; the events alone hold it now
}

void CachingAllocator::record_stream(void* ptr, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  DP_CHECK(it != live_.end(),
           "CachingAllocator::record_stream({}): not a live allocation of this allocator", ptr);
  Block* b = it->second;
  if (stream == b->stream) return;
  if (std::find(b->stream_uses.begin(), b->stream_uses.end(), stream) == b->stream_uses.end()) {
    b->stream_uses.push_back(stream);
  }
}

void CachingAllocator::return_to_pool(Block* b) {
  DeviceState& ds = device_state(b->device);
  auto& pool = ds.pool(b->small);
  // Merge with free neighbours of the same segment (same stream and pool by construction).
  if (b->prev && b->prev->in_pool()) {
    Block* p = b->prev;
    pool.erase(p);  // before its size changes: the set is ordered by size
    p->size += b->size;
    p->next = b->next;
    if (b->next) b->next->prev = p;
    delete b;
    b = p;
  }
  if (b->next && b->next->in_pool()) {
    Block* n = b->next;
    pool.erase(n);
    b->size += n->size;
    b->next = n->next;
    if (n->next) n->next->prev = b;
    delete n;
  }
  pool.insert(b);
}

void CachingAllocator::process_events(bool wait, int device) {
  // Swap-remove: a completed entry is replaced by the last one and the same index looked
  // at again. Each entry is removed only after its block is handled, so an exception from
  // the backend leaves the list consistent.
  for (size_t i = 0; i < pending_.size();) {
    PendingFree& p = pending_[i];
    if (device >= 0 && p.block->device != device) {
      ++i;
      continue;
    }
    if (wait) {
      backend_->event_synchronize(p.block->device, p.event);
    } else if (!backend_->event_done(p.block->device, p.event)) {
      ++i;
      continue;
    }
    Block* b = p.block;
    backend_->release_event(b->device, p.event);
    p = pending_.back();
    pending_.pop_back();
    if (--b->pending_events == 0) return_to_pool(b);
  }
}

void CachingAllocator::release_cached(int device) {
  auto dit = devices_.find(device);
  if (dit == devices_.end()) return;
  DeviceState& ds = *dit->second;
  for (bool small : {true, false}) {
    auto& pool = ds.pool(small);
    for (auto it = pool.begin(); it != pool.end();) {
      Block* b = *it;
      if (b->prev || b->next) {  // part of a segment something else still uses
        ++it;
        continue;
      }
      it = pool.erase(it);  // out of the books first: never freed twice
      ds.stats.reserved_bytes -= b->size;
      ++ds.stats.cuda_free_calls;
      std::unique_ptr<Block> owned(b);
      backend_->free(device, b->ptr);
    }
  }
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  process_events(/*wait=*/true, /*device=*/-1);
  for (auto& [device, ds] : devices_) release_cached(device);
}

std::string CachingAllocator::oom_message(int device, size_t requested, size_t segment) {
  std::string memory = backend_->describe_memory(device);
  return fmt::format(
      "CUDA out of memory on cuda:{}: cannot allocate {} ({} bytes; a {} segment) even after "
      "returning the allocator's cache to the device. Allocator on cuda:{}: {}.{}{} Reduce "
      "the batch size or the model, or run fewer processes on this GPU.",
      device, format_bytes(requested), requested, format_bytes(segment), device,
      device_state(device).stats.str(), memory.empty() ? "" : " ",
      memory.empty() ? "" : memory + ".");
}

AllocatorStats CachingAllocator::stats(int device) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = devices_.find(device);
  return it == devices_.end() ? AllocatorStats{} : it->second->stats;
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  AllocatorStats sum;
  for (auto& [device, ds] : devices_) {
    const AllocatorStats& s = ds->stats;
    sum.allocated_bytes += s.allocated_bytes;
    sum.requested_bytes += s.requested_bytes;
    sum.reserved_bytes += s.reserved_bytes;
    sum.peak_allocated_bytes += s.peak_allocated_bytes;
    sum.peak_reserved_bytes += s.peak_reserved_bytes;
    sum.active_blocks += s.active_blocks;
    sum.alloc_calls += s.alloc_calls;
    sum.cache_hits += s.cache_hits;
    sum.cuda_malloc_calls += s.cuda_malloc_calls;
    sum.cuda_free_calls += s.cuda_free_calls;
    sum.ooms += s.ooms;
  }
  return sum;
}

void CachingAllocator::reset_peak_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [device, ds] : devices_) {
    ds->stats.peak_allocated_bytes = ds->stats.allocated_bytes;
    ds->stats.peak_reserved_bytes = ds->stats.reserved_bytes;
  }
}

size_t CachingAllocator::block_size(void* ptr) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(ptr);
  DP_CHECK(it != live_.end(), "block_size({}): not a live allocation of this allocator", ptr);
  return it->second->size;
}

CachingAllocator& default_cuda_allocator() {
  static CachingAllocator* allocator = new CachingAllocator();
  return *allocator;
}

// ---------------------------------------------------------------------------------------
// DeviceBuffer

DeviceBuffer::DeviceBuffer(size_t bytes, cudaStream_t stream, int device,
                           CachingAllocator& allocator)
    : allocator_(&allocator), size_(bytes), stream_(stream) {
  device_ = device < 0 ? allocator.current_device() : device;
  ptr_ = allocator.allocate(bytes, stream, device_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    DeviceBuffer tmp(std::move(o));
    swap(tmp);
  }
  return *this;
}

void DeviceBuffer::swap(DeviceBuffer& o) noexcept {
  std::swap(allocator_, o.allocator_);
  std::swap(ptr_, o.ptr_);
  std::swap(size_, o.size_);
  std::swap(device_, o.device_);
  std::swap(stream_, o.stream_);
}

void DeviceBuffer::record_stream(cudaStream_t stream) {
  DP_CHECK(ptr_, "record_stream on an empty DeviceBuffer");
  allocator_->record_stream(ptr_, stream);
}

void DeviceBuffer::reset() noexcept {
  if (!ptr_) return;
  void* p = ptr_;
  ptr_ = nullptr;
  size_ = 0;
  try {
    allocator_->free(p);
  } catch (const std::exception& e) {
    try {
      log::warn("freeing a device buffer on cuda:{}: {}", device_, e.what());
    } catch (...) {
    }
  }
}

}  // namespace dp
