#include "runtime/comm/cuda/nccl_comm.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "runtime/core/clock.h"
#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

using Clock = std::chrono::steady_clock;

namespace detail {

// What an NcclComm and every NcclWork it handed out share: a work may outlive its
// communicator (it then still reports the abort, or its completion).
struct NcclState {
  std::mutex mu;
  ncclComm_t comm = nullptr;  // nullptr once aborted or destroyed: never touched again
  int rank = 0;
  int size = 1;
  int device = 0;
  std::string host;
  std::chrono::milliseconds timeout{0};
  uint64_t issued = 0;
  bool aborted = false;
  bool destroyed = false;
  std::string abort_reason;

  // "rank 3 of 8 (cuda:3 on node7)"
  std::string where() const {
    return fmt::format("rank {} of {} (cuda:{} on {})", rank, size, device, host);
  }

  // ncclCommAbort, once; the handle is dropped whatever it returns. Safe to call anywhere.
  void abort_locked(const std::string& reason) noexcept {
    if (aborted) return;
    aborted = true;
    try {
      abort_reason = reason;
    } catch (...) {
    }
    if (!comm) return;
    ncclComm_t c = comm;
    comm = nullptr;
    // On a non-blocking communicator ncclCommAbort may return ncclInProgress while its
    // clean-up finishes in NCCL's own thread; NCCL forbids using the handle after the call
    // either way, so neither case is polled.
    ncclResult_t r = ncclCommAbort(c);
    if (r != ncclSuccess && r != ncclInProgress) {
      try {
        log::warn("{}: ncclCommAbort returned {}", where(), ncclGetErrorString(r));
      } catch (...) {
      }
    }
  }
};

}  // namespace detail

namespace {

std::string nccl_text(ncclResult_t r) {
  std::string s = fmt::format("{} (ncclResult_t {})", ncclGetErrorString(r), static_cast<int>(r));
  // The last error is process-wide and may belong to an earlier call; it is still the
  // best detail NCCL offers.
  const char* last = ncclGetLastError(nullptr);
  if (r != ncclSuccess && last && *last) s += fmt::format(": {}", last);
  return s;
}

// Polls ncclCommGetAsyncError until the communicator leaves ncclInProgress, or `deadline`
// passes (then ncclInProgress is returned). Polling is also what completes a non-blocking
// operation: NCCL joins its helper thread from inside ncclCommGetAsyncError.
ncclResult_t poll_until_settled(ncclComm_t comm, Clock::time_point deadline) {
  auto nap = std::chrono::microseconds(10);
  for (;;) {
    ncclResult_t state = ncclInProgress;
    ncclResult_t r = ncclCommGetAsyncError(comm, &state);
    if (r != ncclSuccess) return r;  // the query itself failed: as bad as a failed state
    if (state != ncclInProgress) return state;
    if (Clock::now() >= deadline) return ncclInProgress;
    std::this_thread::sleep_for(nap);
    nap = std::min(nap * 2, std::chrono::microseconds(1000));
  }
}

double seconds(std::chrono::milliseconds ms) {
  return static_cast<double>(ms.count()) / 1000.0;
}

ncclDataType_t nccl_type(NcclDType t) {
  switch (t) {
    case NcclDType::f32:
      return ncclFloat32;
    case NcclDType::bf16:
      return ncclBfloat16;
    case NcclDType::f16:
      return ncclFloat16;
    case NcclDType::i32:
      return ncclInt32;
  }
  fail("unknown NcclDType code {}", static_cast<int>(t));
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
      return ncclSum;
    case ReduceOp::avg:  // NCCL divides by the world size itself (NCCL >= 2.10)
      return ncclAvg;
    case ReduceOp::min:
      return ncclMin;
    case ReduceOp::max:
      return ncclMax;
  }
  fail("unknown reduce op code {}", static_cast<int>(op));
}

