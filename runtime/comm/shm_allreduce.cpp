#include "runtime/comm/shm_allreduce.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <new>
#include <utility>

#include <fmt/format.h>
#include <unistd.h>

#include "runtime/comm/shm_control.h"
#include "runtime/core/address_space.h"
#include "runtime/core/error.h"
#include "runtime/core/half_float.h"
#include "runtime/core/units.h"

namespace dp {

namespace {

using shm_layout::kLine;

std::string mpi_error_text(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return fmt::format("{} (MPI error code {})", std::string(text, size_t(len)), rc);
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

ShmAllreduce::ShmAllreduce(MPI_Comm node, int rank, int size, std::chrono::milliseconds timeout)
    : node_(node), rank_(rank), size_(size), timeout_(timeout) {
  static_assert(sizeof(Control) <= kLine, "the control block is one cache line");
  static_assert(sizeof(Slot) <= kLine, "a slot is one cache line");
  static_assert(sizeof(PoisonNote) <= shm_layout::kNoteBytes, "the poison note fits its lines");
  static_assert(sizeof(Record) <= shm_layout::kRecordBytes, "a record fits its lines");
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
  shm->stall_ = ShmStall::from_env();
  // The poison word names a rank in 16 bits.
  DP_CHECK(size < 0xffff, "the shared-memory path supports up to 65534 ranks on a node, not {}",
           size);

  MPI_Info info = noncontig_info();
  char* mine = nullptr;
  const size_t control = shm_layout::control_bytes(size);
  const size_t bytes = rank == 0 ? control : 0;
  rc = MPI_Win_allocate_shared(MPI_Aint(bytes), 1, info, node, &mine, &shm->control_win_);
  MPI_Info_free(&info);
  DP_CHECK(rc == MPI_SUCCESS, "allocating the shared-memory control window failed: {}",
           mpi_error_text(rc));
  MPI_Win_set_errhandler(shm->control_win_, MPI_ERRORS_RETURN);
  MPI_Aint got = 0;
  int disp = 0;
  void* base = nullptr;
  rc = MPI_Win_shared_query(shm->control_win_, 0, &got, &disp, &base);
  DP_CHECK(rc == MPI_SUCCESS && size_t(got) >= control &&
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
    char* base = shm->control_base_;
    new (base) Control();
    for (int r = 0; r < size; ++r) new (base + kLine * size_t(1 + r)) Slot();
    char* records = base + kLine * size_t(1 + size);
    new (records) PoisonNote();
    records += shm_layout::kNoteBytes;
    for (int i = 0; i < 2 * size; ++i)
      new (records + shm_layout::kRecordBytes * size_t(i)) Record();
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

Tensor ShmAllreduce::allocate(size_t numel, DType dtype) {
  const size_t bytes = numel * dtype_size(dtype);
  // Every rank's data starts on a cache line of its own segment (MPI does not promise that a
  // segment does, and Open MPI's do not): the slack line pays for aligning them.
  const size_t usable = std::max<size_t>(kLine, (bytes + kLine - 1) / kLine * kLine);
  const size_t segment = usable + kLine;
  // Every rank maps the whole window (each segment on pages of its own). Refused here, by
  // every rank of the node together (limits and mappings differ between processes), a window
  // that cannot be mapped leaves no file behind.
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const size_t window = size_t(size_) * ((segment + page - 1) / page * page);
  const AddressSpace as = address_space();
  const int short_here = exceeds_address_space(as, window) ? 1 : 0;
  int short_anywhere = short_here;
  int rc = MPI_Allreduce(MPI_IN_PLACE, &short_anywhere, 1, MPI_INT, MPI_MAX, node_);
  DP_CHECK(rc == MPI_SUCCESS, "MPI_Allreduce on the node communicator failed: {}",
           mpi_error_text(rc));
  DP_CHECK(short_here || !short_anywhere,
           "allocating a {:.2f} MB shared-memory buffer on each of {} ranks: another rank of this "
           "node cannot map all of them ({:.2f} MB) within its address-space limit (ulimit -v; "
           "see its message), so none does. Raise the limit, or run with --no-shm",
           bytes_to_mb(double(segment)), size_, bytes_to_mb(double(window)));
  DP_CHECK(!short_here,
           "allocating a {:.2f} MB shared-memory buffer on each of {} ranks: every rank maps "
           "all of them ({:.2f} MB), and this rank's address-space limit (ulimit -v) of "
           "{:.2f} MB has {:.2f} MB left. Raise the limit, or run with --no-shm "
           "(MpiProcessGroupOptions::shared_memory = false)",
           bytes_to_mb(double(segment)), size_, bytes_to_mb(double(window)),
           bytes_to_mb(double(as.limit)),
           bytes_to_mb(double(as.used < as.limit ? as.limit - as.used : 0)));
  MPI_Info info = noncontig_info();
  char* mine = nullptr;
  MPI_Win win = MPI_WIN_NULL;
  rc = MPI_Win_allocate_shared(MPI_Aint(segment), 1, info, node_, &mine, &win);
  MPI_Info_free(&info);
  DP_CHECK(rc == MPI_SUCCESS,
           "allocating a {:.2f} MB shared-memory buffer on each of {} ranks failed: {}. The "
           "node's shared memory may be too small (Open MPI backs windows with files in "
           "/dev/shm, see osc_sm_backing_directory; a container needs e.g. docker run "
           "--shm-size=1g), or run with --no-shm "
           "(MpiProcessGroupOptions::shared_memory = false)",
           bytes_to_mb(double(segment)), size_, mpi_error_text(rc));
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

void ShmAllreduce::allreduce(const ShmBuffer& buf, Tensor& t, bool average,
                             const Fingerprint& collective) {
  const DType dtype = t.dtype();
  DP_CHECK(dtype == DType::f32 || is_half_float(dtype),
           "collective {}: the shared-memory all-reduce takes float32, bfloat16 and float16, not "
           "{}",
           collective.text(), dtype_name(dtype));
  const size_t es = dtype_size(dtype);
  const size_t offset = size_t(static_cast<char*>(t.raw()) - buf.data[size_t(rank_)]);
  const size_t n = t.numel();
  // Where in which buffer joins the fingerprint: ranks reducing different views of their
  // buffers would otherwise add up unrelated elements.
  const Fingerprint fp = collective.in_shared_buffer(buf.index, offset / es);
  Slot& me = slot(rank_);
  stall_.maybe_stall(rank_, fp.seq, 1);
  arrive_and_compare(fp, shm_layout::kFirst, timeout_);

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
  stall_.maybe_stall(rank_, fp.seq, 2);
  me.progress.store(fp.seq * 4 + 2, std::memory_order_relaxed);
  barrier(shm_layout::kSecond, fp, timeout_);
  me.progress.store(fp.seq * 4 + 3, std::memory_order_relaxed);
}

}  // namespace dp
