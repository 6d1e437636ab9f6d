#include "runtime/comm/shm_allreduce.h"

#include <sched.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <ctime>
#include <exception>
#include <new>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "runtime/core/error.h"
#include "runtime/core/half_float.h"

namespace dp {

namespace {

constexpr size_t kLine = 64;

// The control block lives in memory several processes map, so its atomics must work by
// address alone, without any per-process lock: only lock-free atomics are address-free.
static_assert(std::atomic<uint64_t>::is_always_lock_free, "64-bit atomics must be lock-free");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "32-bit atomics must be lock-free");
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "futex word must be 32 bits");

std::string mpi_error_text(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return fmt::format("{} (MPI error code {})", std::string(text, size_t(len)), rc);
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Sleeps while *word == expected, at most `timeout`. Spurious returns are fine: the caller
// re-checks. The futex is not FUTEX_PRIVATE: the word is shared between processes.
void sleep_while_equal(std::atomic<uint32_t>& word, uint32_t expected,
                       std::chrono::nanoseconds timeout) {
#if defined(__linux__)
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000000000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1000000000);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);
#else
  (void)word;
  (void)expected;
  std::this_thread::sleep_for(std::min(timeout, std::chrono::nanoseconds(50000)));
#endif
}

void wake_all(std::atomic<uint32_t>& word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

MPI_Info noncontig_info() {
  // Each rank's segment on pages of its own (first touched by that rank, hence on its NUMA
  // node) instead of one contiguous block that rank 0's pages would mostly hold.
  MPI_Info info;
  MPI_Info_create(&info);
  MPI_Info_set(info, "alloc_shared_noncontig", "true");
  return info;
}

// out[i] = (((b_0[i] + b_1[i]) + b_2[i]) + ...) [* scale], written into every b_q: a fixed
// order, so every rank's copy and every run get the same bits. Blocks of an L1-sized
// accumulator keep the traffic at one read and one write of each b_q's slice.
void reduce_slice(float* const* b, int n, size_t begin, size_t end, bool average) {
  const float scale = 1.0f / static_cast<float>(n);
  if (n == 2) {  // the common node: one pass, no accumulator
    float* __restrict x = b[0];
    float* __restrict y = b[1];
    if (average) {
      for (size_t j = begin; j < end; ++j) x[j] = y[j] = (x[j] + y[j]) * scale;
    } else {
      for (size_t j = begin; j < end; ++j) x[j] = y[j] = x[j] + y[j];
    }
    return;
  }
  constexpr size_t kBlock = 1024;
  alignas(kLine) float acc[kBlock];
  for (size_t lo = begin; lo < end; lo += kBlock) {
    const size_t m = std::min(kBlock, end - lo);
    {
      const float* __restrict x = b[0] + lo;
      const float* __restrict y = b[1] + lo;
      for (size_t j = 0; j < m; ++j) acc[j] = x[j] + y[j];
    }
    for (int q = 2; q < n; ++q) {
      const float* __restrict x = b[q] + lo;
      for (size_t j = 0; j < m; ++j) acc[j] += x[j];
    }
    if (average) {
      for (size_t j = 0; j < m; ++j) acc[j] *= scale;
    }
    for (int q = 0; q < n; ++q) std::memcpy(b[q] + lo, acc, m * sizeof(float));
  }
}

// The 16-bit twin of reduce_slice (H: bf16 or f16): widened (exactly), summed in float32 in
// the same fixed order, scaled, and rounded once to nearest even. One rounding, not one per
// rank, keeps the result the float32 reduction of the 16-bit inputs (the order stays fixed,
// so the bits are still the same on every rank).
template <typename H>
void reduce_slice_half(H* const* b, int n, size_t begin, size_t end, bool average) {
  const float scale = 1.0f / static_cast<float>(n);
  constexpr size_t kBlock = 1024;
  alignas(kLine) float acc[kBlock];
  alignas(kLine) H out[kBlock];
  for (size_t lo = begin; lo < end; lo += kBlock) {
    const size_t m = std::min(kBlock, end - lo);
    {
      const H* __restrict x = b[0] + lo;
      const H* __restrict y = b[1] + lo;
      for (size_t j = 0; j < m; ++j) acc[j] = widen(x[j]) + widen(y[j]);
    }
    for (int q = 2; q < n; ++q) {
      const H* __restrict x = b[q] + lo;
      for (size_t j = 0; j < m; ++j) acc[j] += widen(x[j]);
    }
    if (average) {
      for (size_t j = 0; j < m; ++j) acc[j] *= scale;
    }
    for (size_t j = 0; j < m; ++j) out[j] = narrow<H>(acc[j]);
    for (int q = 0; q < n; ++q) std::memcpy(b[q] + lo, out, m * sizeof(H));
  }
}

void reduce_slice_of(float* const* b, int n, size_t begin, size_t end, bool average) {
  reduce_slice(b, n, begin, end, average);
}
template <typename H>
void reduce_slice_of(H* const* b, int n, size_t begin, size_t end, bool average) {
  reduce_slice_half(b, n, begin, end, average);
}

// Points `ptrs` at every rank's view of the tensor at `offset` in `buf` (one vector per
// element type: no pointer punning) and reduces slice [begin, end) of it.
template <typename T>
void reduce_views(std::vector<T*>& ptrs, const ShmBuffer& buf, size_t offset, int n, size_t begin,
                  size_t end, bool average) {
  ptrs.resize(size_t(n));
  for (int q = 0; q < n; ++q) ptrs[size_t(q)] = reinterpret_cast<T*>(buf.data[size_t(q)] + offset);
  reduce_slice_of(ptrs.data(), n, begin, end, average);
}

}  // namespace