bool overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  auto a0 = reinterpret_cast<uintptr_t>(a), b0 = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

std::string hostname() {
  char host[HOST_NAME_MAX + 1] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return "?";
  return host;
}

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("NCCL bootstrap: {} failed: {} (MPI error code {})", call, std::string(text, size_t(len)),
       rc);
}

}  // namespace

size_t nccl_dtype_size(NcclDType t) {
  switch (t) {
    case NcclDType::f32:
    case NcclDType::i32:
      return 4;
    case NcclDType::bf16:
    case NcclDType::f16:
      return 2;
  }
  return 0;
}

const char* nccl_dtype_name(NcclDType t) {
  switch (t) {
    case NcclDType::f32:
      return "float32";
    case NcclDType::bf16:
      return "bfloat16";
    case NcclDType::f16:
      return "float16";
    case NcclDType::i32:
      return "int32";
  }
  return "?";
}

int select_nccl_device(int rank, const std::string& host, int local_rank, int local_size,
                       int visible_gpus, int requested) {
  DP_CHECK(visible_gpus > 0,
           "rank {}: the NCCL backend needs one GPU per rank, but no CUDA GPU is visible on {} "
           "(no driver, or CUDA_VISIBLE_DEVICES is empty); use --backend mpi to train on CPUs",
           rank, host);
  DP_CHECK(local_rank >= 0 && local_rank < local_size,
           "rank {}: local rank {} is outside 0..{} on {}", rank, local_rank, local_size - 1, host);
  if (requested >= 0) {
    // Chosen by the caller, who may know better than a count: under Slurm's per-task binding
    // every rank sees only its own GPU, as cuda:0 (dprun's launcher compares the GPUs' UUIDs,
    // check_device_sharing). Two ranks on one GPU still fail, in NCCL's set-up.
    DP_CHECK(requested < visible_gpus,
             "rank {}: device cuda:{} was requested but {} has {} visible GPU(s) (cuda:0..{})",
             rank, requested, host, visible_gpus, visible_gpus - 1);
    return requested;
  }
  DP_CHECK(local_size <= visible_gpus,
           "rank {}: {} ranks run on {} but only {} GPU(s) are visible there; NCCL refuses two "
           "ranks on one GPU. Start at most {} rank(s) per node, or use --backend mpi "
           "--allow-device-sharing to let ranks share a GPU",
           rank, local_size, host, visible_gpus, visible_gpus);
  return local_rank;
}

// ---------------------------------------------------------------------------------------
// NcclWork

NcclWork::NcclWork(std::shared_ptr<detail::NcclState> state, uint64_t seq, std::string description)
    : state_(std::move(state)),
      seq_(seq),
      description_(std::move(description)),
      enqueue_us_(now_us()),
      start_(/*timing=*/true, state_->device),
      end_(/*timing=*/true, state_->device) {}

