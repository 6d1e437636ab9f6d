#include "runtime/comm/cuda/nccl_process_group.h"

#include <exception>
#include <utility>

#include <fmt/format.h>

#include "runtime/comm/collective_checks.h"
#include "runtime/comm/fingerprint.h"
#include "runtime/comm/mpi_fingerprint.h"
#include "runtime/core/cuda/context.h"
#include "runtime/core/cuda/stream.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kWaitGrace{std::chrono::seconds(10)};

namespace {

NcclDType nccl_dtype(DType t) {
  switch (t) {
    case DType::f32:
      return NcclDType::f32;
    case DType::i32:
      return NcclDType::i32;
    case DType::bf16:
      return NcclDType::bf16;
    case DType::f16:
      return NcclDType::f16;
  }
  fail("no NCCL datatype for dtype code {}", static_cast<int>(t));
}

NcclCommOptions comm_options(const NcclProcessGroupOptions& o) {
  NcclCommOptions c;
  c.device = o.device;
  c.init_timeout = o.init_timeout;
  c.timeout = o.timeout;
  return c;
}

}  // namespace

bool nccl_compiled() {
  return true;
}

std::unique_ptr<ProcessGroup> make_nccl_process_group(MPI_Comm comm,
                                                      const NcclProcessGroupOptions& options) {
  return std::make_unique<NcclProcessGroup>(comm, options);
}

NcclProcessGroup::NcclProcessGroup(MPI_Comm comm, const NcclProcessGroupOptions& options)
    : NcclProcessGroup(std::make_unique<NcclComm>(comm, comm_options(options)), options) {
  // The host-side desync check's own communicator: its traffic never mixes with the caller's.
  int rc = MPI_Comm_dup(comm, &check_comm_);
  DP_CHECK(rc == MPI_SUCCESS,
           "NcclProcessGroup: duplicating the communicator failed (MPI error {})", rc);
  MPI_Comm_set_errhandler(check_comm_, MPI_ERRORS_RETURN);
}

NcclProcessGroup::NcclProcessGroup(std::unique_ptr<NcclComm> comm,
                                   const NcclProcessGroupOptions& options)
    // The watchdog fails a collective at options.timeout after its launch and aborts the
    // communicator; a wait() without its own deadline allows a grace beyond that, so that
    // the watchdog's error (which names the abort) is the one reported.
    : ProcessGroup(options.timeout + kWaitGrace), options_(options), comm_(std::move(comm)) {
  DP_CHECK(comm_ != nullptr, "NcclProcessGroup: no communicator");
  DP_CHECK(options_.timeout.count() > 0, "NcclProcessGroup: the timeout must be positive");
  watchdog_ = std::thread([this] { watchdog_loop(); });
}

NcclProcessGroup::~NcclProcessGroup() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  // The watchdog drains the queue first: every Work handed out completes (each one within
  // its deadline), so nobody waits on a Work that can no longer finish.
  watchdog_.join();
  comm_.reset();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (check_comm_ != MPI_COMM_NULL && !finalized) MPI_Comm_free(&check_comm_);
}

void NcclProcessGroup::abort(const std::string& reason) {
  // The watchdog then finds every pending collective failed ("communicator aborted").
  try {
    comm_->abort(reason);
  } catch (...) {  // the error path calls this: it must not throw
  }
  cv_.notify_all();
}

void NcclProcessGroup::check_device(const Tensor& t, const std::string& op,
                                    const std::string& tag) const {
  DP_CHECK(!t.is_cuda() || t.device().index == device(),
           "{} '{}': the tensor {} is on {} but rank {}'s NCCL communicator drives cuda:{}", op,
           tag, t.str(), t.device().str(), rank(), device());
}

template <typename Issue>
WorkPtr NcclProcessGroup::launch(const std::string& description, uint64_t hash, Tensor a, Tensor b,
                                 Issue&& issue, std::chrono::milliseconds timeout) {
  const int dev = device();
  // One collective at a time from check to issue, so that seq order is issue order; mu_
  // is not held meanwhile: the watchdog keeps completing earlier collectives.
  std::lock_guard<std::mutex> issuing(issue_mu_);
  uint64_t seq = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    DP_CHECK(!stop_, "{}: the NCCL process group is shutting down", description);
    seq = next_seq_++;
  }
  auto work = make_work(description, seq, timeout);
  // The host-side desync check, before anything is enqueued: a mismatch fails this Work
  // (every rank's alike) and every later one, without touching NCCL.
  try {
    if (!desync_.empty()) {
      throw CollectiveError(
          fmt::format("collective #{} ({}): not run: {}", seq, description, desync_));
    }
    if (check_comm_ != MPI_COMM_NULL) {
      check_fingerprints(check_comm_, make_fingerprint(seq, hash, work->description()),
                         work->timeout());
    }
  } catch (const CollectiveError& e) {
    if (desync_.empty()) {
      desync_ = fmt::format("this process group stopped at collective #{}: {}", seq, e.what());
    }
    work->mark_completed(std::current_exception());
    flight_recorder().record(work);
    return work;
  } catch (const CollectiveTimeout&) {
    // A rank never reached its check: its request is abandoned, so nothing of this group can
    // be trusted any more; the NCCL collectives stop too.
    abort(fmt::format("collective #{} ({}): the desync check timed out", seq, description));
    work->mark_completed(std::current_exception());
    flight_recorder().record(work);
    return work;
  }
  {
    DeviceGuard guard(dev);
    // The inputs were written by kernels on the compute stream: NCCL's stream waits for
    // this point of it, GPU-side. The event may die right after: the wait is captured.
    CudaEvent ready(/*timing=*/false, dev);
    ready.record(compute_stream(dev));
    NcclWorkPtr nw = issue(ready.get());
    work->mark_started();  // enqueued on the comm stream
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(
        {work, std::move(nw), Clock::now() + work->timeout(), std::move(a), std::move(b)});
  }
  flight_recorder().record(work);  // once issued; under issue_mu_, so in seq order
  cv_.notify_all();
  return work;
}

