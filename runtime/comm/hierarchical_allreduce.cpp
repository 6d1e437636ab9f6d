#include "runtime/comm/hierarchical_allreduce.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <exception>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "runtime/comm/ring_allreduce.h"
#include "runtime/core/error.h"
#include "runtime/core/half_float.h"

namespace dp {
namespace {

constexpr size_t kLine = 64;

std::string mpi_text(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return fmt::format("{} (MPI error code {})", std::string(text, size_t(len)), rc);
}

void check_rc(int rc, const char* what) {
  DP_CHECK(rc == MPI_SUCCESS, "setting up the hierarchical all-reduce: {} failed: {}", what,
           mpi_text(rc));
}

std::vector<int> world_ranks_of(MPI_Comm comm, int world_rank) {
  int n = 1;
  MPI_Comm_size(comm, &n);
  std::vector<int> out(size_t(n), 0);
  check_rc(MPI_Allgather(&world_rank, 1, MPI_INT, out.data(), 1, MPI_INT, comm), "MPI_Allgather");
  return out;
}

inline float to_float(float f) {
  return f;
}
inline float to_float(bf16 h) {
  return widen(h);
}
inline float to_float(f16 h) {
  return widen(h);
}

template <typename T>
const T* view(const ShmBuffer& buf, int q, size_t offset) {
  return reinterpret_cast<const T*>(buf.data[size_t(q)] + offset);
}
template <typename T>
T* view_mut(const ShmBuffer& buf, int q, size_t offset) {
  return reinterpret_cast<T*>(buf.data[size_t(q)] + offset);
}

// out[j] = ((b_0[j] + b_1[j]) + ...) over the node's L >= 2 buffers (element type T, widened
// to float), for j in [begin, end): a fixed order, in blocks that stay in L1. `out` may alias
// b_r's slice (the f32 path sums in place into its own buffer): each block is read in full
// before it is written.
template <typename T>
void node_sum(const ShmBuffer& buf, size_t offset, int local, size_t begin, size_t end,
              float* out) {
  constexpr size_t kBlock = 1024;
  alignas(kLine) float acc[kBlock];
  for (size_t lo = begin; lo < end; lo += kBlock) {
    const size_t m = std::min(kBlock, end - lo);
    const T* __restrict x = view<T>(buf, 0, offset) + lo;
    const T* __restrict y = view<T>(buf, 1, offset) + lo;
    for (size_t j = 0; j < m; ++j) acc[j] = to_float(x[j]) + to_float(y[j]);
    for (int q = 2; q < local; ++q) {
      const T* __restrict z = view<T>(buf, q, offset) + lo;
      for (size_t j = 0; j < m; ++j) acc[j] += to_float(z[j]);
    }
    std::memcpy(out + (lo - begin), acc, m * sizeof(float));
  }
}

// Writes the finished float32 values [0, m) (elements [begin, begin + m) of the tensor) into
// every local buffer (16-bit: rounded once, to nearest even), skipping `skip` (the f32 owner,
// whose buffer already holds them).
template <typename T>
void write_all(const ShmBuffer& buf, size_t offset, int local, size_t begin, size_t m,
               const float* v, int skip) {
  for (int q = 0; q < local; ++q) {
    if (q == skip) continue;
    T* __restrict dst = view_mut<T>(buf, q, offset) + begin;
    if constexpr (std::is_same_v<T, float>) {
      std::memcpy(dst, v, m * sizeof(float));
    } else {
      for (size_t j = 0; j < m; ++j) dst[j] = narrow<T>(v[j]);
    }
  }
}

}  // namespace

const char* allreduce_algo_name(AllreduceAlgo algo) {
  switch (algo) {
    case AllreduceAlgo::automatic:
      return "auto";
    case AllreduceAlgo::flat:
      return "flat";
    case AllreduceAlgo::hierarchical:
      return "hierarchical";
  }
  return "?";
}

AllreduceAlgo parse_allreduce_algo(const std::string& text, const std::string& what) {
  if (text == "auto") return AllreduceAlgo::automatic;
  if (text == "flat") return AllreduceAlgo::flat;
  if (text == "hierarchical") return AllreduceAlgo::hierarchical;
  fail("{} '{}': expected auto, flat or hierarchical", what, text);
}

std::unique_ptr<HierarchicalAllreduce> HierarchicalAllreduce::create(
    MPI_Comm world, AllreduceAlgo algo, int node_split, bool shared_memory,
    std::chrono::milliseconds shm_timeout, std::string* why) {
  int rank = 0, size = 1;
  MPI_Comm_rank(world, &rank);
  MPI_Comm_size(world, &size);
  auto flat = [&](std::string reason) -> std::unique_ptr<HierarchicalAllreduce> {
    if (why) *why = std::move(reason);
    return nullptr;
  };
  // Everything here up to the split is decided from arguments every rank shares (the
  // process group compared them first: runtime/comm/setting_agreement.h).
  if (algo == AllreduceAlgo::flat) return flat("the flat algorithm was asked for");
  if (size == 1) return flat("one rank");
  if (!shared_memory) return flat("shared memory is off (--no-shm)");
  if (node_split > 0 && size % node_split != 0) {
    return flat(fmt::format("the test split DPRUN_NODE_SPLIT={} does not divide {} ranks",
                            node_split, size));
  }

  MPI_Comm node = MPI_COMM_NULL;
  if (node_split > 0) {
    check_rc(MPI_Comm_split(world, rank / node_split, rank, &node), "MPI_Comm_split (nodes)");
  } else {
    check_rc(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node),
             "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
  }
  int local_rank = 0, local = 1;
  MPI_Comm_rank(node, &local_rank);
  MPI_Comm_size(node, &local);
  int mine[2] = {local, -local}, agreed[2] = {0, 0};
  check_rc(MPI_Allreduce(mine, agreed, 2, MPI_INT, MPI_MIN, world), "MPI_Allreduce (node sizes)");
  const int smallest = agreed[0], largest = -agreed[1];
  std::string reason;
  if (smallest != largest) {
    reason = fmt::format("the nodes hold different numbers of ranks ({} to {})", smallest, largest);
  } else if (local == 1) {
    reason = "one rank per node (nothing to share in memory)";
  } else if (local == size) {
    reason = "one node (the shared-memory all-reduce covers it)";
  }
  if (!reason.empty()) {
    MPI_Comm_free(&node);
    return flat(reason);
  }

  std::unique_ptr<HierarchicalAllreduce> h(new HierarchicalAllreduce());
  h->world_ = size;
  h->world_comm_ = world;
  h->nodes_ = size / local;
  // Node index: the leader's rank among the leaders (ordered by world rank), told to its node.
  MPI_Comm leaders = MPI_COMM_NULL;
  check_rc(MPI_Comm_split(world, local_rank == 0 ? 0 : MPI_UNDEFINED, rank, &leaders),
           "MPI_Comm_split (leaders)");
  if (leaders != MPI_COMM_NULL) {
    MPI_Comm_rank(leaders, &h->node_index_);
    MPI_Comm_free(&leaders);
  }
  check_rc(MPI_Bcast(&h->node_index_, 1, MPI_INT, 0, node), "MPI_Bcast (node index)");
  check_rc(MPI_Comm_split(world, local_rank, h->node_index_, &h->cross_),
           "MPI_Comm_split (cross-node columns)");
  MPI_Comm_set_errhandler(h->cross_, MPI_ERRORS_RETURN);
  std::vector<int> node_names = world_ranks_of(node, rank);

  h->shm_ = ShmAllreduce::create(node, /*wanted=*/true, shm_timeout);
  MPI_Comm_free(&node);  // the shared group made its own
  int ok = h->shm_ ? 1 : 0, all_ok = 0;
  check_rc(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, world), "MPI_Allreduce (windows)");
  if (!all_ok) return flat("a node has no coherent shared windows (MPI_WIN_UNIFIED)");
  h->shm_->set_rank_names(std::move(node_names));
  return h;
}

