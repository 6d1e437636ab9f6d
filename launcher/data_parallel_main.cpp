#include "launcher/data_parallel_main.h"

#include <cstdio>
#include <exception>

#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/train/data_parallel.h"

namespace dp {

void check_mode_options(const LaunchOptions& o) {
  DP_CHECK(o.mode == "ddp" || o.mode == "dp", "--mode {}: unknown mode (expected ddp or dp)",
           o.mode);
  DP_CHECK(o.replicas >= 0, "--replicas {}: expected a whole number >= 0", o.replicas);
  DP_CHECK(o.mode == "dp" || o.replicas == 0,
           "--replicas {} needs --mode dp (--mode ddp runs one replica per process: mpirun -np N)",
           o.replicas);
}

int data_parallel_main(const LaunchOptions& o, int rank, int world_size) {
  try {
    DP_CHECK(world_size == 1,
             "--mode dp trains its replicas as threads (or GPUs) of ONE process, but the launcher "
             "started {} processes: run it without mpirun (or with -np 1), or use --mode ddp",
             world_size);
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
    std::fprintf(stderr, "dprun: error: [rank %d] %s\n", rank, e.what());
    return 1;
  }
}

}  // namespace dp
