#pragma once
// RAII handles for the CUDA objects the GPU path orders its work with: DeviceGuard (the
// calling thread's current device, restored on scope exit), CudaStream and CudaEvent.
//
// Ordering model (the one the Reducer and the NCCL communicator rely on): work on one
// stream runs in issue order; work on two streams is ordered only by an event recorded on
// the producer stream that the consumer stream waits on (CudaEvent::record, then
// CudaEvent::block or CudaStream::wait). The host waits with synchronize() or polls with
// query(); neither is needed for GPU-to-GPU ordering.
#include <cuda_runtime_api.h>

#include <utility>

namespace dp {

// The calling thread's current CUDA device.
int cuda_current_device();

// Maps the result of cudaEventQuery / cudaStreamQuery: cudaSuccess -> true,
// cudaErrorNotReady -> false, anything else -> dp::Error naming `call`. "Not ready" is also
// cleared from the thread's last-error slot: left there, the next cudaGetLastError() (the
// usual check after a kernel launch) would report it as that kernel's failure.
bool cuda_query_done(cudaError_t result, const char* call);

// Whether `device`'s primary context is active in this process (asked of the driver through
// the runtime's driver entry point; true when that cannot be determined).
bool cuda_primary_context_active(int device);

// Makes `device` current for the scope, restores the previous device at its end. Every
// object below remembers its device and uses a guard, so callers never have to think about
// which device is current (a CUDA object used from the wrong device fails with
// cudaErrorInvalidResourceHandle or, worse, allocates on the wrong GPU).
//
// Except: a previous device whose primary context is not active is NOT restored (PyTorch's
// guard does the same). A thread that never chose a device reports cuda:0, and since CUDA 12
// cudaSetDevice creates the context of the device it switches to, so restoring would put a
// context (hundreds of MiB) on cuda:0 from every rank of a node that drives another GPU. Such
// a thread simply stays on the guard's device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();  // restores (see above); a failure there is logged, not thrown
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

  int previous() const { return previous_; }

 private:
  int previous_ = 0;
  bool changed_ = false;
};

class CudaEvent;

// A non-blocking stream (cudaStreamNonBlocking: it does not synchronise with the legacy
// default stream, so a library that uses stream 0 cannot serialise dprun's streams behind
// its own work). Priorities follow CUDA: numerically LOWER is HIGHER priority, 0 is the
// default; the NCCL communicator uses the highest so its kernels are scheduled ahead of
// backward's when both are ready.
class CudaStream {
 public:
  CudaStream() = default;  // empty: get() == nullptr, owns nothing
  // A new stream on `device` (-1: the current device).
  explicit CudaStream(int device, int priority = 0);
  ~CudaStream();
  CudaStream(CudaStream&& o) noexcept { swap(o); }
  CudaStream& operator=(CudaStream&& o) noexcept;
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  cudaStream_t get() const { return stream_; }
  int device() const { return device_; }
  int priority() const { return priority_; }
  explicit operator bool() const { return stream_ != nullptr; }

  void synchronize() const;                 // host waits for all work issued so far
  bool query() const;                       // true when all work issued so far is done
  void wait(const CudaEvent& event) const;  // later work on this stream waits for `event`

  // {least, greatest} as CUDA reports them, e.g. {0, -5}: valid priorities are
  // greatest <= p <= least.
  static std::pair<int, int> priority_range(int device);
  static int highest_priority(int device) { return priority_range(device).second; }

 private:
  void swap(CudaStream& o) noexcept;
  cudaStream_t stream_ = nullptr;
  int device_ = -1;
  int priority_ = 0;
};

// An event on one device. Timing events (timing = true) can measure elapsed GPU time but
// cost a little more to record; plain events are for ordering and polling.
class CudaEvent {
 public:
  CudaEvent() = default;  // empty
  // A new event on `device` (-1: the current device).
  explicit CudaEvent(bool timing, int device = -1);
  ~CudaEvent();
  CudaEvent(CudaEvent&& o) noexcept { swap(o); }
  CudaEvent& operator=(CudaEvent&& o) noexcept;
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  // Captures the work issued to the stream so far. The stream must be on the event's
  // device (CUDA's rule); the CudaStream overload checks it with a clear message.
  void record(const CudaStream& stream);
  void record(cudaStream_t stream);
  // Later work on `stream` waits until this event has completed (any device).
  void block(const CudaStream& stream) const { block(stream.get()); }
  void block(cudaStream_t stream) const;
  // true when the captured work is done (also for an event never recorded, as CUDA says).
  bool query() const;
  void synchronize() const;
  // GPU time in milliseconds from this event to `end`; both timing events, both recorded
  // and complete (else a dp::Error says which condition failed).
  float elapsed_ms(const CudaEvent& end) const;

  cudaEvent_t get() const { return event_; }
  int device() const { return device_; }
  bool timing() const { return timing_; }
  bool recorded() const { return recorded_; }
  explicit operator bool() const { return event_ != nullptr; }

 private:
  void swap(CudaEvent& o) noexcept;
  cudaEvent_t event_ = nullptr;
  int device_ = -1;
  bool timing_ = false;
  bool recorded_ = false;
};

}  // namespace dp
