#include "runtime/dp/scatter.h"

#include <cstring>

#include "runtime/core/error.h"

namespace dp {

size_t scatter_chunk(const Tensor& global, size_t replicas, size_t replica, Tensor& out,
                     Device device) {
  DP_CHECK(global.defined() && global.ndim() >= 1, "scatter: the global batch is {}",
           global.defined() ? global.str() : std::string("undefined"));
  DP_CHECK(replica < replicas, "scatter: replica {} of {}", replica, replicas);
  const auto rows = static_cast<size_t>(global.dim(0));
  DP_CHECK(rows % replicas == 0, "scatter: {} rows do not split into {} equal chunks", rows,
           replicas);
  const size_t chunk = rows / replicas;
  bool fits = out.defined() && out.dtype() == global.dtype() && out.device() == device &&
              out.ndim() == global.ndim() && static_cast<size_t>(out.dim(0)) == chunk;
  for (size_t d = 1; fits && d < global.ndim(); ++d) fits = out.dim(d) == global.dim(d);
  if (!fits) {
    Shape shape = global.shape();
    shape[0] = static_cast<int64_t>(chunk);
    out = Tensor::zeros(shape, global.dtype(), device);
  }
  const size_t bytes = out.nbytes();
  if (bytes == 0) return 0;
  const char* src = static_cast<const char*>(global.raw()) + replica * bytes;
  if (device.is_cuda() || global.is_cuda())
    cuda_copy(out.raw(), device, src, global.device(), bytes);
  else
    std::memcpy(out.raw(), src, bytes);
  return bytes;
}

}  // namespace dp
