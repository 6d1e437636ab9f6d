#include "runtime/optim/clip_grad.h"

#include <cmath>

#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/device_ops.h"

namespace dp {

double grad_norm(const std::vector<Parameter*>& params) {
  for (const Parameter* p : params) DP_CHECK(p != nullptr, "grad_norm: null parameter");
  const Device device = params.empty() ? Device::cpu() : params.front()->grad.device();
  for (const Parameter* p : params)
    DP_CHECK(p->grad.device() == device,
             "grad_norm: gradient of '{}' is on {} but that of '{}' is on {}; all "
             "gradients must be on one device",
             p->name, p->grad.device().str(), params.front()->name, device.str());
  double sq = 0;
  if (device.is_cuda()) {
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

double clip_grad_norm(const std::vector<Parameter*>& params, double max_norm) {
  DP_CHECK(std::isfinite(max_norm) && max_norm > 0.0,
           "clip_grad_norm: max_norm {} must be finite and > 0", max_norm);
  const double total = grad_norm(params);
  const Device device = params.empty() ? Device::cpu() : params.front()->grad.device();
  // torch multiplies by min(coef, 1) unconditionally; skipping coef >= 1 gives the same
  // result without a pass over memory. A non-finite total leaves the gradients as they are
  // (torch would turn them into NaN or 0): the caller sees the norm and can skip the step.
  const double coef = max_norm / (total + 1e-6);
  if (std::isfinite(total) && coef < 1.0) {
    const float c = static_cast<float>(coef);
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
