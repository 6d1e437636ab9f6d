#include "runtime/train/run_record.h"

#include <string>

#include <fmt/format.h>

#include "runtime/core/version.h"

namespace dp {
namespace {

// A float option as the user wrote it (0.05), not as its double widening reads (0.0500000007).
double as_written(float v) {
  return std::stod(fmt::format("{}", v));
}

}  // namespace

nlohmann::json run_record(const TrainConfig& cfg, const RunShape& s) {
  nlohmann::json j = {{"type", "run"},
                      {"dprun_version", dprun_version()},
                      {"mode", s.mode},
                      {s.mode == "dp" ? "replicas" : "world_size", s.world_size}};
  if (!s.backend.empty()) j["backend"] = s.backend;
  j["model"] = cfg.model;
  if (!cfg.model_options.empty()) j["model_options"] = cfg.model_options;
  j["parameters"] = s.parameters;
  j["data"] = cfg.data;
  if (!cfg.val_data.empty()) j["val_data"] = cfg.val_data;
  j["device"] = cfg.device.str();
  j["precision"] = cfg.precision;
  j["batch_size"] = s.batch;
  j["grad_accum"] = cfg.grad_accum;
  j["global_batch"] = s.batch * cfg.grad_accum * s.world_size;
  if (s.sequence_length > 0) j["sequence_length"] = s.sequence_length;
  j["steps_per_epoch"] = s.steps_per_epoch;
  j["total_steps"] = s.total_steps;
  j["optimizer"] = s.optimizer;
  j["lr_schedule"] = s.schedule;
  j["lr"] = as_written(cfg.lr);
  if (cfg.clip_grad_norm > 0) j["clip_grad_norm"] = as_written(cfg.clip_grad_norm);
  j["seed"] = cfg.seed;
  return j;
}

}  // namespace dp
