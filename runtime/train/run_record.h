#pragma once
// The JSON log's record of what a run is (--log-json): the console header's facts as fields,
// so that a dashboard reading several logs can tell runs apart and normalise their figures
// (per-rank throughput needs the world size, tokens/s the context) without parsing the header.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/train/train_config.h"

namespace dp {

struct TrainSummary;

struct RunShape {
  std::string mode = "ddp";  // ddp | dp (--mode)
  size_t world_size = 1;     // ranks, or dp's replicas
  std::string backend;       // ddp's process group ("mpi", "nccl"); empty for dp
  size_t parameters = 0;
  size_t batch = 0;  // samples per rank (replica) and micro-batch, as used
  uint64_t steps_per_epoch = 0;
  uint64_t total_steps = 0;
  std::string optimizer;       // Optimizer::describe()
  std::string schedule;        // LrSchedule::describe()
  size_t sequence_length = 0;  // tokens per sample of language models, else 0
};

// {"type":"run", ...}: written at the start of every training run, after a resume marker.
nlohmann::json run_record(const TrainConfig& cfg, const RunShape& shape);

// {"type":"summary", ...}: the fields both modes' last record shares (each adds its own timings);
// tokens_per_s only for language models (`sequence_length` > 0), as in the step records.
nlohmann::json summary_record(const TrainSummary& sum, size_t sequence_length);

}  // namespace dp
