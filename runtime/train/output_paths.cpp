#include "runtime/train/output_paths.h"

#include <filesystem>
#include <system_error>

#include "runtime/core/atomic_write.h"
#include "runtime/core/error.h"
#include "runtime/core/same_file.h"
#include "runtime/data/open_data.h"

namespace dp {

namespace {

namespace fs = std::filesystem;

// The checkpoints (step-N.ckpt) already in `dir`: --resume auto may read any of them.
std::vector<PathUse> checkpoints_in(const std::string& dir) {
  std::vector<PathUse> found;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind("step-", 0) == 0 && name.size() > 10 &&
        name.compare(name.size() - 5, 5, ".ckpt") == 0)
      found.push_back({"--checkpoint-dir " + dir, it->path().string()});
  }
  return found;
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
    for (size_t j = 0; j < outputs.size(); ++j) {
      if (j == i) continue;
      const PathUse& other = outputs[j];
      DP_CHECK(j < i || !same_file(out.path, other.path),
               "{} and {} name the same file ({}): one would replace the other; give each "
               "output its own name",
               out.option, other.option, out.path);
      DP_CHECK(!same_file(out.path, staging_path(other.path)),
               "{} {} is where {} {} is written first: give each output its own name", out.option,
               out.path, other.option, other.path);
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
  if (!cfg.checkpoint_dir.empty()) {
    for (PathUse& c : checkpoints_in(cfg.checkpoint_dir)) inputs.push_back(std::move(c));
  }
  check_outputs_spare_inputs(outputs, inputs);
}

}  // namespace dp
