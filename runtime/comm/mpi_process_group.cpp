#include "runtime/comm/mpi_process_group.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "runtime/comm/collective_checks.h"
#include "runtime/comm/ring_allreduce.h"
#include "runtime/comm/setting_agreement.h"
#include "runtime/core/error.h"
#include "runtime/core/half_float.h"
#include "runtime/core/log.h"
#include "runtime/ops/cpu/elementwise.h"

namespace dp {
namespace {

// The communicator returns errors (MPI_ERRORS_RETURN) so that they reach the caller's
// wait() as a dp::Error naming the collective, instead of MPI aborting without context.
void check_mpi(int rc, const char* call, const Work& work) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("collective #{} ({}): {} failed: {} (MPI error code {})", work.seq(), work.description(),
       call, std::string(text, size_t(len)), rc);
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::i32:
      return MPI_INT32_T;
    case DType::bf16:  // bytes for broadcast and allgather; all-reduces add with half_sum
    case DType::f16:
      return MPI_UINT16_T;
  }
  fail("no MPI datatype for dtype code {}", static_cast<int>(t));
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg:  // sum, then scaled on the comm thread
      return MPI_SUM;
    case ReduceOp::min:
      return MPI_MIN;
    case ReduceOp::max:
      return MPI_MAX;
  }
  fail("unknown reduce op code {}", static_cast<int>(op));
}

// MPI has no bfloat16 (nor, portably, IEEE half): a user-defined op adds 2-byte elements of
// type H as float32 and rounds each combine to nearest even, as NCCL does. Commutative (float
// addition is), so MPI may combine in any tree; every rank still gets the same bits from the
// same tree.
template <typename H>
void half_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const H*>(in);
  auto* b = static_cast<H*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = narrow<H>(widen(a[i]) + widen(b[i]));
}

template <typename H>
void scale_half(Tensor& t, float scale) {
  H* h = t.data<H>();
  for (size_t i = 0; i < t.numel(); ++i) h[i] = narrow<H>(widen(h[i]) * scale);
}

// How the settings the ranks must agree on read in an error.
std::string algo_text(int v) {
  return allreduce_algo_name(static_cast<AllreduceAlgo>(v));
}
std::string on_off(int v) {
  return v ? "on" : "off";
}
std::string node_split_text(int v) {
  return v > 0 ? std::to_string(v) : "unset";
}

bool overlaps(const Tensor& a, const Tensor& b) {
  auto a0 = reinterpret_cast<uintptr_t>(a.raw()), b0 = reinterpret_cast<uintptr_t>(b.raw());
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

}  // namespace

MpiProcessGroup::MpiProcessGroup(MPI_Comm comm) : MpiProcessGroup(comm, MpiProcessGroupOptions{}) {}