HierarchicalAllreduce::~HierarchicalAllreduce() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized || std::uncaught_exceptions() > 0) return;
  shm_.reset();
  if (cross_ != MPI_COMM_NULL) MPI_Comm_free(&cross_);
}

void HierarchicalAllreduce::allreduce(const ShmBuffer& buf, Tensor& t, bool average,
                                      const Fingerprint& collective, FusedCheck& check) {
  const DType dtype = t.dtype();
  DP_CHECK(dtype == DType::f32 || is_half_float(dtype),
           "collective {}: the hierarchical all-reduce takes float32, bfloat16 and float16, not {}",
           collective.text(), dtype_name(dtype));
  const size_t es = dtype_size(dtype);
  const size_t offset = size_t(static_cast<char*>(t.raw()) - buf.data[size_t(shm_->rank())]);
  // Where in which buffer joins the fingerprint, as in the one-node path.
  const Fingerprint fp = collective.in_shared_buffer(buf.index, offset / es);
  // Chosen from the count, which the fingerprint covers: ranks that pass the check took the
  // same path.
  if (t.numel() * sizeof(float) <= check.max_bytes()) {
    tiny(t, average, fp, check);
    return;
  }
  check.run(world_comm_, fp);
  // Every rank passed the world-wide check: the shared comparison cannot fail, but barrier 1
  // is what makes the node's gradients final for its readers.
  const std::string mismatch = shm_->compare(fp, /*first=*/true);
  if (!mismatch.empty()) throw CollectiveError(mismatch);
  sliced(buf, offset, t, average, fp);
  shm_->finish(fp);
}

