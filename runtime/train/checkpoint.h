#pragma once
// What a dprun checkpoint holds, in the container of checkpoint_file.h:
//   "meta"                JSON: format, progress, the run's settings, world size, bucket layout,
//                         and the tensor list below with dtypes and shapes
//   "param/<name>"        each parameter's float32 values (the master weights)
//   "buffer/<name>"       each module buffer (BatchNorm running statistics)
//   "optimizer/<state>"   the optimizer's state tensors ("fc1.weight.exp_avg", ...)
//
// The replicas are identical on every rank (DDP), so rank 0 writes the one file and a resume
// reads it on rank 0 and broadcasts. Nothing else needs saving for an exact resume: every
// random stream of dprun is counter-based (initialisation Philox(seed, parameter name),
// shuffling Philox(seed + epoch), text sampling seed + step), so (seed, epoch, step) is the
// whole RNG state, and the LR schedule is a pure function of the step.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/nn/parameter.h"
#include "runtime/optim/optimizer.h"
#include "runtime/train/checkpoint_file.h"

namespace dp {

// Where the run is, at an optimizer-step boundary.
struct TrainingProgress {
  uint64_t step = 0;                 // optimizer steps done
  uint64_t epoch = 0;                // the epoch the next step belongs to
  uint64_t step_in_epoch = 0;        // steps of that epoch already done (the sampler's position)
  double epoch_loss_sum = 0;         // the summed step losses of that epoch so far (skipped: not)
  uint64_t epoch_skipped_steps = 0;  // of that epoch's steps so far, skipped
  uint64_t last_eval_step = UINT64_MAX;
  uint64_t skipped_steps = 0;  // --on-nonfinite skip: steps without an update so far
  // The last finished epoch's mean training loss (the summary's train_loss); none before the
  // first epoch ends.
  std::optional<double> last_epoch_loss;
  // Written under a stop signal, before the --eval-every evaluation or --sample-every sample
  // due at `step`: the resumed run makes them up first.
  bool outputs_pending = false;
  // Seconds of training up to `step`, over this run and the ones it resumed (the JSON log's
  // wall_s goes on from here; absent: 0).
  double wall_s = 0;
};

struct CheckpointMeta {
  TrainingProgress progress;
  int world_size = 1;
  size_t batch_size = 0;  // per rank, per micro-batch
  size_t grad_accum = 1;
  size_t steps_per_epoch = 0;
  uint64_t seed = 0;
  std::string model;
  std::string optimizer;        // Optimizer::kind()
  int64_t optimizer_steps = 0;  // Optimizer::steps() (write_checkpoint fills it in)
  // The run's settings as the ranks compare them (config_check.h): ("--lr", "0.05"), ...
  std::vector<std::pair<std::string, std::string>> settings;
  // The Reducer's bucket assignment (parameter indices per bucket) when it was written.
  std::vector<std::vector<size_t>> buckets;
  // Written with --bucket-cap-mb/--first-bucket-mb auto before the choice (the profiled
  // steps' end): `buckets` are the fixed caps', and a resumed run chooses (absent: false).
  bool buckets_auto_pending = false;
  std::string dprun_version;

  size_t global_batch() const { return batch_size * grad_accum * size_t(world_size); }
};

// Writes the whole checkpoint to `path` atomically (CheckpointWriter). Returns its size.
uint64_t write_checkpoint(const std::string& path, const CheckpointMeta& meta,
                          const std::vector<Parameter*>& params,
                          const std::vector<Buffer*>& buffers, Optimizer& optimizer);

CheckpointMeta read_checkpoint_meta(const CheckpointReader& reader);
// The same from the 'meta' section's text (as rank 0 sends it to the other ranks).
CheckpointMeta parse_checkpoint_meta(const std::string& text, const std::string& path);

// Loads parameters, buffers and (when given) the optimizer's state and step count. Checks
// first that the checkpoint has every tensor with the same size and the same optimizer, so
// that a mismatch changes nothing and names the first difference.
void load_checkpoint_tensors(const CheckpointReader& reader, const std::vector<Parameter*>& params,
                             const std::vector<Buffer*>& buffers, Optimizer* optimizer);

}  // namespace dp
