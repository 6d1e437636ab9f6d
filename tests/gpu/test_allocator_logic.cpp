// The caching allocator's bookkeeping (rounding, binning, best fit, splitting and merging,
// stream rules, the OOM retry, thread safety) against a fake device: these tests need no
// GPU and run everywhere the CUDA toolkit is. test_cuda_runtime.cpp repeats the essentials
// on a real device.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "runtime/core/cuda/allocator.h"
#include "runtime/core/error.h"

namespace {

using dp::CachingAllocator;

constexpr size_t KiB = 1024, MiB = 1024 * 1024;

cudaStream_t stream_id(uintptr_t i) {
  // NOLINTNEXTLINE(performance-no-int-to-ptr): a fake stream handle, never dereferenced
  return reinterpret_cast<cudaStream_t>(i);
}
const cudaStream_t S1 = stream_id(0x100), S2 = stream_id(0x200);

// A device with a capacity, fake addresses (never dereferenced) and events that complete
// only when the test says their stream has finished.
struct FakeDevice {
  std::mutex mu;
  size_t capacity = size_t(1) << 40;
  size_t used = 0;
  uintptr_t next_addr = 0x10000000;
  std::map<uintptr_t, size_t> live;  // address -> bytes
  int bad_frees = 0;
  uintptr_t next_event = 1;
  struct Event {
    cudaStream_t stream;
    bool done;
  };
  std::map<uintptr_t, Event> events;
  size_t events_released = 0;

  void finish_stream(cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [id, e] : events) {
      if (e.stream == s) e.done = true;
    }
  }
};

class FakeBackend : public dp::DeviceMemoryBackend {
 public:
  explicit FakeBackend(std::shared_ptr<FakeDevice> dev) : dev_(std::move(dev)) {}
  int current_device() override { return 0; }
  void* malloc(int, size_t bytes) override {
    std::lock_guard<std::mutex> lock(dev_->mu);
    if (dev_->used + bytes > dev_->capacity) return nullptr;
    uintptr_t a = dev_->next_addr;
    dev_->next_addr += bytes + 4096;  // a gap: segments are never adjacent
    dev_->live[a] = bytes;
    dev_->used += bytes;
    return reinterpret_cast<void*>(a);  // NOLINT(performance-no-int-to-ptr): fake address
  }
  void free(int, void* p) override {
    std::lock_guard<std::mutex> lock(dev_->mu);
    auto it = dev_->live.find(reinterpret_cast<uintptr_t>(p));
    if (it == dev_->live.end()) {
      ++dev_->bad_frees;
      return;
    }
    dev_->used -= it->second;
    dev_->live.erase(it);
  }
  cudaEvent_t record_event(int, cudaStream_t s) override {
    std::lock_guard<std::mutex> lock(dev_->mu);
    uintptr_t id = dev_->next_event++;
    dev_->events[id] = {s, false};
    return reinterpret_cast<cudaEvent_t>(id);  // NOLINT(performance-no-int-to-ptr): fake handle
  }
  bool event_done(int, cudaEvent_t e) override {
    std::lock_guard<std::mutex> lock(dev_->mu);
    return dev_->events.at(reinterpret_cast<uintptr_t>(e)).done;
  }
  void event_synchronize(int, cudaEvent_t e) override {
    std::lock_guard<std::mutex> lock(dev_->mu);
    dev_->events.at(reinterpret_cast<uintptr_t>(e)).done = true;  // "waited for it"
  }
  void release_event(int, cudaEvent_t e) override {
    std::lock_guard<std::mutex> lock(dev_->mu);
    dev_->events.erase(reinterpret_cast<uintptr_t>(e));
    ++dev_->events_released;
  }
  std::string describe_memory(int device) override {
    std::lock_guard<std::mutex> lock(dev_->mu);
    return "fake:" + std::to_string(device) + " has " +
           dp::format_bytes(dev_->capacity - dev_->used) + " free";
  }

 private:
  std::shared_ptr<FakeDevice> dev_;
};

struct Fixture : ::testing::Test {
  std::shared_ptr<FakeDevice> dev = std::make_shared<FakeDevice>();
  std::unique_ptr<CachingAllocator> alloc =
      std::make_unique<CachingAllocator>(std::make_unique<FakeBackend>(dev));
};

using AllocatorLogic = Fixture;