MpiProcessGroup::MpiProcessGroup(MPI_Comm comm, MpiProcessGroupOptions options)
    : ProcessGroup(options.timeout), options_(options) {
  int initialized = 0, finalized = 0, level = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  DP_CHECK(initialized && !finalized,
           "the MPI process group needs MPI running: create it after dp::MpiRuntime and destroy "
           "it before");
  MPI_Query_thread(&level);
  DP_CHECK(level >= MPI_THREAD_SERIALIZED,
           "MPI runs at thread level {}; the MPI process group calls MPI from its communication "
           "thread and needs at least MPI_THREAD_SERIALIZED (initialise MPI via dp::MpiRuntime)",
           level);
  DP_CHECK(comm != MPI_COMM_NULL, "the MPI process group was given MPI_COMM_NULL");
  DP_CHECK(options.shm_timeout.count() > 0, "shm_timeout must be positive (got {} ms)",
           options.shm_timeout.count());
  DP_CHECK(options.max_count_per_call >= 1 && options.max_count_per_call <= size_t(INT_MAX),
           "max_count_per_call {} is outside 1..INT_MAX", options.max_count_per_call);
  int rc = MPI_Comm_dup(comm, &comm_);
  DP_CHECK(rc == MPI_SUCCESS, "MPI_Comm_dup failed creating the MPI process group (MPI error {})",
           rc);
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  int node_split = options_.node_split;
  if (node_split == 0) {
    if (const char* env = std::getenv("DPRUN_NODE_SPLIT")) node_split = std::atoi(env);
  }
  node_split = std::max(node_split, 0);  // 0: real nodes, however it was unset
  // Before the set-up below, whose collectives depend on them.
  try {
    agree_settings(comm_, {{options_.algo_option, int(options_.allreduce_algo), &algo_text},
                           {"--no-shm", options_.shared_memory ? 0 : 1, &on_off},
                           {"DPRUN_NODE_SPLIT", node_split, &node_split_text}});
  } catch (...) {
    MPI_Comm_free(&comm_);  // every rank fails here alike
    throw;
  }
  rc = MPI_Op_create(&half_sum<bf16>, /*commute=*/1, &bf16_sum_);
  DP_CHECK(rc == MPI_SUCCESS, "MPI_Op_create (bfloat16 sum) failed (MPI error {})", rc);
  rc = MPI_Op_create(&half_sum<f16>, /*commute=*/1, &f16_sum_);
  DP_CHECK(rc == MPI_SUCCESS, "MPI_Op_create (float16 sum) failed (MPI error {})", rc);
  fused_ = std::make_unique<FusedCheck>(options_.fused_max_bytes);
  fused_->set_recorder(&flight_recorder());
  std::string why_flat;
  hier_ = HierarchicalAllreduce::create(comm_, options_.allreduce_algo, node_split,
                                        options_.shared_memory, options_.shm_timeout, &why_flat);
  if (hier_) {
    log::debug("all-reduce: hierarchical, {} nodes x {} ranks", hier_->nodes(),
               hier_->local_size());
  } else {
    if (options_.allreduce_algo == AllreduceAlgo::hierarchical && rank_ == 0) {
      log::warn("{} hierarchical: using the flat all-reduce: {}", options_.algo_option, why_flat);
    }
    shm_ = ShmAllreduce::create(comm_, options_.shared_memory, options_.shm_timeout);
  }
  if (ShmAllreduce* s = shm()) s->set_recorder(&flight_recorder());
  thread_ = std::thread([this] { comm_loop(); });
}

std::string MpiProcessGroup::algorithm() const {
  if (hier_) {
    return fmt::format(
        "hierarchical, {} nodes x {} ranks (shared memory in each node, then "
        "across nodes)",
        hier_->nodes(), hier_->local_size());
  }
  if (shm_) return fmt::format("shared memory, one node of {} ranks", size_);
  return size_ > 1 ? "ring / MPI_Allreduce (no shared memory)" : "";
}

MpiProcessGroup::~MpiProcessGroup() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();  // after the queue drained: every Work handed out has completed
  hier_.reset();   // windows and communicators before the communicator they came from
  shm_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) {
    MPI_Op_free(&bf16_sum_);
    MPI_Op_free(&f16_sum_);
    MPI_Comm_free(&comm_);
  }
}

WorkPtr MpiProcessGroup::enqueue(std::string description, uint64_t hash, Run run,
                                 std::chrono::milliseconds timeout) {
  WorkPtr work;
  {
    std::lock_guard<std::mutex> lock(mu_);
    work = make_work(std::move(description), next_seq_++, timeout);
    queue_.push_back({work, hash, std::move(run)});
    flight_recorder().record(work);  // under mu_: the ring keeps seq order
  }
  cv_.notify_one();
  return work;
}

