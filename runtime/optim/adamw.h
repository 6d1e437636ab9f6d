#pragma once
#include <vector>

#include "runtime/optim/optimizer.h"

namespace dp {

// torch.optim.AdamW (amsgrad off), update for update, at step t = 1, 2, ...:
//   p *= 1 - lr * weight_decay                      (decoupled decay)
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
class AdamW : public Optimizer {
 public:
  AdamW(std::vector<Parameter*> params, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f,
        float weight_decay = 0.01f, ParameterArena* arena = nullptr);

  void step(float lr) override;
  std::string describe() const override;
  const char* kind() const override { return "adamw"; }
  std::vector<std::pair<std::string, Tensor*>> state_tensors() override;
  // Not with eps == 0: the padding would compute 0 / (0 + 0).
  bool fused() const override { return eps_ > 0.0f && Optimizer::fused(); }

 private:
  float beta1_;
  float beta2_;
  float eps_;
  float weight_decay_;
  std::vector<Tensor> exp_avg_;     // m, one per parameter (views of exp_avg_block_ with an arena)
  std::vector<Tensor> exp_avg_sq_;  // v, likewise
  Tensor exp_avg_block_;
  Tensor exp_avg_sq_block_;
  void update(size_t n, float lr, bool decay, double bc1, double bc2, float* param,
              const float* grad, float* m, float* v);
};

}  // namespace dp