// CachingAllocator::free is not free(3), but clang-analyzer (LLVM 14's unix.Malloc) takes every
// one-argument call named free for it: to the analyzer a block given back stays dangling even
// after allocate() hands its address out again, and comparing that address with a new block
// (EXPECT_EQ prints both on failure) is a use after free. Hence the few suppressions of that
// check below: the fake addresses are only compared, never dereferenced.

TEST(AllocatorRounding, SmallTo512BytesLargeTo2MiB) {
  EXPECT_EQ(CachingAllocator::round_size(1), 512u);
  EXPECT_EQ(CachingAllocator::round_size(512), 512u);
  EXPECT_EQ(CachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CachingAllocator::round_size(1000 * 1000), 1000448u);  // 1954 * 512
  EXPECT_EQ(CachingAllocator::round_size(MiB), MiB);
  EXPECT_EQ(CachingAllocator::round_size(MiB + 1), 2 * MiB);
  EXPECT_EQ(CachingAllocator::round_size(2 * MiB + 1), 4 * MiB);
  EXPECT_EQ(CachingAllocator::round_size(5 * MiB), 6 * MiB);
}

TEST_F(AllocatorLogic, ZeroBytesAndNull) {
  EXPECT_EQ(alloc->allocate(0, S1), nullptr);
  alloc->free(nullptr);
  EXPECT_EQ(alloc->stats().alloc_calls, 0u);
  EXPECT_EQ(alloc->stats().cuda_malloc_calls, 0u);
}

TEST_F(AllocatorLogic, SmallRequestsShareOneSegment) {
  std::vector<char*> ptrs;
  ptrs.reserve(100);
  for (int i = 0; i < 100; ++i) ptrs.push_back(static_cast<char*>(alloc->allocate(1000, S1)));
  auto s = alloc->stats();
  EXPECT_EQ(s.cuda_malloc_calls, 1u);
  EXPECT_EQ(s.reserved_bytes, CachingAllocator::kSmallSegment);
  EXPECT_EQ(s.allocated_bytes, 100 * 1024u);
  EXPECT_EQ(s.requested_bytes, 100 * 1000u);
  EXPECT_EQ(s.active_blocks, 100u);
  std::sort(ptrs.begin(), ptrs.end());
  for (size_t i = 1; i < ptrs.size(); ++i) EXPECT_GE(ptrs[i] - ptrs[i - 1], 1024);
  for (char* p : ptrs) EXPECT_EQ(alloc->block_size(p), 1024u);
  for (char* p : ptrs) alloc->free(p);
  EXPECT_EQ(alloc->stats().allocated_bytes, 0u);
  EXPECT_EQ(alloc->stats().requested_bytes, 0u);
  // Every piece merged back: the segment is whole again and can be returned.
  alloc->empty_cache();
  EXPECT_EQ(alloc->stats().reserved_bytes, 0u);
  EXPECT_EQ(alloc->stats().cuda_free_calls, 1u);
  EXPECT_TRUE(dev->live.empty());
}

// The point: after the first step, a training step makes no cudaMalloc call.
TEST_F(AllocatorLogic, SteadyStateStepsMakeNoCudaMalloc) {
  const std::vector<size_t> sizes = {4 * KiB, 3 * MiB, 600 * KiB, 10 * MiB, 512, 7 * MiB, 100};
  std::mt19937 rng(7);
  auto step = [&] {
    std::vector<void*> live;
    live.reserve(sizes.size());
    for (size_t s : sizes) live.push_back(alloc->allocate(s, S1));
    std::shuffle(live.begin(), live.end(), rng);
    for (void* p : live) alloc->free(p);
  };
  step();
  const auto warm = alloc->stats();
  for (int i = 0; i < 20; ++i) step();
  const auto s = alloc->stats();
  EXPECT_EQ(s.cuda_malloc_calls, warm.cuda_malloc_calls) << s.str();
  EXPECT_EQ(s.cache_hits - warm.cache_hits, 20 * sizes.size()) << s.str();
  EXPECT_EQ(s.reserved_bytes, warm.reserved_bytes);
  EXPECT_EQ(s.allocated_bytes, 0u);
}

