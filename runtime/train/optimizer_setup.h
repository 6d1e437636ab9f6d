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

// The most steps a run may count: the schedule and the checkpoints hold steps as int64_t.
constexpr uint64_t kMaxRunSteps = uint64_t(INT64_MAX);

// Where a run ends: epochs x steps_per_epoch, cut to --steps when that is shorter (or --steps
// alone with epochs 0: no epoch limit). The schedule, both trainers' loops and the resume
// check all use this one count. A count past kMaxRunSteps is a dp::Error naming the option.
uint64_t run_total_steps(const TrainConfig& cfg, uint64_t steps_per_epoch);

// --lr-schedule constant|cosine over run_total_steps(); a cosine warm-up longer than the run
// is a dp::Error naming --warmup-steps.
std::unique_ptr<LrSchedule> make_schedule(const TrainConfig& cfg, uint64_t steps_per_epoch);

}  // namespace dp