void MpiProcessGroup::comm_loop() {
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    const Work& w = *task.work;
    task.work->mark_started();
    std::exception_ptr error;
    try {
      if (!desync_.empty()) {
        throw CollectiveError(
            fmt::format("collective #{} ({}): not run: {}", w.seq(), w.description(), desync_));
      }
      task.run(w, make_fingerprint(w.seq(), task.hash, w.description()));
    } catch (const CollectiveError& e) {
      if (desync_.empty()) {
        desync_ =
            fmt::format("this process group stopped at collective #{}: {}", w.seq(), e.what());
      }
      error = std::current_exception();
    } catch (...) {
      error = std::current_exception();
    }
    task.run = nullptr;  // drop the tensor handles before the caller wakes up
    task.work->mark_completed(error);
  }
}

WorkPtr MpiProcessGroup::allreduce(Tensor& t, ReduceOp op, const std::string& tag) {
  check_allreduce(t, op, tag);
  const uint64_t hash =
      collective_hash(CollectiveKind::allreduce, int64_t(op), t.dtype(), t.numel(), tag);
  if (t.is_cuda()) {
    // The device-to-host copy happens now, on the caller's thread: the compute stream then
    // orders it after the kernels that produced `t`, and later kernels may overwrite `t`
    // only after wait() anyway. The copy back runs on the communication thread.
    std::shared_ptr<Tensor> host = stage_out(t);
    return enqueue(describe_allreduce(t, op, tag) + " (host-staged)", hash,
                   [this, t, host, op](const Work& w, const Fingerprint& fp) mutable {
                     run_allreduce(*host, op, w, fp);
                     stage_back(*host, t);
                   });
  }
  return enqueue(
      describe_allreduce(t, op, tag), hash,
      [this, t, op](const Work& w, const Fingerprint& fp) { run_allreduce(t, op, w, fp); });
}

WorkPtr MpiProcessGroup::broadcast(Tensor& t, int root, const std::string& tag) {
  check_broadcast(t, root, size_, tag);
  const uint64_t hash = collective_hash(CollectiveKind::broadcast, root, t.dtype(), t.numel(), tag);
  if (t.is_cuda()) {
    // Only the root's bytes matter; the others copy theirs too, to keep the ranks alike.
    std::shared_ptr<Tensor> host = stage_out(t);
    return enqueue(describe_broadcast(t, root, tag) + " (host-staged)", hash,
                   [this, t, host, root](const Work& w, const Fingerprint& fp) mutable {
                     check(fp);
                     run_broadcast(*host, root, w);
                     stage_back(*host, t);
                   });
  }
  return enqueue(describe_broadcast(t, root, tag), hash,
                 [this, t, root](const Work& w, const Fingerprint& fp) {
                   check(fp);
                   run_broadcast(t, root, w);
                 });
}

WorkPtr MpiProcessGroup::allgather(const Tensor& in, Tensor& out, const std::string& tag) {
  check_allgather(in, out, size_, tag);
  const uint64_t hash = collective_hash(CollectiveKind::allgather, 0, in.dtype(), in.numel(), tag);
  if (in.is_cuda()) {  // check_allgather made sure `out` is on the same device
    std::shared_ptr<Tensor> host_in = stage_out(in);
    std::shared_ptr<Tensor> host_out = staging_.acquire(out.shape(), out.dtype());
    return enqueue(describe_allgather(in, out, tag) + " (host-staged)", hash,
                   [this, host_in, host_out, out](const Work& w, const Fingerprint& fp) mutable {
                     check(fp);
                     run_allgather(*host_in, *host_out, w);
                     stage_back(*host_out, out);
                   });
  }
  return enqueue(describe_allgather(in, out, tag), hash,
                 [this, in, out](const Work& w, const Fingerprint& fp) {
                   check(fp);
                   run_allgather(in, out, w);
                 });
}

WorkPtr MpiProcessGroup::barrier(const std::string& tag, std::chrono::milliseconds timeout) {
  // The check is a barrier itself (shared memory: one; MPI: an all-reduce, which no rank
  // leaves before every rank contributed), so it is all a barrier needs.
  return enqueue(
      describe_barrier(tag), collective_hash(CollectiveKind::barrier, 0, DType::f32, 0, tag),
      [this, timeout](const Work&, const Fingerprint& fp) { check(fp, timeout); }, timeout);
}

