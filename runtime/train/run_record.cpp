#include "runtime/train/run_record.h"

#include <string>

#include <fmt/format.h>

#include "runtime/core/version.h"
#include "runtime/train/trainer.h"

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

nlohmann::json summary_record(const TrainSummary& sum, size_t sequence_length) {
  auto optional = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(); };
  nlohmann::json j = {
      {"type", "summary"},
      {"steps", sum.steps},
      {"epochs", sum.epochs},
      {"train_loss", optional(sum.train_loss)},
      // A mean over part of an epoch (the run ended inside it): how many of its steps.
      {"train_loss_steps", optional(sum.partial_epoch_steps())},
      {"samples_per_s", sum.samples_per_s},
      {"wall_s", sum.wall_s},
      {"peak_rss_mib", sum.peak_rss_mib},
      {"skipped_steps", sum.skipped_steps},
      {"test_loss", sum.evaluated ? nlohmann::json(sum.eval.loss) : nlohmann::json()},
      {"test_accuracy", sum.evaluated ? nlohmann::json(sum.eval.accuracy) : nlohmann::json()}};
  if (sequence_length > 0) j["tokens_per_s"] = sum.tokens_per_s;
  return j;
}

}  // namespace dp