void NcclWork::wait(std::chrono::milliseconds timeout) {
  detail::NcclState& st = *state_;
  const std::chrono::milliseconds limit = timeout.count() > 0 ? timeout : st.timeout;
  const Clock::time_point deadline = Clock::now() + limit;
  auto nap = std::chrono::microseconds(10);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(st.mu);
      if (completed_) return;
      // After an abort the kernels quit early, so a completed end event proves nothing.
      if (st.aborted) {
        fail("{}: NCCL collective #{} ({}) cannot complete: the communicator was aborted ({})",
             st.where(), seq_, description_, st.abort_reason);
      }
      DeviceGuard guard(st.device);
      const cudaError_t q = cudaEventQuery(end_.get());
      if (q != cudaSuccess && q != cudaErrorNotReady) {
        (void)cudaGetLastError();
        std::string msg = fmt::format(
            "{}: CUDA error while waiting for NCCL collective #{} ({}): {} ({}); the device is "
            "in an error state (often an earlier kernel's fault: CUDA_LAUNCH_BLOCKING=1 "
            "finds it). The communicator was aborted",
            st.where(), seq_, description_, cudaGetErrorString(q), cudaGetErrorName(q));
        st.abort_locked(msg);
        throw Error(msg);
      }
      if (q == cudaErrorNotReady) (void)cudaGetLastError();
      // An asynchronous error (a peer died, the network failed) can also end the kernels
      // early, so it is checked even when the event completed.
      if (st.comm) {
        ncclResult_t state = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(st.comm, &state);
        if (r != ncclSuccess) state = r;
        if (state != ncclSuccess && state != ncclInProgress) {
          std::string msg = fmt::format(
              "{}: NCCL collective #{} ({}) failed after {:.1f} s: NCCL reports {}. A peer "
              "process exited or the network failed (ncclRemoteError / ncclSystemError); "
              "NCCL_DEBUG=WARN on every rank tells which. The communicator was aborted",
              st.where(), seq_, description_, (now_us() - enqueue_us_) / 1e6, nccl_text(state));
          st.abort_locked(msg);
          throw Error(msg);
        }
      }
      if (q == cudaSuccess) {
        completed_ = true;
        complete_us_ = now_us();
        return;
      }
      if (Clock::now() >= deadline) {
        std::string msg = fmt::format(
            "{}: NCCL collective #{} ({}) did not complete within {:.1f} s (issued {:.1f} s "
            "ago; this rank has issued {} collective(s)). A rank is behind, stuck or dead, or "
            "the ranks issued different collectives: compare the ranks' messages, the one with "
            "the lowest count fell behind. The communicator was aborted (ncclCommAbort)",
            st.where(), seq_, description_, seconds(limit), (now_us() - enqueue_us_) / 1e6,
            st.issued);
        st.abort_locked(msg);
        throw Error(msg);
      }
    }
    std::this_thread::sleep_for(nap);
    // Capped low: the time between completion and noticing it is exposed communication.
    nap = std::min(nap * 2, std::chrono::microseconds(100));
  }
}

bool NcclWork::done() const {
  detail::NcclState& st = *state_;
  std::lock_guard<std::mutex> lock(st.mu);
  if (completed_ || st.aborted) return true;
  DeviceGuard guard(st.device);
  const cudaError_t q = cudaEventQuery(end_.get());
  if (q == cudaSuccess) return true;
  (void)cudaGetLastError();
  return q != cudaErrorNotReady;  // a CUDA error: done, and wait() says what failed
}

float NcclWork::elapsed_ms() const {
  DP_CHECK(done(), "elapsed_ms() of NCCL collective #{} ({}): it has not completed; wait() first",
           seq_, description_);
  return start_.elapsed_ms(end_);
}

void NcclWork::block_stream(cudaStream_t stream) const {
  end_.block(stream);
}

double NcclWork::complete_us() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return complete_us_;
}

// ---------------------------------------------------------------------------------------
// NcclComm: set-up and shutdown

ncclUniqueId NcclComm::unique_id() {
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  ncclResult_t r = ncclGetUniqueId(&id);
  DP_CHECK(r == ncclSuccess,
           "ncclGetUniqueId failed: {}. NCCL could not open its bootstrap socket; "
           "NCCL_SOCKET_IFNAME selects the network interface",
           nccl_text(r));
  return id;
}