TEST_F(AllocatorLogic, BestFitPrefersTheSmallestBlockThatFits) {
  void* a = alloc->allocate(4 * MiB, S1);
  void* b = alloc->allocate(8 * MiB, S1);
  alloc->free(a);
  alloc->free(b);
  void* a2 = alloc->allocate(4 * MiB, S1);
  EXPECT_EQ(a2, a);                        // not a split of the 8 MiB block
  void* c = alloc->allocate(6 * MiB, S1);  // the 8 MiB block, split 6 + 2
  EXPECT_EQ(c, b);
  EXPECT_EQ(alloc->block_size(c), 6 * MiB);
  void* d = alloc->allocate(2 * MiB, S1);  // the 2 MiB remainder
  EXPECT_EQ(static_cast<char*>(d), static_cast<char*>(b) + 6 * MiB);
  EXPECT_EQ(alloc->stats().cuda_malloc_calls, 2u);
  for (void* p : {a2, c, d}) alloc->free(p);
}

TEST_F(AllocatorLogic, SplitBlocksMergeAndOnlyWholeSegmentsAreReleased) {
  void* seg = alloc->allocate(8 * MiB, S1);
  alloc->free(seg);
  void* a = alloc->allocate(2 * MiB, S1);
  void* b = alloc->allocate(2 * MiB, S1);
  EXPECT_EQ(a, seg);
  EXPECT_EQ(static_cast<char*>(b), static_cast<char*>(seg) + 2 * MiB);
  alloc->free(a);
  alloc->empty_cache();  // b still lives in the segment: nothing can be released
  EXPECT_EQ(alloc->stats().cuda_free_calls, 0u);
  EXPECT_EQ(alloc->stats().reserved_bytes, 8 * MiB);
  alloc->free(b);
  void* whole = alloc->allocate(8 * MiB, S1);
  EXPECT_EQ(whole, seg);  // merged back into one 8 MiB block
  alloc->free(whole);
  alloc->empty_cache();
  EXPECT_EQ(alloc->stats().cuda_free_calls, 1u);
  EXPECT_EQ(alloc->stats().reserved_bytes, 0u);
  EXPECT_EQ(dev->bad_frees, 0);
}

TEST_F(AllocatorLogic, BlocksAreNotSharedAcrossStreams) {
  void* a = alloc->allocate(4 * MiB, S1);
  alloc->free(a);
  void* b = alloc->allocate(4 * MiB, S2);
  EXPECT_NE(a, b);
  EXPECT_EQ(alloc->stats().cuda_malloc_calls, 2u);
  void* a2 = alloc->allocate(4 * MiB, S1);
  EXPECT_EQ(a2, a);  // S1's own block, at once
  alloc->free(a2);
  alloc->free(b);
}

TEST_F(AllocatorLogic, RecordStreamDefersReuseUntilTheOtherStreamIsDone) {
  void* p = alloc->allocate(4 * MiB, S1);
  alloc->record_stream(p, S2);
  alloc->free(p);
  void* q = alloc->allocate(4 * MiB, S1);  // S2 may still read p: not handed out
  EXPECT_NE(q, p);
  EXPECT_EQ(alloc->stats().cuda_malloc_calls, 2u);
  alloc->free(q);
  dev->finish_stream(S2);
  const auto before = alloc->stats().cuda_malloc_calls;
  void* r = alloc->allocate(4 * MiB, S1);
  EXPECT_EQ(r, p);  // both free now; the lower address wins the tie
  EXPECT_EQ(alloc->stats().cuda_malloc_calls, before);
  EXPECT_TRUE(dev->events.empty());
  EXPECT_EQ(dev->events_released, 1u);
  alloc->free(r);
}

TEST_F(AllocatorLogic, RecordingTheAllocationStreamIsANoOp) {
  void* p = alloc->allocate(4 * MiB, S1);
  alloc->record_stream(p, S1);
  // To the analyzer, every EXPECT_EQ/NE here that compares a new block with a freed one is the
  // same use after free, reported once, inside gtest-printers.h (out of a suppression comment's
  // reach), along the shortest such path: this test's. Suppressing it on that path's first line
  // in this file (this free) drops it.
  alloc->free(p);  // NOLINT(clang-analyzer-unix.Malloc): see above and at the top of the file
  void* q = alloc->allocate(4 * MiB, S1);
  EXPECT_EQ(q, p);
  EXPECT_EQ(dev->next_event, 1u);  // no event was recorded
  alloc->free(q);
}

TEST_F(AllocatorLogic, PendingBlockDoesNotMergeUntilReleased) {
  void* seg = alloc->allocate(8 * MiB, S1);
  alloc->free(seg);
  void* a = alloc->allocate(4 * MiB, S1);
  void* b = alloc->allocate(4 * MiB, S1);
  alloc->record_stream(b, S2);
  alloc->free(b);  // pending on S2
  alloc->free(a);  // must not swallow b while S2 may still read it
  void* c = alloc->allocate(8 * MiB, S1);
  EXPECT_NE(c, seg);
  alloc->free(c);
  dev->finish_stream(S2);
  alloc->free(alloc->allocate(512, S1));  // any call processes finished events
  void* merged = alloc->allocate(8 * MiB, S1);
  EXPECT_EQ(merged, seg);  // a and b merged back
  alloc->free(merged);
}

