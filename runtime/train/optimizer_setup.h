#pragma once
// The optimizer and learning-rate schedule a TrainConfig asks for, built in one place so that
// DDP's Trainer and the DataParallel baseline train with the same update rule.
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/nn/parameter.h"
#include "runtime/optim/lr_schedule.h"
#include "runtime/optim/optimizer.h"
#include "runtime/train/train_config.h"

namespace dp {

class ParameterArena;

// --optimizer sgd|adamw with its hyper-parameters; `arena` (may be null) is where the
// parameters' values and gradients live contiguously, for the fused update.
std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& cfg, std::vector<Parameter*> params,
                                          ParameterArena* arena);

// Where a run ends: epochs x steps_per_epoch, cut to --max-steps when that is shorter (or
// --max-steps alone without --epochs). The schedule, both trainers' loops and the resume
// check all use this one count.
uint64_t run_total_steps(const TrainConfig& cfg, uint64_t steps_per_epoch);

// --lr-schedule constant|cosine over run_total_steps().
std::unique_ptr<LrSchedule> make_schedule(const TrainConfig& cfg, uint64_t steps_per_epoch);

}  // namespace dp
