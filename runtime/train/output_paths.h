#pragma once
// Outputs that would overwrite an input or each other. Each output path is checked alone by
// check_output_path (param_io.h); this compares them with the run's inputs and with one
// another, as files ("./x" and "x", a symlink, a hard link): one mistyped option
// (--dump-params onto the token file, --log-json onto the --config file, --trace onto
// --log-json) silently destroyed data and the run still ended with exit 0.
#include <string>
#include <vector>

#include "runtime/train/train_config.h"

namespace dp {

// A path the run reads or writes, and the option that names it ("--data tokens:x.bin").
struct PathUse {
  std::string option;
  std::string path;
};

// Throws dp::Error naming both options when an output is the same file as an input or as
// another output.
void check_outputs_spare_inputs(const std::vector<PathUse>& outputs,
                                const std::vector<PathUse>& inputs);

// A training run's outputs (--log-json, --trace, --dump-params, --gemm-profile,
// --profile-out) and inputs (--config, the files of --data and --val-data, a --resume file),
// checked as above; and no output may be in --checkpoint-dir under a checkpoint's name (one
// there now, which --resume auto may read, or one this run writes later) or the lock's.
void check_training_paths(const TrainConfig& cfg);

}  // namespace dp
