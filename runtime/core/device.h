#pragma once
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace dp {

struct Device {
  enum class Kind { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;

  static Device cpu() { return {}; }
  static Device cuda(int i) { return {Kind::cuda, i}; }
  bool is_cpu() const { return kind == Kind::cpu; }
  bool is_cuda() const { return kind == Kind::cuda; }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
};

// What a rank can see of the GPUs. On a machine without a driver cudaGetDeviceCount
// fails ("driver version is insufficient"); that is zero GPUs, not an error.
struct GpuInfo {
  int index = 0;
  std::string name;
  size_t total_memory = 0;
  std::string uuid;  // "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi -L shows it
};
bool cuda_compiled();
int cuda_device_count();
GpuInfo cuda_device_info(int index);
// The GPU's PCI address as CUDA writes it ("0000:3B:00.0"); "" in a build without CUDA.
std::string cuda_pci_bus_id(int index);

// Device memory for tensors (runtime/core/cuda/device_memory.cpp; without CUDA each one
// throws a dp::Error saying this build has no CUDA). All of them work on the device's
// compute stream (runtime/core/cuda/context.h), so they are ordered after the kernels
// queued there; a copy into host memory waits until the bytes have arrived.
// Zero-initialised device allocation; `owner` frees it (to the caching allocator).
void* cuda_alloc_zeroed(size_t bytes, int device, std::shared_ptr<void>* owner);
void cuda_copy(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void cuda_zero(void* p, int device, size_t bytes);
// Waits until everything queued on the device's compute stream so far has run.
void cuda_sync(int device);
// Zero-initialised page-locked ("pinned") host memory, portable to every device: copies from
// it to a device are truly asynchronous (and faster), so the source must stay unchanged
// until the stream has passed the copy. `owner` frees it.
void* cuda_host_alloc_zeroed(size_t bytes, std::shared_ptr<void>* owner);
// Makes cuda:`device` the calling thread's current device (torch.cuda.set_device). A process
// that trains on one GPU calls it before its first CUDA call: a call that needs a context on a
// thread that has none (cudaHostAlloc of the pinned batches, for one) creates it on cuda:0, so
// every rank of a node would hold a context on GPU 0.
void cuda_set_current_device(int device);

// --device as written, before it meets a node's GPUs: "auto" | "cpu" | "cuda" | "cuda:N", N a
// local device index in decimal digits only (no sign, space or suffix). Throws a dp::Error
// naming --device otherwise. Pure: its rules are tested on machines without CUDA.
struct DeviceSpec {
  enum class Kind { auto_pick, cpu, cuda };
  Kind kind = Kind::auto_pick;
  int index = -1;  // cuda:N's N; -1 for "cuda" (the local rank's GPU)
};
DeviceSpec parse_device_spec(const std::string& spec);

// Parses "auto" | "cpu" | "cuda" | "cuda:N" (N is the local device index).
// "auto" picks cuda:<local_rank % count> when GPUs are visible, else cpu.
Device resolve_device(const std::string& spec, int local_rank);

}  // namespace dp
