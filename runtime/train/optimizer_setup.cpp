#include "runtime/train/optimizer_setup.h"

#include <utility>

#include "runtime/nn/parameter_arena.h"
#include "runtime/optim/adamw.h"
#include "runtime/optim/sgd.h"

namespace dp {

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& cfg, std::vector<Parameter*> params,
                                          ParameterArena* arena) {
  std::unique_ptr<Optimizer> opt;
  if (cfg.optimizer == "sgd")
    opt = std::make_unique<SGD>(std::move(params), cfg.momentum, 0.0f, cfg.weight_decay,
                                cfg.nesterov, arena);
  else
    opt = std::make_unique<AdamW>(std::move(params), cfg.beta1, cfg.beta2, cfg.adam_eps,
                                  cfg.weight_decay, arena);
  if (!cfg.weight_decay_1d) {
    // nanoGPT's rule (p.dim() >= 2), which is llm.c's list for GPT-2: matmul weights and
    // embeddings decay; biases and LayerNorm/BatchNorm weights do not.
    std::vector<bool> decays;
    for (const Parameter* p : opt->params()) decays.push_back(p->value.ndim() >= 2);
    opt->set_weight_decay_mask(std::move(decays));
  }
  return opt;
}

uint64_t run_total_steps(const TrainConfig& cfg, uint64_t steps_per_epoch) {
  const uint64_t all = steps_per_epoch * cfg.epochs;
  return cfg.max_steps > 0 && (all == 0 || cfg.max_steps < all) ? cfg.max_steps : all;
}

std::unique_ptr<LrSchedule> make_schedule(const TrainConfig& cfg, uint64_t steps_per_epoch) {
  const uint64_t total = run_total_steps(cfg, steps_per_epoch);
  return std::make_unique<LrSchedule>(
      cfg.lr_schedule == "cosine"
          ? LrSchedule::cosine(cfg.lr, static_cast<int64_t>(cfg.warmup_steps),
                               static_cast<int64_t>(total), cfg.min_lr)
          : LrSchedule::constant(cfg.lr, static_cast<int64_t>(cfg.warmup_steps)));
}

}  // namespace dp
