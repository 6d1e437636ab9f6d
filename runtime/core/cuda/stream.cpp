#include "runtime/core/cuda/stream.h"

#include <cuda.h>  // CUresult and CUdevice only: the driver is reached through the runtime

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/error.h"
#include "runtime/core/log.h"

namespace dp {

int cuda_current_device() {
  int device = 0;
  DP_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

bool cuda_query_done(cudaError_t result, const char* call) {
  if (result == cudaSuccess) return true;
  if (result == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  cuda_fail(call, result, __FILE__, __LINE__);
}

namespace {

// Two driver functions, looked up once through the runtime (cudaGetDriverEntryPoint*), so that
// nothing links libcuda directly and a machine without a driver still runs the CPU path.
struct DriverContextApi {
  CUresult(CUDAAPI* device_get)(CUdevice*, int) = nullptr;
  CUresult(CUDAAPI* primary_ctx_get_state)(CUdevice, unsigned int*, int*) = nullptr;
};

void* driver_symbol(const char* name) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
  const cudaError_t e =
      cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &status);
#else
  const cudaError_t e = cudaGetDriverEntryPoint(name, &fn, cudaEnableDefault, &status);
#endif
  if (e != cudaSuccess || status != cudaDriverEntryPointSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return fn;
}

const DriverContextApi& driver_context_api() {
  static const DriverContextApi api = [] {
    DriverContextApi a;
    a.device_get = reinterpret_cast<decltype(a.device_get)>(driver_symbol("cuDeviceGet"));
    a.primary_ctx_get_state = reinterpret_cast<decltype(a.primary_ctx_get_state)>(
        driver_symbol("cuDevicePrimaryCtxGetState"));
    return a;
  }();
  return api;
}

}  // namespace

bool cuda_primary_context_active(int device) {
  const DriverContextApi& api = driver_context_api();
  if (!api.device_get || !api.primary_ctx_get_state) return true;  // unknown
  CUdevice dev = 0;
  unsigned int flags = 0;
  int active = 0;
  if (api.device_get(&dev, device) != CUDA_SUCCESS) return true;
  if (api.primary_ctx_get_state(dev, &flags, &active) != CUDA_SUCCESS) return true;
  return active != 0;
}

// ---------------------------------------------------------------------------------------
// DeviceGuard

DeviceGuard::DeviceGuard(int device) {
  DP_CUDA_CHECK(cudaGetDevice(&previous_));
  if (device == previous_) return;
  cudaError_t e = cudaSetDevice(device);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      (void)cudaGetLastError();
      count = 0;
    }
    fail(
        "cannot make cuda:{} the current device: {} ({}); this process sees {} GPU(s) (check "
        "CUDA_VISIBLE_DEVICES)",
        device, cudaGetErrorString(e), cudaGetErrorName(e), count);
  }
  changed_ = true;
}

DeviceGuard::~DeviceGuard() {
  if (!changed_) return;
  // Restoring a device nothing in this process has used would create its context (stream.h).
  if (!cuda_primary_context_active(previous_)) return;
  cudaError_t e = cudaSetDevice(previous_);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    // A destructor must not throw; the device is already broken if this fails.
    try {
      log::warn("could not restore cuda:{} as the current device: {}", previous_,
                cudaGetErrorString(e));
    } catch (...) {
    }
  }
}

// ---------------------------------------------------------------------------------------
// CudaStream

std::pair<int, int> CudaStream::priority_range(int device) {
  DeviceGuard guard(device < 0 ? cuda_current_device() : device);
  int least = 0, greatest = 0;
  DP_CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  return {least, greatest};
}

CudaStream::CudaStream(int device, int priority) {
  device_ = device < 0 ? cuda_current_device() : device;
  DeviceGuard guard(device_);
  // CUDA silently clamps an out-of-range priority; a caller asking for one means a
  // different thing than what it would get, so say so instead.
  auto [least, greatest] = priority_range(device_);
  DP_CHECK(priority <= least && priority >= greatest,
           "stream priority {} is outside cuda:{}'s range {} (lowest) .. {} (highest); lower "
           "numbers are higher priorities",
           priority, device_, least, greatest);
  DP_CUDA_CHECK(cudaStreamCreateWithPriority(&stream_, cudaStreamNonBlocking, priority));
  priority_ = priority;
}

CudaStream::~CudaStream() {
  if (!stream_) return;
  // Destroying a stream with work still queued is allowed: CUDA releases it once the work
  // is done. Errors cannot be thrown from here; they are logged.
  try {
    DeviceGuard guard(device_);
    cudaError_t e = cudaStreamDestroy(stream_);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      log::warn("cudaStreamDestroy on cuda:{} failed: {}", device_, cudaGetErrorString(e));
    }
  } catch (const std::exception& ex) {
    try {
      log::warn("destroying a CUDA stream on cuda:{}: {}", device_, ex.what());
    } catch (...) {
    }
  }
}