// In rank 0's segment of the control window, one cache line.
struct ShmAllreduce::Control {
  // generation << 32 | ranks arrived at the current barrier. One word, changed by CAS only,
  // so that "the last rank arrives: reset the count, next generation" and "a timed-out rank
  // withdraws" are each atomic and can never both succeed.
  std::atomic<uint64_t> state{0};
  std::atomic<uint32_t> wake{0};      // the generation's low bits, for futex sleepers
  std::atomic<uint32_t> sleepers{0};  // ranks in (or about to enter) a futex wait
};

// One per rank, on its own cache line, written only by that rank. What the rank is doing
// (`progress` = seq * 4 + phase: 1 at barrier 1, 2 at barrier 2, 3 done, 0 timed out) names
// the ranks a timeout waited for; the rest describes its all-reduce, compared between the barriers.
// Atomics (relaxed) so that even a rank that timed out and moved on races with nobody.
struct ShmAllreduce::Slot {
  std::atomic<uint64_t> progress{0};
  std::atomic<uint64_t> buffer{0};
  std::atomic<uint64_t> offset{0};
  std::atomic<uint64_t> numel{0};
  std::atomic<uint64_t> average{0};
  std::atomic<uint64_t> dtype{0};  // DType's code
};

ShmAllreduce::ShmAllreduce(MPI_Comm node, int rank, int size, std::chrono::milliseconds timeout)
    : node_(node), rank_(rank), size_(size), timeout_(timeout) {
  static_assert(sizeof(Control) <= kLine, "the control block is one cache line");
  static_assert(sizeof(Slot) <= kLine, "a slot is one cache line");
}

std::unique_ptr<ShmAllreduce> ShmAllreduce::create(MPI_Comm comm, bool wanted,
                                                   std::chrono::milliseconds timeout) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (size == 1) return nullptr;
  MPI_Comm node = MPI_COMM_NULL;
  int rc = MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  DP_CHECK(rc == MPI_SUCCESS, "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) failed: {}",
           mpi_error_text(rc));
  int node_size = 0, node_rank = -1;
  MPI_Comm_size(node, &node_size);
  MPI_Comm_rank(node, &node_rank);
  // Agreed by every rank: one rank alone on the shared path would wait for the others forever.
  int ok = wanted && node_size == size && node_rank == rank ? 1 : 0, all_ok = 0;
  rc = MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
  DP_CHECK(rc == MPI_SUCCESS, "agreeing on shared-memory collectives failed: {}",
           mpi_error_text(rc));
  if (!all_ok) {
    MPI_Comm_free(&node);
    return nullptr;
  }
  MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN);
  std::unique_ptr<ShmAllreduce> shm(new ShmAllreduce(node, rank, size, timeout));

  MPI_Info info = noncontig_info();
  char* mine = nullptr;
  const size_t bytes = rank == 0 ? kLine * size_t(1 + size) : 0;
  rc = MPI_Win_allocate_shared(MPI_Aint(bytes), 1, info, node, &mine, &shm->control_win_);
  MPI_Info_free(&info);
  DP_CHECK(rc == MPI_SUCCESS, "allocating the shared-memory control window failed: {}",
           mpi_error_text(rc));
  MPI_Win_set_errhandler(shm->control_win_, MPI_ERRORS_RETURN);
  MPI_Aint got = 0;
  int disp = 0;
  void* base = nullptr;
  rc = MPI_Win_shared_query(shm->control_win_, 0, &got, &disp, &base);
  DP_CHECK(rc == MPI_SUCCESS && size_t(got) >= kLine * size_t(1 + size) &&
               reinterpret_cast<uintptr_t>(base) % alignof(Control) == 0,
           "querying the shared-memory control window failed: {}", mpi_error_text(rc));
  shm->control_base_ = static_cast<char*>(base);

  // Plain loads and stores into the windows, ordered by C++ atomics, need MPI's unified
  // memory model (the public and private copies of a window are the same memory).
  int* model = nullptr;
  int flag = 0;
  MPI_Win_get_attr(shm->control_win_, MPI_WIN_MODEL, &model, &flag);
  int unified = flag && model && *model == MPI_WIN_UNIFIED ? 1 : 0, all_unified = 0;
  MPI_Allreduce(&unified, &all_unified, 1, MPI_INT, MPI_MIN, node);
  if (!all_unified) return nullptr;  // the destructor frees the window, on every rank

  if (rank == 0) {
    new (shm->control_base_) Control();
    for (int r = 0; r < size; ++r) new (shm->control_base_ + kLine * size_t(1 + r)) Slot();
  }
  rc = MPI_Barrier(node);  // nobody uses the control block before it is constructed
  DP_CHECK(rc == MPI_SUCCESS, "MPI_Barrier on the node communicator failed: {}",
           mpi_error_text(rc));
  return shm;
}