TEST_F(AllocatorLogic, OutOfMemoryFreesTheCacheAndRetries) {
  dev->capacity = 10 * MiB;
  void* p = alloc->allocate(6 * MiB, S1);
  alloc->free(p);  // cached: 6 of the 10 MiB held
  void* q = alloc->allocate(8 * MiB, S1);
  EXPECT_NE(q, nullptr);
  const auto s = alloc->stats();
  EXPECT_EQ(s.ooms, 1u);
  EXPECT_EQ(s.cuda_free_calls, 1u);
  EXPECT_EQ(s.cuda_malloc_calls, 3u);
  EXPECT_EQ(s.reserved_bytes, 8 * MiB);
  alloc->free(q);
}

TEST_F(AllocatorLogic, OutOfMemoryWaitsForPendingCrossStreamFrees) {
  dev->capacity = 10 * MiB;
  void* p = alloc->allocate(6 * MiB, S1);
  alloc->record_stream(p, S2);
  alloc->free(p);  // pending on S2: only reclaimable after waiting for it
  void* q = alloc->allocate(8 * MiB, S1);
  EXPECT_NE(q, nullptr);
  EXPECT_EQ(alloc->stats().ooms, 1u);
  EXPECT_TRUE(dev->events.empty());
  alloc->free(q);
}

TEST_F(AllocatorLogic, OutOfMemoryAfterRetryIsAnActionableError) {
  dev->capacity = 10 * MiB;
  // The analyzer follows no exception: to it the try always ends in FAIL()'s return.
  // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): freed after the catch
  void* keep = alloc->allocate(3 * MiB, S1);
  alloc->free(alloc->allocate(5 * MiB, S1));  // cached, will be given back
  const size_t absurd = size_t(1) << 50;
  try {
    alloc->allocate(absurd, S1);
    FAIL() << "an allocation of 1 PiB succeeded";
  } catch (const dp::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("out of memory"), std::string::npos) << m;
    EXPECT_NE(m.find("cuda:0"), std::string::npos) << m;
    EXPECT_NE(m.find(std::to_string(absurd)), std::string::npos) << m;
    EXPECT_NE(m.find("1024.00 TiB"), std::string::npos) << m;
    EXPECT_NE(m.find("reserved"), std::string::npos) << m;    // the stats
    EXPECT_NE(m.find("fake:0 has"), std::string::npos) << m;  // the device's memory
  }
  const auto s = alloc->stats();
  EXPECT_EQ(s.ooms, 2u);
  EXPECT_EQ(s.reserved_bytes, 4 * MiB);  // the cached 6 MiB went back; `keep` stayed
  EXPECT_EQ(s.allocated_bytes, 4 * MiB);
  alloc->free(keep);
}

TEST_F(AllocatorLogic, MisuseIsAnError) {
  void* p = alloc->allocate(100, S1);
  EXPECT_THROW(alloc->free(static_cast<char*>(p) + 16), dp::Error);  // interior pointer
  // NOLINTBEGIN(clang-analyzer-unix.Malloc): the interior free threw; then misuse on purpose
  alloc->free(p);
  EXPECT_THROW(alloc->free(p), dp::Error);  // double free
  EXPECT_THROW(alloc->record_stream(p, S2), dp::Error);
  EXPECT_THROW(alloc->block_size(p), dp::Error);
  // NOLINTEND(clang-analyzer-unix.Malloc)
  EXPECT_THROW(alloc->allocate(static_cast<size_t>(-1), S1), dp::Error);
}

TEST_F(AllocatorLogic, PeaksAndDevices) {
  void* a = alloc->allocate(3 * MiB, S1);
  void* b = alloc->allocate(3 * MiB, S1, /*device=*/1);
  EXPECT_EQ(alloc->stats(0).allocated_bytes, 4 * MiB);
  EXPECT_EQ(alloc->stats(1).allocated_bytes, 4 * MiB);
  EXPECT_EQ(alloc->stats().allocated_bytes, 8 * MiB);
  alloc->free(a);
  EXPECT_EQ(alloc->stats(0).peak_allocated_bytes, 4 * MiB);
  alloc->reset_peak_stats();
  EXPECT_EQ(alloc->stats(0).peak_allocated_bytes, 0u);
  // A block of device 1 is never handed out on device 0.
  alloc->free(b);
  void* c = alloc->allocate(3 * MiB, S1, 0);
  EXPECT_EQ(c, a);
  alloc->free(c);
}

