#include "runtime/dp/gather.h"

#include <algorithm>

#include "runtime/core/error.h"
#include "runtime/ops/device_ops.h"
#include "runtime/ops/tensor_ops.h"

namespace dp {

namespace {

// The shared-memory all-reduce's reduce_slice, with replica 0's gradient as the accumulator.
// Two replicas: one pass, x = (x + y) * s, exactly as there.
void reduce_host(float* g0, const std::vector<const float*>& others, size_t n, float scale) {
  if (others.size() == 1) {
    const float* __restrict y = others[0];
    for (size_t j = 0; j < n; ++j) g0[j] = (g0[j] + y[j]) * scale;
    return;
  }
  for (const float* y : others)
    for (size_t j = 0; j < n; ++j) g0[j] += y[j];
  for (size_t j = 0; j < n; ++j) g0[j] *= scale;
}

}  // namespace

GradientGather::GradientGather(std::vector<std::vector<Parameter*>> replicas)
    : replicas_(std::move(replicas)) {
  DP_CHECK(!replicas_.empty(), "gradient gather: no replicas");
  const std::vector<Parameter*>& first = replicas_[0];
  size_t largest = 0;
  for (size_t r = 1; r < replicas_.size(); ++r) {
    DP_CHECK(replicas_[r].size() == first.size(),
             "gradient gather: replica {} has {} parameters, replica 0 {}", r, replicas_[r].size(),
             first.size());
    for (size_t i = 0; i < first.size(); ++i) {
      const Tensor& a = first[i]->grad;
      const Tensor& b = replicas_[r][i]->grad;
      DP_CHECK(a.dtype() == DType::f32 && b.dtype() == DType::f32 && a.shape() == b.shape(),
               "gradient gather: replica {}'s gradient of {} is {}, replica 0's is {}", r,
               first[i]->name, b.str(), a.str());
      bytes_ += b.nbytes();
      if (!(a.device() == b.device())) largest = std::max(largest, b.numel());
    }
  }
  if (largest > 0)
    staging_ = Tensor::zeros({int64_t(largest)}, DType::f32, first[0]->grad.device());
}

void GradientGather::gather() {
  const size_t n = replicas_.size();
  if (n == 1) return;
  const float scale = 1.0f / static_cast<float>(n);
  const std::vector<Parameter*>& first = replicas_[0];
  std::vector<const float*>& others = others_;
  others.resize(n - 1);
  for (size_t i = 0; i < first.size(); ++i) {
    Tensor& g0 = first[i]->grad;
    if (!g0.is_cuda()) {
      for (size_t r = 1; r < n; ++r) others[r - 1] = replicas_[r][i]->grad.f32();
      reduce_host(g0.f32(), others, g0.numel(), scale);
      continue;
    }
    // GPU: the same sum, one addition per replica on replica 0's device, then the scale.
    for (size_t r = 1; r < n; ++r) {
      const Tensor& g = replicas_[r][i]->grad;
      if (g.device() == g0.device()) {
        ops::add_(g0, g);
      } else {
        Tensor part = staging_.view(0, g0.shape());
        part.copy_(g);  // ordered after g's device's backward, queued on g0's device
        ops::add_(g0, part);
      }
    }
    gpu::scale(g0.device().index, g0.numel(), scale, g0.f32());
  }
}

float mean_over_replicas(const std::vector<float>& values) {
  DP_CHECK(!values.empty(), "mean over replicas: no values");
  if (values.size() == 1) return values[0];
  const float scale = 1.0f / static_cast<float>(values.size());
  float acc = values[0] + values[1];
  for (size_t r = 2; r < values.size(); ++r) acc += values[r];
  return acc * scale;
}

}  // namespace dp
