#pragma once
// One contiguous float32 block for every parameter's value and one for every gradient, each
// Parameter's `value` and `grad` being a view into them (llm.c's parameter arena, DESIGN.md
// "Models and the Module API"). What it buys:
//   - the optimizer updates the whole model in ONE pass (one loop, one kernel launch) instead
//     of one per parameter; its state (momentum, AdamW's moments) is laid out the same way;
//   - zero_grad is one memset, the gradient norm one pass;
//   - under DDP each bucket of the Reducer is a contiguous range of the gradient block, so the
//     block itself is what gets all-reduced (PyTorch's gradient_as_bucket_view);
//   - a ZeRO-1 shard of the optimizer state is a contiguous slice [begin, end) of the blocks.
//
// Layout: parameters in the order given (Module::parameters(): registration order, each
// once, so a tied weight appears once), each starting on a kAlign-element (64-byte) boundary
// so that vectorised loops, kernels and future shard boundaries line up. The padding between
// parameters is zero and stays zero: no layer writes it, and every update maps 0 to 0 (see
// the optimizers); norms, dumps and checkpoints go through the per-parameter views or skip it.
//
// Layers hold Parameter& and read p.value / p.grad at every call, so rebinding the tensors
// underneath them is invisible to the model. Anyone may still re-point a parameter's tensor
// elsewhere (the Reducer does when a bucket is not a contiguous range of the arena):
// grads_intact() / values_intact() tell, and the fused paths then fall back to per-parameter.
#include <cstddef>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/nn/parameter.h"

namespace dp {

class ParameterArena {
 public:
  // Elements each parameter's view is aligned to (64 bytes of float32).
  static constexpr size_t kAlign = 16;

  // Allocates both blocks on the parameters' device (all must be on one, float32, each
  // listed once), copies every current value and gradient in, and makes each parameter's
  // value and grad a view of its range. Call after the model is on its device and before
  // anything that keeps a parameter's tensor (optimizer state, Reducer) is built.
  explicit ParameterArena(std::vector<Parameter*> params);
  ParameterArena(const ParameterArena&) = delete;
  ParameterArena& operator=(const ParameterArena&) = delete;

  const std::vector<Parameter*>& params() const { return params_; }
  // Element offset of parameter i's view in both blocks (a multiple of kAlign).
  size_t offset(size_t i) const { return offsets_.at(i); }
  // Elements in each block, padding included / the parameters' own elements.
  size_t numel() const { return numel_; }
  size_t used() const { return used_; }
  Device device() const { return values_.device(); }
  Tensor& values() { return values_; }
  const Tensor& values() const { return values_; }
  Tensor& grads() { return grads_; }
  const Tensor& grads() const { return grads_; }

  // A block of numel() zeros laid out like this arena on its device (an optimizer's state)
  // and the per-parameter views into it, in params() order.
  Tensor zeros_like_block() const;
  std::vector<Tensor> views_of(const Tensor& block) const;

  // Makes `block` (numel() float32 on device(), e.g. from ProcessGroup::allocate()) the
  // gradient block: every parameter's grad becomes its view there. Copies nothing: the
  // caller zeroes or fills it.
  void rebind_grads(Tensor block);

  // Whether every parameter's value / grad is still this arena's view of it.
  bool values_intact() const;
  bool grads_intact() const;
  bool intact() const { return values_intact() && grads_intact(); }
  // Whether `params` is exactly this arena's list, in the same order (who may use it fused).
  bool covers(const std::vector<Parameter*>& params) const { return params == params_; }

 private:
  bool is_view(const Tensor& t, const Tensor& block, size_t i) const;

  std::vector<Parameter*> params_;
  std::vector<size_t> offsets_;
  size_t numel_ = 0;
  size_t used_ = 0;
  Tensor values_;  // float32 [numel_]
  Tensor grads_;   // float32 [numel_]
};

}  // namespace dp