TEST_F(AllocatorLogic, DeviceBufferFreesOnScopeExit) {
  {
    dp::DeviceBuffer buf(5000, S1, 0, *alloc);
    EXPECT_NE(buf.data(), nullptr);
    EXPECT_EQ(buf.size(), 5000u);
    dp::DeviceBuffer moved = std::move(buf);
    // NOLINTNEXTLINE(bugprone-use-after-move,clang-analyzer-cplusplus.Move): the moved-from state
    EXPECT_EQ(buf.data(), nullptr);
    EXPECT_EQ(alloc->stats().active_blocks, 1u);
  }
  EXPECT_EQ(alloc->stats().active_blocks, 0u);
}

TEST_F(AllocatorLogic, DestructionReturnsEverySegment) {
  std::vector<void*> ptrs;
  for (size_t s : {100 * KiB, 3 * MiB, 17 * MiB}) ptrs.push_back(alloc->allocate(s, S1));
  for (void* p : ptrs) alloc->free(p);
  void* p = alloc->allocate(5 * MiB, S1);
  alloc->record_stream(p, S2);
  alloc->free(p);  // still pending at destruction: waited for, then released
  alloc.reset();
  EXPECT_TRUE(dev->live.empty());
  EXPECT_EQ(dev->used, 0u);
  EXPECT_EQ(dev->bad_frees, 0);
}

// Many threads allocating and freeing at once: no two live allocations may overlap, and the
// books balance at the end.
TEST_F(AllocatorLogic, ConcurrentUseKeepsAllocationsDisjoint) {
  std::mutex ranges_mu;
  std::map<uintptr_t, size_t> ranges;  // live allocation -> bytes
  std::atomic<int> overlaps{0};
  auto worker = [&](int t) {
    std::mt19937 rng(1000 + t);
    std::uniform_int_distribution<int> kind(0, 9);
    std::uniform_int_distribution<size_t> small(1, 300 * KiB), large(MiB + 1, 9 * MiB);
    const cudaStream_t s = stream_id(0x1000 + 0x10 * uintptr_t(t % 3));  // 3 streams shared
    std::vector<std::pair<void*, size_t>> held;
    for (int i = 0; i < 3000; ++i) {
      if (held.size() > 20 || (!held.empty() && kind(rng) < 4)) {
        size_t k = rng() % held.size();
        {
          std::lock_guard<std::mutex> lock(ranges_mu);
          ranges.erase(reinterpret_cast<uintptr_t>(held[k].first));
        }
        alloc->free(held[k].first);
        held.erase(held.begin() + static_cast<long>(k));
      } else {
        size_t n = kind(rng) == 0 ? large(rng) : small(rng);
        void* p = alloc->allocate(n, s);
        auto a = reinterpret_cast<uintptr_t>(p);
        std::lock_guard<std::mutex> lock(ranges_mu);
        auto next = ranges.lower_bound(a);
        if (next != ranges.end() && next->first < a + n) ++overlaps;
        if (next != ranges.begin() && std::prev(next)->first + std::prev(next)->second > a) {
          ++overlaps;
        }
        ranges[a] = n;
        held.emplace_back(p, n);
      }
    }
    for (auto& [p, n] : held) {
      {
        std::lock_guard<std::mutex> lock(ranges_mu);
        ranges.erase(reinterpret_cast<uintptr_t>(p));
      }
      alloc->free(p);
    }
  };
  std::vector<std::thread> threads;
  threads.reserve(8);
  for (int t = 0; t < 8; ++t) threads.emplace_back(worker, t);
  for (auto& th : threads) th.join();
  EXPECT_EQ(overlaps.load(), 0);
  const auto s = alloc->stats();
  EXPECT_EQ(s.allocated_bytes, 0u);
  EXPECT_EQ(s.active_blocks, 0u);
  EXPECT_EQ(s.reserved_bytes, dev->used);
  alloc->empty_cache();
  EXPECT_EQ(alloc->stats().reserved_bytes, 0u);
  EXPECT_TRUE(dev->live.empty());
  EXPECT_EQ(dev->bad_frees, 0);
}

}  // namespace