void HierarchicalAllreduce::tiny(Tensor& t, bool average, const Fingerprint& fp,
                                 FusedCheck& check) {
  const size_t n = t.numel();
  const float inv = 1.0f / float(world_);
  if (t.dtype() == DType::f32) {
    check.run(world_comm_, fp, &t, ReduceOp::sum);
    if (average) {
      for (size_t j = 0; j < n; ++j) t.f32()[j] *= inv;
    }
    return;
  }
  // 16-bit: widened, summed in float32 (not rounded at every combine), rounded once.
  if (!tiny_.defined() || tiny_.numel() < n) tiny_ = Tensor::zeros({int64_t(n)}, DType::f32);
  Tensor w = tiny_.view(0, {int64_t(n)});
  float* v = w.f32();
  const bool bf = t.dtype() == DType::bf16;
  for (size_t j = 0; j < n; ++j) v[j] = bf ? widen(t.data<bf16>()[j]) : widen(t.data<f16>()[j]);
  check.run(world_comm_, fp, &w, ReduceOp::sum);
  for (size_t j = 0; j < n; ++j) {
    const float x = average ? v[j] * inv : v[j];
    if (bf) {
      t.data<bf16>()[j] = narrow<bf16>(x);
    } else {
      t.data<f16>()[j] = narrow<f16>(x);
    }
  }
}

void HierarchicalAllreduce::sliced(const ShmBuffer& buf, size_t offset, const Tensor& t,
                                   bool average, const Fingerprint& fp) {
  const DType dtype = t.dtype();
  const size_t n = t.numel(), es = dtype_size(dtype);
  const int local = shm_->size(), me = shm_->rank();
  // Slices start on cache lines of the tensor (no two ranks write one line), as in the
  // one-node path; with n < L * align the last ranks' slices are empty.
  const size_t align = kLine / es;
  const size_t per = (n + size_t(local) - 1) / size_t(local);
  const size_t chunk = (per + align - 1) / align * align;
  const size_t begin = std::min(n, size_t(me) * chunk), end = std::min(n, begin + chunk);
  const size_t m = end - begin;
  // float32 sums in place into this rank's own slice (nobody else reads it before barrier 2);
  // 16-bit across more than 2 nodes into a float32 scratch, for the float32 ring (one
  // rounding at the end).
  if (dtype != DType::f32 && nodes_ == 2) {
    if (dtype == DType::bf16) {
      half_two_nodes<bf16>(buf, offset, begin, end, average, fp);
    } else {
      half_two_nodes<f16>(buf, offset, begin, end, average, fp);
    }
    return;
  }
  float* work = nullptr;
  if (dtype == DType::f32) {
    work = view_mut<float>(buf, me, offset) + begin;
  } else {
    if (scratch_.size() < m) scratch_.resize(m);
    work = scratch_.data();
  }
  if (m > 0) {
    if (dtype == DType::bf16) {
      node_sum<bf16>(buf, offset, local, begin, end, work);
    } else if (dtype == DType::f16) {
      node_sum<f16>(buf, offset, local, begin, end, work);
    } else {
      node_sum<float>(buf, offset, local, begin, end, work);
    }
  }
  cross_allreduce(work, m, fp);
  if (m == 0) return;
  if (average) {
    const float inv = 1.0f / float(world_);
    for (size_t j = 0; j < m; ++j) work[j] *= inv;
  }
  if (dtype == DType::bf16) {
    write_all<bf16>(buf, offset, local, begin, m, work, -1);
  } else if (dtype == DType::f16) {
    write_all<f16>(buf, offset, local, begin, m, work, -1);
  } else {
    write_all<float>(buf, offset, local, begin, m, work, me);
  }
}

