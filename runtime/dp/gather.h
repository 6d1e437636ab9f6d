#pragma once
// What DataParallel brings back to replica 0 after the replicas' backward: their gradients,
// summed onto replica 0's (the backward of torch's replicate, ReduceAddCoalesced) and divided
// by the number of replicas, and their losses, averaged.
//
// The arithmetic is the one of dprun's DDP all-reduce between ranks of one node
// (runtime/comm/shm_allreduce.cpp): ((g_0 + g_1) + g_2 + ... + g_{N-1}) * (1/N) in float32, in
// replica order, so that N replicas produce the bits N DDP ranks produce.
#include <cstddef>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/nn/parameter.h"

namespace dp {

class GradientGather {
 public:
  // replicas[r]: replica r's parameters, in the same order and shapes for every r (float32
  // gradients, each replica's on one device; replica 0's receive the result).
  explicit GradientGather(std::vector<std::vector<Parameter*>> replicas);

  // Replica 0's gradients become the mean of every replica's. The other replicas' gradients
  // are read, not changed. GPU replicas: each gradient of another device is copied to
  // replica 0's device first (after that device's queued backward), then added there.
  void gather();

  // Bytes read from the other replicas per gather().
  size_t bytes() const { return bytes_; }

 private:
  std::vector<std::vector<Parameter*>> replicas_;
  Tensor staging_;  // GPU: one gradient of another device at a time, on replica 0's device
  size_t bytes_ = 0;
  std::vector<const float*> others_;  // gather()'s, kept from step to step
};

// ((v_0 + v_1) + ... + v_{N-1}) * (1/N) in float32: the replicas' losses averaged in the order
// and rounding of the DDP loss all-reduce.
float mean_over_replicas(const std::vector<float>& values);

}  // namespace dp
