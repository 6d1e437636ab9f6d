#pragma once
// The model, data and step of the thread-rank Reducer tests (test_reducer_threads.cpp,
// test_comm_hook.cpp): a 12-9-7-4 MLP built the same on every rank, a batch of 6 that differs
// per rank, and the gradients one backward gives without any Reducer (the reference).
#include <cstdint>
#include <memory>
#include <vector>

#include "models/mlp.h"
#include "runtime/core/rng.h"
#include "runtime/ddp/reducer.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/sequential.h"

namespace dp::test {

using Grads = std::vector<std::vector<float>>;  // per parameter, on the host

inline std::unique_ptr<Sequential> fixture_mlp() {
  return make_mlp(12, {9, 7}, 4, 5);
}

// Rank r's batch: deterministic per (seed, rank), different on every rank.
struct RankBatch {
  Tensor x = Tensor::zeros({6, 12});
  Tensor y = Tensor::zeros({6}, DType::i32);
  RankBatch(uint64_t seed, int rank) {
    Philox rng(seed, static_cast<uint64_t>(rank));
    float* px = x.f32();
    for (size_t i = 0; i < x.numel(); ++i) px[i] = rng.normal();
    int32_t* py = y.data<int32_t>();
    for (size_t i = 0; i < y.numel(); ++i) py[i] = static_cast<int32_t>(rng.below(4));
  }
};

inline Grads grads_of(Module& model) {
  Grads g;
  for (Parameter* p : model.parameters()) g.push_back(p->grad.to_vector());
  return g;
}

// One backward of a fresh fixture_mlp() on rank r's batch, without any Reducer.
inline Grads local_grads(uint64_t seed, int rank) {
  auto model = fixture_mlp();
  RankBatch b(seed, rank);
  SoftmaxCrossEntropy loss;
  loss.forward(model->forward(b.x), b.y);
  model->backward(loss.backward());
  return grads_of(*model);
}

// One synchronising step's backward through `reducer` (its all-reduces launched from inside
// backward and waited in finish()).
inline void reduce_one_step(Module& model, Reducer& reducer, const RankBatch& b) {
  SoftmaxCrossEntropy loss;
  reducer.zero_grad();
  reducer.prepare_for_backward(true);
  loss.forward(model.forward(b.x), b.y);
  model.backward(loss.backward());
  reducer.finish();
}

}  // namespace dp::test