ShmAllreduce::~ShmAllreduce() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized || std::uncaught_exceptions() > 0) return;
  for (auto& b : buffers_) MPI_Win_free(&b->win);
  if (control_win_ != MPI_WIN_NULL) MPI_Win_free(&control_win_);
  MPI_Comm_free(&node_);
}

ShmAllreduce::Slot& ShmAllreduce::slot(int rank) const {
  return *std::launder(reinterpret_cast<Slot*>(control_base_ + kLine * size_t(1 + rank)));
}

Tensor ShmAllreduce::allocate(size_t numel, DType dtype) {
  const size_t bytes = numel * dtype_size(dtype);
  // Every rank's data starts on a cache line of its own segment (MPI does not promise that a
  // segment does, and Open MPI's do not): the slack line pays for aligning them.
  const size_t usable = std::max<size_t>(kLine, (bytes + kLine - 1) / kLine * kLine);
  const size_t segment = usable + kLine;
  MPI_Info info = noncontig_info();
  char* mine = nullptr;
  MPI_Win win = MPI_WIN_NULL;
  int rc = MPI_Win_allocate_shared(MPI_Aint(segment), 1, info, node_, &mine, &win);
  MPI_Info_free(&info);
  DP_CHECK(rc == MPI_SUCCESS,
           "allocating a {:.2f} MB shared-memory buffer on each of {} ranks failed: {}. The "
           "node's shared memory may be too small (Open MPI backs windows with files in "
           "/dev/shm, see osc_sm_backing_directory; a container needs e.g. docker run "
           "--shm-size=1g), or turn the shared-memory path off "
           "(MpiProcessGroupOptions::shared_memory = false)",
           double(segment) / 1048576.0, size_, mpi_error_text(rc));
  MPI_Win_set_errhandler(win, MPI_ERRORS_RETURN);
  auto buf = std::make_shared<ShmBuffer>();
  buf->win = win;
  buf->index = buffers_.size();
  buf->bytes = usable;
  buf->data.assign(size_t(size_), nullptr);
  buffers_.push_back(buf);  // registered first: the destructor frees it whatever fails below
  // MPI may round segments up (to pages); equal rounded sizes are what every rank's
  // identical request gives.
  std::vector<size_t> sizes(size_t(size_), 0);
  for (int q = 0; q < size_; ++q) {
    MPI_Aint got = 0;
    int disp = 0;
    void* base = nullptr;
    rc = MPI_Win_shared_query(win, q, &got, &disp, &base);
    DP_CHECK(rc == MPI_SUCCESS && size_t(got) >= segment,
             "MPI_Win_shared_query for rank {} failed or gave {} of {} bytes: {}", q, size_t(got),
             segment, mpi_error_text(rc));
    const uintptr_t b = reinterpret_cast<uintptr_t>(base);
    buf->data[size_t(q)] = static_cast<char*>(base) + ((kLine - b % kLine) % kLine);
    sizes[size_t(q)] = size_t(got);
  }
  for (int q = 0; q < size_; ++q) {
    DP_CHECK(sizes[size_t(q)] == sizes[size_t(rank_)],
             "shared-memory buffer #{}: rank {} allocated {} bytes, rank {} {}: every rank must "
             "call allocate() with the same sizes in the same order",
             buf->index, q, sizes[size_t(q)], rank_, sizes[size_t(rank_)]);
  }
  std::memset(mine, 0, segment);
  auto storage = std::make_shared<Storage>(buf->data[size_t(rank_)], bytes, buf);
  return Tensor::from_storage(std::move(storage), {static_cast<int64_t>(numel)}, dtype);
}

