#pragma once
// A layer or a composite of layers with forward and backward side by side. Outputs are
// buffers the module owns and reuses from step to step (reallocated only when the batch
// shape changes), and shapes are stored inline (runtime/core/shape.h), so a steady-state
// forward, backward and optimizer step makes no heap allocation at all
// (tests/alloc/test_step_allocations.cpp counts them). Under DDP each collective still
// allocates three small blocks (its Work, its description, its queued task; c10d allocates a
// Work per collective too): an LD_PRELOAD malloc counter on rank 0's training thread counts
// 6 a step for the mlp and gpt-tiny (2 collectives) and 12 for the cnn (4); 0 in --mode dp.
//
// A module registers what it owns: its parameters (trained), its buffers (state that is
// not trained) and its child modules (which it owns as members or unique_ptrs and calls in
// whatever graph it likes: a chain, a residual block, a tied output head). parameters(),
// buffers(), train(), to() and set_compute_dtype() then walk the whole tree, so a
// composite writes only its forward and backward.
#include <memory>
#include <string>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/nn/backward_scratch.h"
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

  // Every parameter of this module and its children: the module's own first (in
  // registration order), then each child's the same way, depth first, as PyTorch's
  // named_parameters() lists them; each ONCE: a parameter registered by several modules
  // (tied weights) is listed where it is first met. The Reducer, the optimizer and the dump
  // use this list. Throws a dp::Error when two parameters or buffers share a name.
  std::vector<Parameter*> parameters();
  // The same for buffers.
  std::vector<Buffer*> buffers();

  // Training (true, the default) or evaluation mode, for this module and its children:
  // in evaluation BatchNorm uses its running statistics and writes no buffer. Evaluation
  // never calls backward.
  virtual void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }

  // Moves every parameter (value and gradient) and buffer of the tree to `device`.
  // Activations and workspaces follow the input: a layer allocates them on the device its
  // input is on.
  virtual void to(Device device);

  // The dtype a layer computes its GEMMs and activations in: float32, or bfloat16 for mixed
  // precision (--precision bf16: parameters, their gradients and the optimizer stay float32).
  // Passed on to the children.
  virtual void set_compute_dtype(DType dtype);
  DType compute_dtype() const { return compute_dtype_; }

  const std::string& name() const { return name_; }
  void set_needs_input_grad(bool v) { needs_input_grad_ = v; }
  bool needs_input_grad() const { return needs_input_grad_; }
  const std::vector<Module*>& children() const { return children_; }

  // Makes `other` use this module's backward scratch (backward_scratch.h): each BackwardScratch in
  // this tree and the one in the same place of `other`'s tree become one. `other` must be built the
  // same way (modules of the same types in the same tree; sizes may differ, at the cost of
  // reallocating when they alternate), else a dp::Error names both. Sound only when the two
  // backward calls never overlap and each reads all of its grad_output before it writes the
  // gradient it returns (TransformerBlock does): consecutive blocks of a chain can then share,
  // one's returned gradient being the next one's grad_output.
  void share_backward_scratch(Module& other);

 protected:
  // Registration, from constructors. The registered objects must live as long as the
  // module (members of it or of a child).
  Parameter& register_parameter(Parameter& p);
  Buffer& register_buffer(Buffer& b);
  template <typename M>
  M& register_module(M& m) {
    children_.push_back(&m);
    return m;
  }

  std::string name_;
  bool needs_input_grad_ = true;
  bool training_ = true;
  DType compute_dtype_ = DType::f32;

 private:
  friend class BackwardScratch;  // registers itself in own_scratch_
  void collect(std::vector<Parameter*>& ps, std::vector<Buffer*>& bs);
  // This module or the first descendant that differs from its place in `other`; null if none.
  const Module* first_difference(const Module& other) const;
  void share_scratch_with(Module& other);
  std::vector<Parameter*> own_params_;
  std::vector<Buffer*> own_buffers_;
  std::vector<BackwardScratch*> own_scratch_;
  std::vector<Module*> children_;
};

}  // namespace dp
