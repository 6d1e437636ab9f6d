#include "runtime/optim/clip_grad.h"

#include <cmath>

#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/device_ops.h"

namespace dp {

namespace {

// The arena's gradient block when the one-pass paths apply to `params`, else null.
const Tensor* arena_grads(const std::vector<Parameter*>& params, const ParameterArena* arena) {
  if (arena == nullptr || !arena->covers(params) || !arena->grads_intact()) return nullptr;
  return &arena->grads();
}

}  // namespace

double grad_norm(const std::vector<Parameter*>& params, const ParameterArena* arena) {
  for (const Parameter* p : params) DP_CHECK(p != nullptr, "grad_norm: null parameter");
  const Device device = params.empty() ? Device::cpu() : params.front()->grad.device();
  for (const Parameter* p : params)
    DP_CHECK(p->grad.device() == device,
             "grad_norm: gradient of '{}' is on {} but that of '{}' is on {}; all "
             "gradients must be on one device",
             p->name, p->grad.device().str(), params.front()->name, device.str());
  double sq = 0;
  if (const Tensor* block = arena_grads(params, arena)) {
    const float* x = block->f32();
    const size_t n = block->numel();
    sq = device.is_cuda() ? gpu::sum_squares(device.index, 1, &x, &n) : sum_squares(n, x);
  } else if (device.is_cuda()) {
    // One device-side accumulation and one read back (a sync): the host needs the total to
    // decide whether to scale.
    std::vector<const float*> xs;
    std::vector<size_t> ns;
    for (const Parameter* p : params) {
      xs.push_back(p->grad.f32());
      ns.push_back(p->grad.numel());
    }
    sq = gpu::sum_squares(device.index, xs.size(), xs.data(), ns.data());
  } else {
    for (const Parameter* p : params) sq += sum_squares(p->grad.numel(), p->grad.f32());
  }
  return std::sqrt(sq);
}

std::string first_nonfinite_grad(const std::vector<Parameter*>& params, float* value) {
  for (const Parameter* p : params) {
    const std::vector<float> g = p->grad.to_vector();
    for (float v : g) {
      if (std::isfinite(v)) continue;
      if (value) *value = v;
      return p->name;
    }
  }
  return "";
}

double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm,
                      ParameterArena* arena) {
  DP_CHECK(std::isfinite(max_norm) && max_norm > 0.0,
           "clip_grad_norm: max_norm {} must be finite and > 0", max_norm);
  const double total = grad_norm(params, arena);
  const Device device = params.empty() ? Device::cpu() : params.front()->grad.device();
  // torch multiplies by min(coef, 1) unconditionally; skipping coef >= 1 gives the same
  // result without a pass over memory. A non-finite total leaves the gradients as they are
  // (torch would turn them into NaN or 0): the caller sees the norm and can skip the step.
  const double coef = max_norm / (total + 1e-6);
  if (std::isfinite(total) && coef < 1.0) {
    const float c = static_cast<float>(coef);
    if (arena_grads(params, arena) != nullptr) {
      Tensor& block = arena->grads();
      if (device.is_cuda())
        gpu::scale(device.index, block.numel(), c, block.f32());
      else
        scale(block.numel(), c, block.f32());
      return total;
    }
    for (Parameter* p : params) {
      if (device.is_cuda())
        gpu::scale(device.index, p->grad.numel(), c, p->grad.f32());
      else
        scale(p->grad.numel(), c, p->grad.f32());
    }
  }
  return total;
}

}  // namespace dp
