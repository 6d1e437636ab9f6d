#pragma once
// Whether a checkpoint may continue under this run's settings: never a silent change of the
// training. The settings that define it (model, data, optimizer, learning rate, seed, ...)
// must be equal; the run's length may change (said aloud when it moves the cosine schedule);
// another world size, batch or accumulation is accepted only with the same global batch,
// which gives every step the same samples (DistributedSampler: step s of an epoch covers
// positions [G s, G (s + 1)) of the epoch's order for any ranks x batch x accumulation = G).
#include <string>
#include <utility>
#include <vector>

#include "runtime/train/checkpoint.h"

namespace dp {

struct ResumeTarget {
  std::vector<std::pair<std::string, std::string>> settings;  // collective_settings()
  std::vector<std::string> model_keys;  // "--model" and the model's own options
  int world_size = 1;
  size_t batch_size = 0;
  size_t grad_accum = 1;
  size_t steps_per_epoch = 0;
  bool eval_only = false;
  // The model has BatchNorm: it normalises over each rank's micro-batch, or with
  // --sync-batchnorm over the ranks' micro-batches together. Another split of the global
  // batch groups other samples (or more, or fewer): the math changes, not only a sum's order.
  bool batchnorm = false;
  bool sync_batchnorm = false;
};

struct ResumeVerdict {
  std::string error;               // non-empty: refuse, with this message
  std::vector<std::string> notes;  // accepted differences, printed by rank 0
  bool same_layout = false;        // the checkpoint's bucket layout applies to this run
};

ResumeVerdict check_resume(const CheckpointMeta& meta, const ResumeTarget& target,
                           const std::string& path);

}  // namespace dp
