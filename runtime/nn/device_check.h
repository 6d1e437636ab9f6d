#pragma once
// Device checks shared by the layers: a layer computes on the device its input is on, so
// its parameters and its upstream gradient must be there too. A mismatch would otherwise
// hand a host pointer to a kernel (or a device pointer to the CPU BLAS): a crash or silent
// garbage instead of an error naming the layer.
#include <string>

#include "runtime/core/tensor.h"
#include "runtime/nn/parameter.h"

namespace dp {

inline void check_param_device(const std::string& layer, const Tensor& x, const Parameter& p) {
  DP_CHECK(p.value.device() == x.device() && p.grad.device() == x.device(),
           "{}: the input is on {} but parameter '{}' is on {} (its gradient on {}); move the "
           "model to the input's device with Module::to()",
           layer, x.device().str(), p.name, p.value.device().str(), p.grad.device().str());
}

inline void check_grad_device(const std::string& layer, const Tensor& input,
                              const Tensor& grad_output) {
  DP_CHECK(grad_output.device() == input.device(),
           "{}: grad_output is on {} but the forward input was on {}", layer,
           grad_output.device().str(), input.device().str());
}

}  // namespace dp
