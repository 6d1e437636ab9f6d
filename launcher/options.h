#pragma once
#include <string>

#include <boost/program_options/parsers.hpp>

#include "launcher/config_origin.h"
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
  // The options whose value came from --config FILE: name -> "FILE:LINE", for the messages of
  // checks that run later (launcher/config_origin.h).
  ConfigOrigins config_origins;
};

// Parses the command line (and --config FILE, with the same keys as the long options,
// one "key = value" per line; the command line wins). Throws dp::Error on a bad option; the
// message names the file and line when the value came from the file.
LaunchOptions parse_options(int argc, char** argv);

// Fails naming the first word of `parsed` that is not an option (Boost keeps such words when
// no positional arguments are declared, and store() drops them silently). `command`: the
// subcommand, for the message ("prepare-text").
void reject_stray_words(const boost::program_options::parsed_options& parsed,
                        const std::string& command);

}  // namespace dp