CudaStream& CudaStream::operator=(CudaStream&& o) noexcept {
  if (this != &o) {
    CudaStream tmp(std::move(o));
    swap(tmp);
  }
  return *this;
}

void CudaStream::swap(CudaStream& o) noexcept {
  std::swap(stream_, o.stream_);
  std::swap(device_, o.device_);
  std::swap(priority_, o.priority_);
}

void CudaStream::synchronize() const {
  DP_CHECK(stream_, "synchronize() on an empty CudaStream");
  DeviceGuard guard(device_);
  DP_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

bool CudaStream::query() const {
  DP_CHECK(stream_, "query() on an empty CudaStream");
  DeviceGuard guard(device_);
  return cuda_query_done(cudaStreamQuery(stream_), "cudaStreamQuery");
}

void CudaStream::wait(const CudaEvent& event) const {
  DP_CHECK(stream_, "wait() on an empty CudaStream");
  event.block(stream_);
}

// ---------------------------------------------------------------------------------------
// CudaEvent

CudaEvent::CudaEvent(bool timing, int device) : timing_(timing) {
  device_ = device < 0 ? cuda_current_device() : device;
  DeviceGuard guard(device_);
  DP_CUDA_CHECK(
      cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

CudaEvent::~CudaEvent() {
  if (!event_) return;
  // Destroying an event whose work is still pending is allowed (CUDA defers the release).
  try {
    DeviceGuard guard(device_);
    cudaError_t e = cudaEventDestroy(event_);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      log::warn("cudaEventDestroy on cuda:{} failed: {}", device_, cudaGetErrorString(e));
    }
  } catch (const std::exception& ex) {
    try {
      log::warn("destroying a CUDA event on cuda:{}: {}", device_, ex.what());
    } catch (...) {
    }
  }
}

CudaEvent& CudaEvent::operator=(CudaEvent&& o) noexcept {
  if (this != &o) {
    CudaEvent tmp(std::move(o));
    swap(tmp);
  }
  return *this;
}

void CudaEvent::swap(CudaEvent& o) noexcept {
  std::swap(event_, o.event_);
  std::swap(device_, o.device_);
  std::swap(timing_, o.timing_);
  std::swap(recorded_, o.recorded_);
}

void CudaEvent::record(const CudaStream& stream) {
  DP_CHECK(stream, "CudaEvent::record on an empty CudaStream");
  DP_CHECK(stream.device() == device_,
           "CudaEvent::record: the event lives on cuda:{} but the stream on cuda:{}; CUDA records "
           "an event only on a stream of its own device",
           device_, stream.device());
  record(stream.get());
}

void CudaEvent::record(cudaStream_t stream) {
  DP_CHECK(event_, "record() on an empty CudaEvent");
  DeviceGuard guard(device_);
#if CUDART_VERSION >= 12080
  if (stream != nullptr) {
    int stream_device = -1;
    DP_CUDA_CHECK(cudaStreamGetDevice(stream, &stream_device));
    DP_CHECK(stream_device == device_,
             "CudaEvent::record: the event lives on cuda:{} but the stream on cuda:{}; CUDA "
             "records an event only on a stream of its own device",
             device_, stream_device);
  }
#endif
  DP_CUDA_CHECK(cudaEventRecord(event_, stream));
  recorded_ = true;
}

void CudaEvent::block(cudaStream_t stream) const {
  DP_CHECK(event_, "block() on an empty CudaEvent");
  // No device guard: cudaStreamWaitEvent accepts an event of another device, and the
  // stream's own device need not be current.
  DP_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0));
}

bool CudaEvent::query() const {
  DP_CHECK(event_, "query() on an empty CudaEvent");
  DeviceGuard guard(device_);
  return cuda_query_done(cudaEventQuery(event_), "cudaEventQuery");
}

void CudaEvent::synchronize() const {
  DP_CHECK(event_, "synchronize() on an empty CudaEvent");
  DeviceGuard guard(device_);
  DP_CUDA_CHECK(cudaEventSynchronize(event_));
}

float CudaEvent::elapsed_ms(const CudaEvent& end) const {
  DP_CHECK(event_ && end.event_, "elapsed_ms() on an empty CudaEvent");
  DP_CHECK(timing_ && end.timing_,
           "elapsed_ms(): both events must be created with timing = true (CUDA cannot time "
           "events created with cudaEventDisableTiming)");
  DP_CHECK(recorded_ && end.recorded_, "elapsed_ms(): the {} event was never recorded",
           recorded_ ? "end" : "start");
  DeviceGuard guard(device_);
  float ms = 0;
  cudaError_t e = cudaEventElapsedTime(&ms, event_, end.event_);
  if (e == cudaErrorNotReady) {
    (void)cudaGetLastError();
    fail(
        "elapsed_ms(): the timed work has not completed yet; synchronize() the end event or "
        "wait for the work first");
  }
  DP_CUDA_CHECK(e);
  return ms;
}

}  // namespace dp
