#include "runtime/train/output_paths.h"

#include <filesystem>
#include <system_error>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"
#include "runtime/core/same_file.h"
#include "runtime/data/open_data.h"
#include "runtime/train/checkpoint_dir.h"
#include "runtime/train/checkpoint_lock.h"

namespace dp {

namespace {

namespace fs = std::filesystem;

// Refuses an output in `dir` (--checkpoint-dir) named as a checkpoint, one there now or one
// this run writes later, or as the directory's lock: the run would replace its own checkpoint.
void refuse_checkpoint_names(const PathUse& out, const std::string& dir) {
  const std::string name = fs::path(out.path).filename().string();
  DP_CHECK(!same_file(directory_of(out.path), dir) ||
               (!is_checkpoint_name(name) && name != CheckpointDirLock::kFileName),
           "{} {} is a file of --checkpoint-dir {} that the checkpoints use: give the output "
           "another name or directory",
           out.option, out.path, dir);
}

}  // namespace

void check_outputs_spare_inputs(const std::vector<PathUse>& outputs,
                                const std::vector<PathUse>& inputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    const PathUse& out = outputs[i];
    for (const PathUse& in : inputs) {
      DP_CHECK(!same_file(out.path, in.path),
               "{} {} would overwrite the input file {} ({}): give the output another name",
               out.option, out.path, in.path, in.option);
    }
    for (size_t j = i + 1; j < outputs.size(); ++j) {
      const PathUse& other = outputs[j];
      DP_CHECK(!same_file(out.path, other.path),
               "{} and {} name the same file ({}): one would replace the other; give each "
               "output its own name",
               out.option, other.option, out.path);
    }
  }
}

void check_training_paths(const TrainConfig& cfg) {
  std::vector<PathUse> outputs;
  for (const auto& [option, path] :
       {std::pair<const char*, const std::string&>{"--log-json", cfg.log_json},
        {"--trace", cfg.trace},
        {"--dump-params", cfg.dump_params},
        {"--gemm-profile", cfg.gemm_profile},
        {"--profile-out", cfg.profile_out}}) {
    if (!path.empty()) outputs.push_back({option, path});
  }
  if (outputs.empty()) return;
  std::vector<PathUse> inputs;
  if (!cfg.config_file.empty()) inputs.push_back({"--config", cfg.config_file});
  for (const std::string& f : data_files(cfg.data)) inputs.push_back({"--data " + cfg.data, f});
  for (const std::string& f : data_files(cfg.val_data))
    inputs.push_back({"--val-data " + cfg.val_data, f});
  if (!cfg.resume.empty() && cfg.resume != "auto") inputs.push_back({"--resume", cfg.resume});
  check_outputs_spare_inputs(outputs, inputs);
  if (!cfg.checkpoint_dir.empty()) {
    for (const PathUse& out : outputs) refuse_checkpoint_names(out, cfg.checkpoint_dir);
  }
}

}  // namespace dp