void NcclProcessGroup::watchdog_loop() {
  for (;;) {
    Pending p;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stop_ and drained
      p = pending_.front();          // stays queued (and its buffers alive) until completed
    }
    // Collectives on one comm stream complete in issue order, so waiting on the oldest is
    // waiting on the first one that can complete. NcclWork::wait polls the end event AND
    // NCCL's asynchronous error state, and aborts the communicator at the deadline.
    std::exception_ptr error;
    double device_ms = -1;
    try {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(p.deadline - Clock::now());
      p.nccl->wait(std::max(left, std::chrono::milliseconds(1)));
      device_ms = static_cast<double>(p.nccl->elapsed_ms());
    } catch (const std::exception& e) {
      const std::string msg =
          fmt::format("collective #{} ({}): {}", p.work->seq(), p.work->description(), e.what());
      // Past the deadline it is a hang: Work::wait() then dumps the flight recorder.
      error = Clock::now() >= p.deadline ? std::make_exception_ptr(CollectiveTimeout(msg))
                                         : std::make_exception_ptr(Error(msg));
    } catch (...) {
      error = std::current_exception();
    }
    if (device_ms >= 0) p.work->set_device_ms(device_ms);
    {
      std::lock_guard<std::mutex> lock(mu_);
      pending_.pop_front();
    }
    p.keep_a = Tensor();
    p.keep_b = Tensor();
    p.work->mark_completed(error);
  }
}

WorkPtr NcclProcessGroup::allreduce(Tensor& t, ReduceOp op, const std::string& tag) {
  check_allreduce(t, op, tag);
  check_device(t, "allreduce", tag);
  const std::string desc = describe_allreduce(t, op, tag);
  if (!t.is_cuda()) {
    // A small control collective: staged through the device, complete on return.
    Tensor d = t.to(Device::cuda(device()));
    allreduce(d, op, tag)->wait(timeout());
    t.copy_(d);
    auto work = std::make_shared<Work>(desc + " (device-staged)");
    work->mark_completed();
    return work;
  }
  const uint64_t hash =
      collective_hash(CollectiveKind::allreduce, int64_t(op), t.dtype(), t.numel(), tag);
  return launch(desc, hash, t, Tensor(), [&](cudaEvent_t ready) {
    return comm_->allreduce(t.raw(), t.numel(), nccl_dtype(t.dtype()), op, ready, tag);
  });
}

WorkPtr NcclProcessGroup::broadcast(Tensor& t, int root, const std::string& tag) {
  check_broadcast(t, root, size(), tag);
  check_device(t, "broadcast", tag);
  const std::string desc = describe_broadcast(t, root, tag);
  if (!t.is_cuda()) {
    Tensor d = t.to(Device::cuda(device()));
    broadcast(d, root, tag)->wait(timeout());
    t.copy_(d);
    auto work = std::make_shared<Work>(desc + " (device-staged)");
    work->mark_completed();
    return work;
  }
  const uint64_t hash = collective_hash(CollectiveKind::broadcast, root, t.dtype(), t.numel(), tag);
  return launch(desc, hash, t, Tensor(), [&](cudaEvent_t ready) {
    return comm_->broadcast(t.raw(), t.numel(), nccl_dtype(t.dtype()), root, ready, tag);
  });
}

WorkPtr NcclProcessGroup::allgather(const Tensor& in, Tensor& out, const std::string& tag) {
  check_allgather(in, out, size(), tag);
  check_device(in, "allgather", tag);
  const std::string desc = describe_allgather(in, out, tag);
  if (!in.is_cuda()) {  // check_allgather: `out` is on the CPU too
    Tensor din = in.to(Device::cuda(device()));
    Tensor dout = Tensor::zeros(out.shape(), out.dtype(), Device::cuda(device()));
    allgather(din, dout, tag)->wait(timeout());
    out.copy_(dout);
    auto work = std::make_shared<Work>(desc + " (device-staged)");
    work->mark_completed();
    return work;
  }
  const uint64_t hash = collective_hash(CollectiveKind::allgather, 0, in.dtype(), in.numel(), tag);
  return launch(desc, hash, in, out, [&](cudaEvent_t ready) {
    return comm_->allgather(in.raw(), out.raw(), in.numel(), nccl_dtype(in.dtype()), ready, tag);
  });
}

WorkPtr NcclProcessGroup::barrier(const std::string& tag, std::chrono::milliseconds timeout) {
  // NCCL has no barrier: a one-element all-reduce completes only when every rank joined.
  Tensor one = Tensor::zeros({1}, DType::i32, Device::cuda(device()));
  const uint64_t hash = collective_hash(CollectiveKind::barrier, 0, DType::f32, 0, tag);
  return launch(
      describe_barrier(tag), hash, one, Tensor(),
      [&](cudaEvent_t ready) {
        return comm_->allreduce(one.raw(), 1, NcclDType::i32, ReduceOp::sum, ready, tag);
      },
      timeout);
}

Tensor NcclProcessGroup::allocate(size_t numel, DType dtype, Device device) {
  DP_CHECK(!device.is_cuda() || device.index == this->device(),
           "NCCL process group: a buffer on {} was requested, but rank {} drives cuda:{}",
           device.str(), rank(), this->device());
  return ProcessGroup::allocate(numel, dtype, device);
}

}  // namespace dp