template <typename H>
void HierarchicalAllreduce::half_two_nodes(const ShmBuffer& buf, size_t offset, size_t begin,
                                           size_t end, bool average, const Fingerprint& fp) {
  // Each node's float32 sum crosses the link rounded to 16 bits (half the bytes of float32:
  // the link is what a large all-reduce waits for); the two are added in float32, node 0 +
  // node 1, scaled and rounded again: two roundings in all, where MPI's 16-bit op rounds at
  // every combine. Blocks that stay in L1 and no float32 scratch: the memory traffic is what
  // the CPU-bound 16-bit path pays for, on cores the TCP stack shares.
  const int local = shm_->size(), me = shm_->rank();
  const size_t m = end - begin;
  H* mine = view_mut<H>(buf, me, offset) + begin;  // nobody else reads it before barrier 2
  constexpr size_t kBlock = 1024;
  alignas(kLine) float acc[kBlock];
  alignas(kLine) H out[kBlock];
  for (size_t lo = 0; lo < m; lo += kBlock) {
    const size_t c = std::min(kBlock, m - lo);
    node_sum<H>(buf, offset, local, begin + lo, begin + lo + c, acc);  // reads the block first
    for (size_t j = 0; j < c; ++j) mine[lo + j] = narrow<H>(acc[j]);
  }
  constexpr size_t kPiece = size_t(1) << 28;
  const int other = 1 - node_index_;
  if (recv16_.size() < m) recv16_.resize(m);
  const H* r = reinterpret_cast<const H*>(recv16_.data());
  for (size_t lo = 0; lo < m; lo += kPiece) {
    const int c = int(std::min(kPiece, m - lo));
    const int rc = MPI_Sendrecv(mine + lo, c, MPI_UINT16_T, other, 0x4849, recv16_.data() + lo, c,
                                MPI_UINT16_T, other, 0x4849, cross_, MPI_STATUS_IGNORE);
    DP_CHECK(rc == MPI_SUCCESS,
             "collective {}: MPI_Sendrecv (hierarchical all-reduce, cross-node) failed: {}",
             fp.text(), mpi_text(rc));
  }
  const float inv = 1.0f / float(world_);
  for (size_t lo = 0; lo < m; lo += kBlock) {
    const size_t c = std::min(kBlock, m - lo);
    for (size_t j = 0; j < c; ++j) {
      const float a = widen(mine[lo + j]), b = widen(r[lo + j]);
      const float x = node_index_ == 0 ? a + b : b + a;
      out[j] = narrow<H>(average ? x * inv : x);
    }
    for (int q = 0; q < local; ++q) {
      std::memcpy(view_mut<H>(buf, q, offset) + begin + lo, out, c * sizeof(H));
    }
  }
}

void HierarchicalAllreduce::cross_allreduce(float* work, size_t m, const Fingerprint& fp) {
  if (m == 0) return;  // the same n and L give the whole column an empty slice
  if (nodes_ > 2) {
    // Bit-identical across the column: every chunk is summed by one rank, then copied.
    DP_CHECK(m / size_t(nodes_) < size_t(INT_MAX),
             "collective {}: a slice of {} elements is too large for the cross-node ring",
             fp.text(), m);
    const RingResult r = ring_allreduce_f32(work, m, /*average=*/false, cross_, recv_);
    DP_CHECK(r.mpi_error == MPI_SUCCESS, "collective {}: {} failed: {}", fp.text(), r.call,
             mpi_text(r.mpi_error));
    return;
  }
  // Two nodes: one exchange, both sides add node 0's + node 1's (float addition commutes,
  // so both get the same bits), in pieces that MPI's int counts hold.
  constexpr size_t kPiece = size_t(1) << 28;
  const int other = 1 - node_index_;
  if (recv_.size() < std::min(m, kPiece)) recv_.resize(std::min(m, kPiece));
  for (size_t lo = 0; lo < m; lo += kPiece) {
    const int c = int(std::min(kPiece, m - lo));
    const int rc = MPI_Sendrecv(work + lo, c, MPI_FLOAT, other, 0x4849, recv_.data(), c, MPI_FLOAT,
                                other, 0x4849, cross_, MPI_STATUS_IGNORE);
    DP_CHECK(rc == MPI_SUCCESS,
             "collective {}: MPI_Sendrecv (hierarchical all-reduce, cross-node) failed: {}",
             fp.text(), mpi_text(rc));
    float* __restrict w = work + lo;
    const float* __restrict r = recv_.data();
    if (node_index_ == 0) {
      for (int j = 0; j < c; ++j) w[j] = w[j] + r[j];
    } else {
      for (int j = 0; j < c; ++j) w[j] = r[j] + w[j];
    }
  }
}

}  // namespace dp
