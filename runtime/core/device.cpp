#include "runtime/core/device.h"

#include <limits>

#include <fmt/format.h>

#include "runtime/core/error.h"

#ifdef DPRUN_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace dp {

bool cuda_compiled() {
#ifdef DPRUN_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef DPRUN_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error: it means no GPU here
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

GpuInfo cuda_device_info(int index) {
  GpuInfo info;
  info.index = index;
#ifdef DPRUN_HAVE_CUDA
  cudaDeviceProp prop{};
  cudaError_t e = cudaGetDeviceProperties(&prop, index);
  DP_CHECK(e == cudaSuccess, "cudaGetDeviceProperties(cuda:{}) failed: {}", index,
           cudaGetErrorString(e));
  info.name = prop.name;
  info.total_memory = prop.totalGlobalMem;
  // The physical identity: the same GPU has the same UUID in every process, whatever index
  // CUDA_VISIBLE_DEVICES gives it there.
  std::string hex;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) hex += '-';
    hex += fmt::format("{:02x}", static_cast<unsigned char>(prop.uuid.bytes[i]));
  }
  info.uuid = "GPU-" + hex;
#endif
  return info;
}

std::string cuda_pci_bus_id(int index) {
#ifdef DPRUN_HAVE_CUDA
  char id[32] = {};  // "dddd:bb:dd.f" with a 4- or 8-digit domain, and the terminator
  const cudaError_t e = cudaDeviceGetPCIBusId(id, sizeof id, index);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail("cudaDeviceGetPCIBusId(cuda:{}) failed: {}", index, cudaGetErrorString(e));
  }
  return id;
#else
  (void)index;
  return "";
#endif
}

#ifndef DPRUN_HAVE_CUDA
namespace {
[[noreturn]] void no_cuda() {
  fail("a CUDA tensor was requested, but this dprun was built without CUDA");
}
}  // namespace
void* cuda_alloc_zeroed(size_t, int, std::shared_ptr<void>*) {
  no_cuda();
}
void cuda_copy(void*, Device, const void*, Device, size_t) {
  no_cuda();
}
void cuda_zero(void*, int, size_t) {
  no_cuda();
}
void cuda_sync(int) {
  no_cuda();
}
void* cuda_host_alloc_zeroed(size_t, std::shared_ptr<void>*) {
  no_cuda();
}
void cuda_set_current_device(int) {
  no_cuda();
}
#endif

DeviceSpec parse_device_spec(const std::string& spec) {
  DeviceSpec d;
  if (spec == "auto") return d;
  if (spec == "cpu") {
    d.kind = DeviceSpec::Kind::cpu;
    return d;
  }
  if (spec == "cuda" || spec.rfind("cuda:", 0) == 0) {
    d.kind = DeviceSpec::Kind::cuda;
    if (spec == "cuda") return d;
    // Digits only, not std::stoi: it skips spaces, takes a sign, and stops at the first
    // non-digit, so cuda:1abc was cuda:1.
    const std::string digits = spec.substr(5);
    DP_CHECK(digits.empty() || digits[0] != '-',
             "--device {}: the device index must not be negative (cuda:0 is the first GPU)", spec);
    DP_CHECK(!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos,
             "--device {}: expected cuda:N with a device index N of digits only (cuda:0, cuda:1, "
             "...)",
             spec);
    long long index = 0;
    for (char c : digits) {
      index = index * 10 + (c - '0');
      DP_CHECK(index <= std::numeric_limits<int>::max(),
               "--device {}: device index {} is out of range", spec, digits);
    }
    d.index = static_cast<int>(index);
    return d;
  }
  fail("--device {}: unknown device (expected auto, cpu, cuda or cuda:N)", spec);
}

Device resolve_device(const std::string& spec, int local_rank) {
  const DeviceSpec d = parse_device_spec(spec);
  if (d.kind == DeviceSpec::Kind::cpu) return Device::cpu();
  if (d.kind == DeviceSpec::Kind::auto_pick) {
    int n = cuda_device_count();
    return n > 0 ? Device::cuda(local_rank % n) : Device::cpu();
  }
  int n = cuda_device_count();
  DP_CHECK(cuda_compiled(), "--device {}: this dprun was built without CUDA", spec);
  DP_CHECK(n > 0,
           "--device {}: no CUDA GPU is visible on this node (no driver or CUDA_VISIBLE_DEVICES "
           "empty)",
           spec);
  const int idx = d.index >= 0 ? d.index : local_rank;
  DP_CHECK(idx < n, "--device {}: device index {} out of range, this node has {} GPU(s)", spec, idx,
           n);
  return Device::cuda(idx);
}

}  // namespace dp