NcclComm::NcclComm(MPI_Comm comm, NcclCommOptions options) : options_(options) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  DP_CHECK(initialized && !finalized,
           "the NCCL communicator is bootstrapped over MPI: create it after MPI_Init "
           "(dp::MpiRuntime) and destroy it before MPI_Finalize");
  DP_CHECK(comm != MPI_COMM_NULL, "the NCCL communicator was given MPI_COMM_NULL");
  int rank = 0, size = 1;
  check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  // The ranks of `comm` on this node: local rank and local size pick the GPU.
  MPI_Comm local = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local),
            "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
  int local_rank = 0, local_size = 1;
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_size(local, &local_size);
  MPI_Comm_free(&local);
  const std::string host = hostname();

  // 1. Every rank picks its GPU, and all agree that every rank has one BEFORE any NCCL call:
  //    a rank that threw alone would leave the others waiting for it in NCCL's set-up.
  int device = -1;
  std::string why;
  try {
    device = select_nccl_device(rank, host, local_rank, local_size, cuda_device_count(),
                                options_.device);
  } catch (const Error& e) {
    why = e.what();
  }
  int mine = why.empty() ? INT_MAX : rank, lowest = INT_MAX;
  check_mpi(MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce");
  if (lowest != INT_MAX) {
    if (!why.empty()) throw CollectiveError(why);
    throw CollectiveError(fmt::format(
        "rank {}: the NCCL communicator was not created because rank {} cannot use a GPU (see "
        "its message)",
        rank, lowest));
  }

  // 2. Rank 0's unique id reaches every rank, with a flag: rank 0 failing to create it must
  //    end every rank here, not leave them waiting in MPI_Bcast or in NCCL.
  struct IdMessage {
    int ok;
    char error[512];
    ncclUniqueId id;
  } msg;
  std::memset(&msg, 0, sizeof(msg));
  if (rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&msg.id);
    msg.ok = r == ncclSuccess ? 1 : 0;
    if (!msg.ok) std::snprintf(msg.error, sizeof(msg.error), "%s", nccl_text(r).c_str());
  }
  check_mpi(MPI_Bcast(&msg, static_cast<int>(sizeof(msg)), MPI_BYTE, 0, comm), "MPI_Bcast");
  if (!msg.ok) {
    throw CollectiveError(fmt::format(
        "rank {}: ncclGetUniqueId failed on rank 0: {}. NCCL could not open its bootstrap "
        "socket; NCCL_SOCKET_IFNAME selects the network interface",
        rank, msg.error));
  }
  init(msg.id, rank, size, device, host);
}

NcclComm::NcclComm(const ncclUniqueId& id, int rank, int size, int device, NcclCommOptions options)
    : options_(options) {
  init(id, rank, size, device, hostname());
}

void NcclComm::init(const ncclUniqueId& id, int rank, int size, int device,
                    const std::string& host) {
  DP_CHECK(size >= 1 && rank >= 0 && rank < size,
           "NCCL communicator: rank {} is outside 0..{} (world size {})", rank, size - 1, size);
  const int visible = cuda_device_count();
  DP_CHECK(device >= 0 && device < visible,
           "NCCL communicator for rank {}: cuda:{} is not a visible device ({} has {} GPU(s))",
           rank, device, host, visible);
  DP_CHECK(options_.init_timeout.count() > 0 && options_.timeout.count() > 0,
           "NCCL communicator: init_timeout and timeout must be positive");
  auto st = std::make_shared<detail::NcclState>();
  st->rank = rank;
  st->size = size;
  st->device = device;
  st->host = host;
  st->timeout = options_.timeout;
  uncaught_at_start_ = std::uncaught_exceptions();

  // NCCL binds the communicator to the device current at init.
  DeviceGuard guard(device);
  stream_ =
      CudaStream(device, options_.high_priority_stream ? CudaStream::highest_priority(device) : 0);

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; the deadline below is ours to enforce
  const Clock::time_point deadline = Clock::now() + options_.init_timeout;
  std::lock_guard<std::mutex> lock(st->mu);
  ncclComm_t comm = nullptr;
  ncclResult_t r = ncclCommInitRankConfig(&comm, size, id, rank, &config);
  st->comm = comm;  // from here on every failure aborts it
  auto give_up = [&](const std::string& problem) {
    std::string msg = fmt::format("{}: NCCL communicator set-up {}", st->where(), problem);
    st->abort_locked(msg);
    throw Error(msg);
  };
  if (r != ncclSuccess && r != ncclInProgress) {
    give_up(fmt::format("failed: ncclCommInitRankConfig returned {}", nccl_text(r)));
  }
  if (!comm) give_up("failed: ncclCommInitRankConfig returned no communicator");
  const ncclResult_t state = poll_until_settled(comm, deadline);
  if (state == ncclInProgress) {
    give_up(fmt::format(
        "did not complete within {:.1f} s: a rank did not start or crashed, or the ranks cannot "
        "reach each other (NCCL_SOCKET_IFNAME, firewalls); NCCL_DEBUG=INFO shows where it "
        "stopped. The set-up was aborted",
        seconds(options_.init_timeout)));
  }
  if (state != ncclSuccess) {
    give_up(fmt::format("failed: {}. NCCL_DEBUG=WARN tells more", nccl_text(state)));
  }
  // What NCCL made of it must be what was asked for (a wrong current device at init would
  // bind the communicator to another GPU).
  int nccl_device = -1, nccl_rank = -1, nccl_size = -1;
  if (ncclCommCuDevice(comm, &nccl_device) != ncclSuccess ||
      ncclCommUserRank(comm, &nccl_rank) != ncclSuccess ||
      ncclCommCount(comm, &nccl_size) != ncclSuccess) {
    give_up("failed: NCCL could not report the new communicator's rank, size and device");
  }
  if (nccl_device != device || nccl_rank != rank || nccl_size != size) {
    give_up(fmt::format("produced rank {} of {} on cuda:{}, not rank {} of {} on cuda:{}",
                        nccl_rank, nccl_size, nccl_device, rank, size, device));
  }
  state_ = std::move(st);
}

