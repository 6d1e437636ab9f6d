#include "runtime/train/optimizer_setup.h"

#include <utility>

#include "runtime/nn/parameter_arena.h"
#include "runtime/optim/adamw.h"
#include "runtime/optim/sgd.h"

namespace dp {

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& cfg, std::vector<Parameter*> params,
                                          ParameterArena* arena) {
  if (cfg.optimizer == "sgd") {
    return std::make_unique<SGD>(std::move(params), cfg.momentum, 0.0f, cfg.weight_decay,
                                 cfg.nesterov, arena);
  }
  return std::make_unique<AdamW>(std::move(params), cfg.beta1, cfg.beta2, cfg.adam_eps,
                                 cfg.weight_decay, arena);
}

std::unique_ptr<LrSchedule> make_schedule(const TrainConfig& cfg, uint64_t steps_per_epoch) {
  uint64_t total = steps_per_epoch * cfg.epochs;
  if (cfg.max_steps > 0 && (total == 0 || cfg.max_steps < total)) total = cfg.max_steps;
  return std::make_unique<LrSchedule>(
      cfg.lr_schedule == "cosine"
          ? LrSchedule::cosine(cfg.lr, static_cast<int64_t>(cfg.warmup_steps),
                               static_cast<int64_t>(total), cfg.min_lr)
          : LrSchedule::constant(cfg.lr, static_cast<int64_t>(cfg.warmup_steps)));
}

}  // namespace dp