void MpiProcessGroup::check(const Fingerprint& fp, std::chrono::milliseconds timeout) {
  if (shm_) {  // one node (with several nodes, hier_'s windows are not checked through)
    shm_->check(fp, timeout);
  } else if (size_ > 1) {
    fused_->run(comm_, fp);  // the same call a fused all-reduce makes: any two pair up
  }
}

std::shared_ptr<Tensor> MpiProcessGroup::stage_out(const Tensor& t) {
  std::shared_ptr<Tensor> host = staging_.acquire(t.shape(), t.dtype());
  host->copy_(t);  // waits for the compute stream up to here: the bytes are on the host
  return host;
}

void MpiProcessGroup::stage_back(const Tensor& host, Tensor& t) {
  // From pinned memory the copy is asynchronous; the staging buffer returns to the pool when
  // this task ends, and its next user may write it from the host (an all-gather's output), so
  // the copy must have read it by then.
  t.copy_(host);
  cuda_sync(t.device().index);
}

Tensor MpiProcessGroup::allocate(size_t numel, DType dtype, Device device) {
  // A shared window is host memory; device buffers are staged per collective instead.
  if (!shm() || numel == 0 || device.is_cuda()) {
    return ProcessGroup::allocate(numel, dtype, device);
  }
  // Shared with the task: after a timeout here the communication thread may still finish
  // the allocation, into a tensor that then nobody holds.
  auto out = std::make_shared<Tensor>();
  enqueue(fmt::format("allocate {}[{}] (shared memory)", dtype_name(dtype), numel),
          collective_hash(CollectiveKind::allocate, 0, dtype, numel, ""),
          [this, out, numel, dtype](const Work&, const Fingerprint& fp) {
            check(fp);
            *out = shm()->allocate(numel, dtype);
          })
      ->wait(timeout());
  return *out;
}

void MpiProcessGroup::run_allreduce(Tensor t, ReduceOp op, const Work& w, const Fingerprint& fp) {
  const bool is_half = is_half_float(t.dtype());  // check_allreduce: then sum or avg
  ShmAllreduce* shm = this->shm();
  // Where the data is joins the fingerprint when there are windows: a rank whose tensor is
  // in a shared buffer where another's is not would take another path alone.
  Fingerprint flat_fp = shm ? fp.outside_shared_memory() : fp;
  if (shm && (t.dtype() == DType::f32 || is_half) && (op == ReduceOp::sum || op == ReduceOp::avg)) {
    // Decided alike on every rank: the same view of the same allocate()d buffer is in a
    // window everywhere or nowhere (and the shared path checks that the ranks agree).
    if (const ShmBuffer* buf = shm->find(t.raw(), t.nbytes())) {
      if (!hier_) {
        shm->allreduce(*buf, t, op == ReduceOp::avg, fp);
        return;
      }
      // Across nodes, the sizes between the small ones (carried by the check) and
      // hierarchical_min_bytes go the flat way (see the option), on the window's memory.
      if (t.numel() * sizeof(float) <= fused_->max_bytes() ||
          t.nbytes() >= options_.hierarchical_min_bytes) {
        hier_->allreduce(*buf, t, op == ReduceOp::avg, fp, *fused_);
        return;
      }
      flat_fp = fp.in_shared_buffer(
          buf->index, size_t(static_cast<char*>(t.raw()) - buf->data[size_t(shm->rank())]) /
                          dtype_size(t.dtype()));
    }
  }
  auto* p = static_cast<char*>(t.raw());
  const size_t n = t.numel(), es = dtype_size(t.dtype()), chunk = options_.max_count_per_call;
  if (!shm_ && size_ > 1 && n <= chunk && fused_->fits(t, op)) {
    // A small one rides in its own desync check (the MPI one: no one-node shared group).
    fused_->run(comm_, flat_fp, &t, op);
  } else if (!shm_ && n <= chunk && fused_->pair_fits(t, op, size_)) {
    // Two ranks: the check rides in the first of the two half exchanges.
    fused_->run_pair(comm_, flat_fp, t, op);
  } else {
    check(flat_fp);
    // One rank: its values are the sum and the average already; a pass that multiplies every
    // gradient by 1 was 3-7% of a 1-rank mlp step.
    if (size_ == 1) return;
    if (t.dtype() == DType::f32 && (op == ReduceOp::sum || op == ReduceOp::avg) &&
        t.nbytes() >= options_.ring_min_bytes && n / size_ < chunk) {
      RingResult r = ring_allreduce_f32(t.f32(), n, op == ReduceOp::avg, comm_, ring_scratch_,
                                        &flight_recorder());
      check_mpi(r.mpi_error, r.call, w);
      return;
    }
    for (size_t off = 0; off < n; off += chunk) {
      int count = int(std::min(chunk, n - off));
      check_mpi(MPI_Allreduce(MPI_IN_PLACE, p + off * es, count, mpi_type(t.dtype()),
                              is_half ? half_sum_op(t.dtype()) : mpi_op(op), comm_),
                "MPI_Allreduce", w);
    }
  }
  if (op != ReduceOp::avg) return;
  const float inv = 1.0f / float(size_);
  if (t.dtype() == DType::bf16) {
    scale_half<bf16>(t, inv);
  } else if (t.dtype() == DType::f16) {
    scale_half<f16>(t, inv);
  } else {
    scale(n, inv, t.f32());
  }
}

