#include "runtime/train/optimizer_setup.h"

#include <utility>

#include <fmt/format.h>

#include "runtime/core/error.h"
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
  // --epochs 1844674407370955162 x 10 steps wrapped around to 4 steps. Steps are counted in
  // int64_t by the schedule and the checkpoints: a product past that is refused by name.
  constexpr uint64_t kMax = kMaxRunSteps;
  DP_CHECK(cfg.max_steps <= kMax, "--steps must be at most {} (got {})", kMax, cfg.max_steps);
  if (cfg.epochs == 0) return cfg.max_steps;  // --steps alone (validate: one of them is set)
  DP_CHECK(steps_per_epoch > 0, "internal: an epoch of 0 steps");
  if (cfg.epochs > kMax / steps_per_epoch) {
    DP_CHECK(cfg.max_steps > 0,
             "--epochs {} x {} steps per epoch is more than {} steps, the most a run can count "
             "(lower --epochs, or give --steps)",
             cfg.epochs, steps_per_epoch, kMax);
    return cfg.max_steps;  // --steps comes first
  }
  const uint64_t all = steps_per_epoch * cfg.epochs;
  return cfg.max_steps > 0 && cfg.max_steps < all ? cfg.max_steps : all;
}

std::unique_ptr<LrSchedule> make_schedule(const TrainConfig& cfg, uint64_t steps_per_epoch) {
  const uint64_t total = run_total_steps(cfg, steps_per_epoch);
  DP_CHECK(cfg.warmup_steps <= kMaxRunSteps, "--warmup-steps must be at most {} (got {})",
           kMaxRunSteps, cfg.warmup_steps);
  // LrSchedule's own check names its parameters, not the options that set them.
  DP_CHECK(cfg.lr_schedule != "cosine" || cfg.warmup_steps <= total,
           "--warmup-steps {} is longer than the run's {} steps ({}): the cosine schedule warms "
           "up within the run (fewer --warmup-steps, or --lr-schedule constant)",
           cfg.warmup_steps, total,
           cfg.max_steps == total
               ? fmt::format("--steps {}", cfg.max_steps)
               : fmt::format("--epochs {} x {} steps per epoch", cfg.epochs, steps_per_epoch));
  return std::make_unique<LrSchedule>(
      cfg.lr_schedule == "cosine"
          ? LrSchedule::cosine(cfg.lr, static_cast<int64_t>(cfg.warmup_steps),
                               static_cast<int64_t>(total), cfg.min_lr)
          : LrSchedule::constant(cfg.lr, static_cast<int64_t>(cfg.warmup_steps)));
}

}  // namespace dp