const ShmBuffer* ShmAllreduce::find(const void* p, size_t bytes) const {
  const char* c = static_cast<const char*>(p);
  for (const auto& b : buffers_) {
    const char* base = b->data[size_t(rank_)];
    if (c >= base && c + bytes <= base + b->bytes) return b.get();
  }
  return nullptr;
}

void ShmAllreduce::barrier(int which, uint64_t seq, const std::string& what) {
  auto& c = *std::launder(reinterpret_cast<Control*>(control_base_));
  // Arrive. acq_rel: the release publishes this rank's buffer writes (gradients, reduced
  // slices) and its slot; the CAS chain is one release sequence, so whoever sees the next
  // generation has seen every rank's writes.
  uint64_t s = c.state.load(std::memory_order_relaxed);
  uint32_t gen = 0;
  for (;;) {
    gen = uint32_t(s >> 32);
    const bool last = uint32_t(s) + 1 == uint32_t(size_);
    const uint64_t next = last ? uint64_t(uint32_t(gen + 1)) << 32 : s + 1;
    if (c.state.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                      std::memory_order_relaxed)) {
      if (!last) break;
      c.wake.store(gen + 1, std::memory_order_seq_cst);
      if (c.sleepers.load(std::memory_order_seq_cst) > 0) wake_all(c.wake);
      return;
    }
  }

  // Wait: spin while the others are probably microseconds away, then yield (more ranks than
  // cores: the one we wait for may need this core), then sleep on a futex so that a long
  // wait (a bucket launched early in backward) costs the computing threads nothing.
  using clock = std::chrono::steady_clock;
  constexpr auto kSpin = std::chrono::microseconds(20);
  constexpr auto kYield = std::chrono::microseconds(200);
  constexpr auto kMaxSleep = std::chrono::milliseconds(50);
  const auto start = clock::now(), deadline = start + timeout_;
  for (;;) {
    for (int k = 0; k < 32; ++k) {
      if (uint32_t(c.state.load(std::memory_order_acquire) >> 32) != gen) return;
      cpu_relax();
    }
    const auto now = clock::now();
    if (now >= deadline) break;
    if (now - start < kSpin) continue;
    if (now - start < kYield) {
      sched_yield();
      continue;
    }
    c.sleepers.fetch_add(1, std::memory_order_seq_cst);
    if (c.wake.load(std::memory_order_seq_cst) == gen) {
      sleep_while_equal(c.wake, gen, std::min<clock::duration>(deadline - now, kMaxSleep));
    }
    c.sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Timed out: withdraw the arrival unless the barrier completed meanwhile.
  s = c.state.load(std::memory_order_acquire);
  for (;;) {
    if (uint32_t(s >> 32) != gen) return;
    if (c.state.compare_exchange_weak(s, s - 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      break;
    }
  }
  slot(rank_).progress.store(seq * 4, std::memory_order_relaxed);  // phase 0: gave up
  const uint64_t here = seq * 4 + uint64_t(which);
  std::string missing, gave_up;
  for (int q = 0; q < size_; ++q) {
    const uint64_t p = slot(q).progress.load(std::memory_order_relaxed);
    if (q == rank_ || p >= here) continue;
    if (p / 4 == seq && p % 4 == 0) {
      gave_up += fmt::format("{}{}", gave_up.empty() ? "" : ", ", q);
      continue;
    }
    std::string where = p == 0        ? "in no shared-memory collective yet"
                        : p / 4 < seq ? fmt::format("last seen in collective #{}", p / 4)
                                      : std::string("still reducing its slice");
    missing += fmt::format("{}rank {} ({})", missing.empty() ? "" : ", ", q, where);
  }
  const char* point = which == 1 ? "barrier 1 of 2 (all ranks launched the collective)"
                                 : "barrier 2 of 2 (all slices reduced)";
  const double secs = double(timeout_.count()) / 1000.0;
  if (missing.empty()) {
    fail(
        "collective #{} ({}): shared-memory all-reduce: the other ranks ({}) gave up waiting at "
        "{} before this rank arrived; this rank is behind (see their messages), the timeout is "
        "{} s",
        seq, what, gave_up.empty() ? std::string("?") : gave_up, point, secs);
  }
  fail(
      "collective #{} ({}): shared-memory all-reduce: {} did not arrive within {} s at {}; it "
      "is behind, stuck or dead (see its messages){}",
      seq, what, missing, secs, point,
      gave_up.empty() ? std::string() : fmt::format("; rank(s) {} gave up waiting too", gave_up));
}

void ShmAllreduce::allreduce(const ShmBuffer& buf, Tensor& t, bool average, uint64_t seq,
                             const std::string& what) {
  const DType dtype = t.dtype();
  DP_CHECK(dtype == DType::f32 || is_half_float(dtype),
           "collective #{} ({}): the shared-memory all-reduce takes float32, bfloat16 and "
           "float16, not {}",
           seq, what, dtype_name(dtype));
  const size_t es = dtype_size(dtype);
  const size_t offset = size_t(static_cast<char*>(t.raw()) - buf.data[size_t(rank_)]);
  const size_t n = t.numel();
  Slot& me = slot(rank_);
  me.buffer.store(buf.index, std::memory_order_relaxed);
  me.offset.store(offset, std::memory_order_relaxed);
  me.numel.store(n, std::memory_order_relaxed);
  me.average.store(average ? 1 : 0, std::memory_order_relaxed);
  me.dtype.store(uint64_t(dtype), std::memory_order_relaxed);
  me.progress.store(seq * 4 + 1, std::memory_order_relaxed);
  barrier(1, seq, what);

  // Between the barriers every slot is stable, so every rank reaches the same verdict and
  // all of them still meet at barrier 2 before failing alike.
  auto describe = [](uint64_t avg, uint64_t code, uint64_t off, uint64_t numel, uint64_t b) {
    const auto d = static_cast<DType>(code);
    const size_t size = std::max<size_t>(1, dtype_size(d));
    return fmt::format("{} of {} [{}, {}) in shared buffer #{}", avg ? "avg" : "sum", dtype_name(d),
                       off / size, off / size + numel, b);
  };
  std::string mismatch;
  for (int q = 0; q < size_ && mismatch.empty(); ++q) {
    const Slot& o = slot(q);
    const uint64_t o_seq = o.progress.load(std::memory_order_relaxed) / 4;
    const uint64_t o_buf = o.buffer.load(std::memory_order_relaxed);
    const uint64_t o_off = o.offset.load(std::memory_order_relaxed);
    const uint64_t o_n = o.numel.load(std::memory_order_relaxed);
    const uint64_t o_avg = o.average.load(std::memory_order_relaxed);
    const uint64_t o_dt = o.dtype.load(std::memory_order_relaxed);
    if (o_seq != seq || o_buf != buf.index || o_off != offset || o_n != n ||
        o_avg != (average ? 1 : 0) || o_dt != uint64_t(dtype)) {
      mismatch = fmt::format("rank {} is in collective #{} ({}), rank {} in #{} ({})", q, o_seq,
                             describe(o_avg, o_dt, o_off, o_n, o_buf), rank_, seq,
                             describe(average, uint64_t(dtype), offset, n, buf.index));
    }
  }
  if (mismatch.empty()) {
    // Slices start on multiples of one cache line of the tensor (16 floats, 32 16-bit values),
    // so that two ranks never write into the same line.
    const size_t align = kLine / es;
    const size_t per = (n + size_t(size_) - 1) / size_t(size_);
    const size_t chunk = (per + align - 1) / align * align;
    const size_t begin = std::min(n, size_t(rank_) * chunk), end = std::min(n, begin + chunk);
    if (begin < end) {
      if (dtype == DType::bf16) {
        reduce_views(ptrs_bf16_, buf, offset, size_, begin, end, average);
      } else if (dtype == DType::f16) {
        reduce_views(ptrs_f16_, buf, offset, size_, begin, end, average);
      } else {
        reduce_views(ptrs_f32_, buf, offset, size_, begin, end, average);
      }
    }
  }
  me.progress.store(seq * 4 + 2, std::memory_order_relaxed);
  barrier(2, seq, what);
  me.progress.store(seq * 4 + 3, std::memory_order_relaxed);
  DP_CHECK(mismatch.empty(),
           "collective #{} ({}): ranks disagree on a shared-memory all-reduce: {}. Every rank "
           "must issue the same collectives in the same order, on the same views of buffers "
           "allocate()d in the same order",
           seq, what, mismatch);
}

}  // namespace dp