MPI_Op MpiProcessGroup::half_sum_op(DType dtype) const {
  return dtype == DType::bf16 ? bf16_sum_ : f16_sum_;
}

void MpiProcessGroup::run_broadcast(Tensor t, int root, const Work& w) const {
  auto* p = static_cast<char*>(t.raw());
  const size_t n = t.numel(), es = dtype_size(t.dtype()), chunk = options_.max_count_per_call;
  for (size_t off = 0; off < n; off += chunk) {
    int count = int(std::min(chunk, n - off));
    check_mpi(MPI_Bcast(p + off * es, count, mpi_type(t.dtype()), root, comm_), "MPI_Bcast", w);
  }
}

void MpiProcessGroup::run_allgather(const Tensor& in, Tensor out, const Work& w) const {
  const size_t n = in.numel(), es = dtype_size(in.dtype()), chunk = options_.max_count_per_call;
  const MPI_Datatype dt = mpi_type(in.dtype());
  auto* out_p = static_cast<char*>(out.raw());
  // `in` already sitting in this rank's block is MPI_IN_PLACE; any other overlap would
  // alias MPI's send and receive buffers, so the input is copied out first.
  const bool in_place = in.raw() == out_p + size_t(rank_) * n * es;
  Tensor staged = !in_place && overlaps(in, out) ? in.clone() : in;
  const auto* in_p = static_cast<const char*>(staged.raw());
  if (n <= chunk) {
    check_mpi(MPI_Allgather(in_place ? MPI_IN_PLACE : in_p, int(n), dt, out_p, int(n), dt, comm_),
              "MPI_Allgather", w);
    return;
  }
  // Chunk c of every rank's block: one element of a type whose extent is a whole block, so
  // rank r's piece lands at out + r * n + offset.
  for (size_t off = 0; off < n; off += chunk) {
    int count = int(std::min(chunk, n - off));
    MPI_Datatype piece, block;
    MPI_Type_contiguous(count, dt, &piece);
    MPI_Type_create_resized(piece, 0, MPI_Aint(n * es), &block);
    MPI_Type_commit(&block);
    int rc = MPI_Allgather(in_place ? MPI_IN_PLACE : in_p + off * es, count, dt, out_p + off * es,
                           1, block, comm_);
    MPI_Type_free(&block);
    MPI_Type_free(&piece);
    check_mpi(rc, "MPI_Allgather", w);
  }
}

}  // namespace dp