NcclComm::~NcclComm() {
  if (!state_) return;
  try {
    bool healthy = false;
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      healthy = !state_->aborted && state_->comm != nullptr;
    }
    if (!healthy) return;
    if (std::uncaught_exceptions() > uncaught_at_start_) {
      // Unwinding from an error: the other ranks are probably not shutting down with us, so a
      // graceful finalize would only wait out its timeout before dprun reports the error.
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->abort_locked("destroyed while an exception was propagating");
      return;
    }
    finalize();
  } catch (const std::exception& e) {
    try {
      log::warn("{}", e.what());
    } catch (...) {
    }
  }
}

void NcclComm::finalize() {
  detail::NcclState& st = *state_;
  std::lock_guard<std::mutex> lock(st.mu);
  DP_CHECK(!st.aborted, "{}: finalize() of an NCCL communicator that was aborted ({})", st.where(),
           st.abort_reason);
  if (!st.comm) return;  // finalized already
  DeviceGuard guard(st.device);
  // ncclCommFinalize flushes every issued collective and, on a non-blocking communicator,
  // reports ncclInProgress until all ranks are quiescent; only then is ncclCommDestroy a
  // purely local call (without it, destroy synchronises with the other ranks and can hang).
  std::string problem;
  ncclResult_t r = ncclCommFinalize(st.comm);
  if (r != ncclSuccess && r != ncclInProgress) {
    problem = fmt::format("failed: {}", nccl_text(r));
  } else {
    const ncclResult_t state = poll_until_settled(st.comm, Clock::now() + options_.timeout);
    if (state == ncclInProgress) {
      problem = fmt::format(
          "did not complete within {:.1f} s: a rank has not reached finalize, or a collective "
          "is stuck (this rank issued {})",
          seconds(options_.timeout), st.issued);
    } else if (state != ncclSuccess) {
      problem = fmt::format("failed: {}", nccl_text(state));
    }
  }
  if (!problem.empty()) {
    std::string msg =
        fmt::format("{}: ncclCommFinalize {}; the communicator was aborted", st.where(), problem);
    st.abort_locked(msg);
    throw Error(msg);
  }
  ncclComm_t c = st.comm;
  st.comm = nullptr;  // NCCL forbids touching the handle after ncclCommDestroy, whatever it says
  st.destroyed = true;
  r = ncclCommDestroy(c);
  DP_CHECK(r == ncclSuccess || r == ncclInProgress,
           "{}: ncclCommDestroy after a successful finalize failed: {}", st.where(), nccl_text(r));
}

