#include "launcher/data_parallel_main.h"

#include <cstdio>
#include <exception>

#include <fmt/format.h>

#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/train/data_parallel.h"

namespace dp {

std::string data_parallel_world_error(int world_size) {
  return fmt::format(
      "--mode dp trains its replicas as threads (or GPUs) of ONE process, but the launcher "
      "started {} processes: run it without mpirun (or with -np 1), or use --mode ddp",
      world_size);
}

int data_parallel_main(const LaunchOptions& o, int rank) {
  try {
    DP_CHECK(o.backend == "auto",
             "--backend {}: --mode dp has no collectives (the backend is DDP's)", o.backend);
    DP_CHECK(!o.allow_device_sharing,
             "--allow-device-sharing: --mode dp puts replica r on its own GPU (cuda:r)");
    TrainConfig cfg = o.train;
    // auto: cuda:0 (and on) when GPUs are visible, else the CPU.
    cfg.device = resolve_device(o.device, 0);
    const size_t replicas = o.replicas > 0 ? size_t(o.replicas) : default_replicas(cfg.device);
    DataParallelTrainer trainer(cfg, replicas);
    trainer.run();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dprun: error: [rank %d] %s\n", rank,
                 with_config_origin(e.what(), o.config_origins).c_str());
    return 1;
  }
}

}  // namespace dp
