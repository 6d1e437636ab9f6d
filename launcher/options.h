#pragma once
#include <string>

#include "runtime/train/train_config.h"

namespace dp {

struct LaunchOptions {
  TrainConfig train;
  std::string device = "auto";
  std::string backend = "auto";
  bool allow_device_sharing = false;  // several ranks of a node on one GPU (MPI backend)
  // ddp (one process per rank) or dp (one process, `replicas` replicas: torch.nn.DataParallel,
  // launcher/data_parallel_main.h); replicas 0: dp's default (default_replicas).
  std::string mode = "ddp";
  int replicas = 0;
  bool verbose = false;
  bool help = false;
  bool version = false;
  std::string help_text;
};

// Parses the command line (and --config FILE, with the same keys as the long options,
// one "key = value" per line; the command line wins). Throws dp::Error on a bad option.
LaunchOptions parse_options(int argc, char** argv);

}  // namespace dp