void NcclComm::abort(const std::string& reason) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->abort_locked(reason);
}

int NcclComm::rank() const {
  return state_->rank;
}
int NcclComm::size() const {
  return state_->size;
}
int NcclComm::device() const {
  return state_->device;
}

bool NcclComm::aborted() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->aborted;
}

uint64_t NcclComm::issued() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->issued;
}

// ---------------------------------------------------------------------------------------
// NcclComm: collectives

template <typename Issue>
NcclWorkPtr NcclComm::launch(std::string description, cudaEvent_t ready, Issue&& issue) {
  detail::NcclState& st = *state_;
  std::lock_guard<std::mutex> lock(st.mu);
  DP_CHECK(!st.aborted,
           "{}: NCCL collective {} not issued: the communicator was aborted earlier ({})",
           st.where(), description, st.abort_reason);
  DP_CHECK(st.comm, "{}: NCCL collective {} issued after finalize()", st.where(), description);
  const uint64_t seq = ++st.issued;
  NcclWorkPtr work;
  try {
    DeviceGuard guard(st.device);
    work.reset(new NcclWork(state_, seq, description));
    // An earlier collective that failed asynchronously poisons the communicator: say so
    // here rather than let NCCL refuse this call with a less telling code.
    ncclResult_t state = ncclSuccess;
    ncclResult_t q = ncclCommGetAsyncError(st.comm, &state);
    if (q != ncclSuccess) state = q;
    if (state != ncclSuccess && state != ncclInProgress) {
      fail("an earlier collective failed asynchronously: {}", nccl_text(state));
    }
    if (ready) DP_CUDA_CHECK(cudaStreamWaitEvent(stream_.get(), ready, 0));
    work->start_.record(stream_);
    ncclResult_t r = issue(st.comm, stream_.get());
    // Non-blocking: ncclInProgress means NCCL is still setting the collective up (connecting
    // to peers the first time an algorithm is used) and it is NOT yet on the stream. Recording
    // the end event now would capture nothing, so wait (bounded) until it is enqueued.
    if (r == ncclInProgress) {
      r = poll_until_settled(st.comm, Clock::now() + options_.timeout);
      if (r == ncclInProgress) {
        fail(
            "NCCL did not finish setting it up within {:.1f} s (connecting to the peers: one "
            "may be missing, stuck in another collective, or unreachable)",
            seconds(options_.timeout));
      }
    }
    if (r != ncclSuccess) fail("NCCL returned {}", nccl_text(r));
    work->end_.record(stream_);
  } catch (const std::exception& e) {
    // The other ranks may already have issued #seq: this rank's sequence no longer matches
    // theirs, so nothing issued on this communicator can be trusted any more.
    std::string msg = fmt::format(
        "{}: NCCL collective #{} ({}) could not be issued: {}. The communicator was aborted",
        st.where(), seq, description, e.what());
    st.abort_locked(msg);
    throw Error(msg);
  }
  return work;
}

NcclWorkPtr NcclComm::allreduce(void* buf, size_t count, NcclDType dtype, ReduceOp op,
                                cudaEvent_t ready, const std::string& tag) {
  return allreduce(buf, buf, count, dtype, op, ready, tag);
}

