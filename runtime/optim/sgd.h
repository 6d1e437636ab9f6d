#pragma once
#include <vector>

#include "runtime/optim/optimizer.h"

namespace dp {

// torch.optim.SGD, update for update:
//   g = grad + weight_decay * p
//   if momentum: buf = g on the first step, else momentum * buf + (1 - dampening) * g
//                g = g + momentum * buf (nesterov) or buf
//   p -= lr * g
class SGD : public Optimizer {
 public:
  SGD(std::vector<Parameter*> params, float momentum = 0.0f, float dampening = 0.0f,
      float weight_decay = 0.0f, bool nesterov = false, ParameterArena* arena = nullptr);

  void step(float lr) override;
  std::string describe() const override;
  const char* kind() const override { return "sgd"; }
  std::vector<std::pair<std::string, Tensor*>> state_tensors() override;

 private:
  float momentum_;
  float dampening_;
  float weight_decay_;
  bool nesterov_;
  // One per parameter (views of momentum_block_ with an arena); empty when momentum == 0.
  std::vector<Tensor> momentum_buf_;
  Tensor momentum_block_;
  // The update over n elements at the given pointers (CPU loop or one CUDA launch).
  void update(size_t n, float lr, bool decay, bool first, float* param, const float* grad,
              float* buf);
};

}  // namespace dp
