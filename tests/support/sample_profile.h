#pragma once
// A --profile-out profile to start from, shared by the run-profile tests and the fuzz seeds.
#include "runtime/perf/run_profile.h"

namespace dp::test {

// A 2-rank profile whose slower peer wrote the first layer's gradients 430 us after this rank's
// backward ended (the audit's auto.json: fc1.weight ready at 808 us of a 378 us backward).
inline RunProfile skewed_mlp_profile() {
  RunProfile p;
  p.world_size = 2;
  p.backend = "mpi";
  p.model = "mlp";
  p.first_step = 2;
  p.last_step = 6;
  p.compute.pre_backward_us = 536;
  p.compute.backward_us = 378;
  p.compute.post_backward_us = 272;
  p.compute.params = {{"fc1.weight", 1605632, 808}, {"fc1.bias", 2048, 808},
                      {"fc2.weight", 524288, 92},   {"fc2.bias", 1024, 92},
                      {"fc3.weight", 10240, 13},    {"fc3.bias", 40, 13}};
  p.own_ready_us = {370, 371, 80, 80, 10, 10};
  p.allreduce_idle = AllReduceFit{2, 50, 0.004, {{0, 50}, {1e6, 4050}}};
  p.allreduce_busy = p.allreduce_idle;
  p.assignment = {{5, 4, 3}, {2}, {1}, {0}};
  p.measured.steps = 7;
  p.measured.step_us = 2552;
  return p;
}

}  // namespace dp::test