NcclWorkPtr NcclComm::allreduce(const void* send, void* recv, size_t count, NcclDType dtype,
                                ReduceOp op, cudaEvent_t ready, const std::string& tag) {
  // Argument checks come before a sequence number is taken: a bad call fails on its own
  // and leaves the communicator usable.
  const size_t bytes = count * nccl_dtype_size(dtype);
  DP_CHECK(count == 0 || (send && recv), "NCCL allreduce '{}': null buffer for {} elements", tag,
           count);
  DP_CHECK(op != ReduceOp::avg || dtype != NcclDType::i32,
           "NCCL allreduce '{}': avg of int32 is not defined (an integer average would "
           "truncate); reduce with sum and divide where you need it",
           tag);
  DP_CHECK(send == recv || !overlap(send, bytes, recv, bytes),
           "NCCL allreduce '{}': the send and receive buffers overlap without being the same "
           "buffer",
           tag);
  std::string desc = fmt::format("allreduce({}) {}[{}] '{}'", reduce_op_name(op),
                                 nccl_dtype_name(dtype), count, tag);
  const ncclDataType_t type = nccl_type(dtype);
  const ncclRedOp_t nop = nccl_op(op);
  return launch(std::move(desc), ready, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllReduce(send, recv, count, type, nop, comm, stream);
  });
}

NcclWorkPtr NcclComm::broadcast(void* buf, size_t count, NcclDType dtype, int root,
                                cudaEvent_t ready, const std::string& tag) {
  return broadcast(buf, buf, count, dtype, root, ready, tag);
}

NcclWorkPtr NcclComm::broadcast(const void* send, void* recv, size_t count, NcclDType dtype,
                                int root, cudaEvent_t ready, const std::string& tag) {
  const size_t bytes = count * nccl_dtype_size(dtype);
  DP_CHECK(root >= 0 && root < size(),
           "NCCL broadcast '{}': root {} is out of range; ranks are 0..{}", tag, root, size() - 1);
  DP_CHECK(count == 0 || (recv && (send || rank() != root)),
           "NCCL broadcast '{}': null buffer for {} elements", tag, count);
  DP_CHECK(send == recv || !overlap(send, bytes, recv, bytes),
           "NCCL broadcast '{}': the send and receive buffers overlap without being the same "
           "buffer",
           tag);
  std::string desc =
      fmt::format("broadcast(root={}) {}[{}] '{}'", root, nccl_dtype_name(dtype), count, tag);
  const ncclDataType_t type = nccl_type(dtype);
  return launch(std::move(desc), ready, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclBroadcast(send, recv, count, type, root, comm, stream);
  });
}

NcclWorkPtr NcclComm::allgather(const void* send, void* recv, size_t send_count, NcclDType dtype,
                                cudaEvent_t ready, const std::string& tag) {
  const size_t es = nccl_dtype_size(dtype), n = static_cast<size_t>(size());
  DP_CHECK(send_count <= SIZE_MAX / es / n,
           "NCCL allgather '{}': {} elements x {} ranks overflows the byte count", tag, send_count,
           n);
  DP_CHECK(send_count == 0 || (send && recv), "NCCL allgather '{}': null buffer", tag);
  // NCCL's in-place all-gather: `send` already sits in this rank's slot of `recv`. Any other
  // overlap would let one rank's data overwrite input still to be sent.
  const char* own_slot =
      static_cast<const char*>(recv) + static_cast<size_t>(rank()) * send_count * es;
  DP_CHECK(send == own_slot || !overlap(send, send_count * es, recv, send_count * es * n),
           "NCCL allgather '{}': the send buffer overlaps the receive buffer without being this "
           "rank's slot of it (rank {} at element offset {})",
           tag, rank(), static_cast<size_t>(rank()) * send_count);
  std::string desc = fmt::format("allgather {}[{}] -> {}[{}] '{}'", nccl_dtype_name(dtype),
                                 send_count, nccl_dtype_name(dtype), send_count * n, tag);
  const ncclDataType_t type = nccl_type(dtype);
  return launch(std::move(desc), ready, [&](ncclComm_t comm, cudaStream_t stream) {
    return ncclAllGather(send, recv, send_count, type, comm, stream);
  });
}

}  // namespace dp
