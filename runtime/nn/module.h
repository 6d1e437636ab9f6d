#pragma once
// A layer with forward and backward side by side. Outputs are buffers the layer owns and
// reuses from step to step (reallocated only when the batch shape changes), so the
// steady-state training step allocates nothing.
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/nn/parameter.h"

namespace dp {

class Module {
 public:
  explicit Module(std::string name) : name_(std::move(name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Returns the output; the reference stays valid until the next forward().
  virtual const Tensor& forward(const Tensor& x) = 0;
  // Given dL/d(output) of the last forward, accumulates dL/d(param) into each parameter's
  // grad, calls grad_ready() on each as soon as it is written, and returns dL/d(input)
  // (an undefined tensor when needs_input_grad() is false: the first layer skips it).
  virtual const Tensor& backward(const Tensor& grad_output) = 0;

  // Parameters in registration order.
  virtual std::vector<Parameter*> parameters() { return {}; }

  // Moves every parameter (value and gradient) to `device`. Activations and workspaces
  // follow the input: a layer allocates them on the device its input is on.
  virtual void to(Device device) {
    for (Parameter* p : parameters()) {
      p->value = p->value.to(device);
      p->grad = p->grad.to(device);
    }
  }

  // The dtype a layer computes its GEMMs and activations in: float32, or bfloat16 for mixed
  // precision (--precision bf16: parameters, their gradients and the optimizer stay float32).
  // Containers pass it on to their children.
  virtual void set_compute_dtype(DType dtype) {
    DP_CHECK(dtype == DType::f32 || dtype == DType::bf16,
             "{}: the compute dtype must be float32 or bfloat16, got {}", name_, dtype_name(dtype));
    compute_dtype_ = dtype;
  }
  DType compute_dtype() const { return compute_dtype_; }

  const std::string& name() const { return name_; }
  void set_needs_input_grad(bool v) { needs_input_grad_ = v; }
  bool needs_input_grad() const { return needs_input_grad_; }

 protected:
  std::string name_;
  bool needs_input_grad_ = true;
  DType compute_dtype_ = DType::f32;
};

}  // namespace dp
