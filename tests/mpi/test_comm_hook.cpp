// The Reducer's bf16_compress and fp16_compress comm hooks under mpirun (1, 2, 4 ranks), with
// the shared-memory all-reduce on and off. Every rank computes every rank's local gradients
// (deterministic batches) and from them the host reference of what the hook must produce:
// bf16_compress, each rank's gradient rounded to bfloat16, averaged in float32, rounded once;
// fp16_compress, each rank's gradient divided by the world size and rounded to float16,
// summed in float32, rounded once. The shared-memory path (and a world of one) reproduces it
// bit for bit; MPI_Allreduce rounds every combine, so there it is within one ulp per combine.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "models/mlp.h"
#include "runtime/comm/mpi_process_group.h"
#include "runtime/core/half_float.h"
#include "runtime/core/rng.h"
#include "runtime/ddp/comm_hook.h"
#include "runtime/ddp/reducer.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/optim/sgd.h"

using namespace dp;

namespace {

using Grads = std::vector<std::vector<float>>;  // per parameter

std::unique_ptr<Sequential> small_mlp() {
  return make_mlp(12, {9, 7}, 4, 5);
}

// Rank r's micro-batch k: deterministic, different on every rank and every k.
void make_batch(int rank, int k, Tensor& x, Tensor& y) {
  Philox rng(1234 + uint64_t(k), static_cast<uint64_t>(rank));
  float* px = x.f32();
  for (size_t i = 0; i < x.numel(); ++i) px[i] = rng.normal();
  int32_t* py = y.data<int32_t>();
  for (size_t i = 0; i < y.numel(); ++i) py[i] = static_cast<int32_t>(rng.below(4));
}

void backward(Module& model, int rank, int k) {
  Tensor x = Tensor::zeros({6, 12}), y = Tensor::zeros({6}, DType::i32);
  make_batch(rank, k, x, y);
  SoftmaxCrossEntropy loss;
  loss.forward(model.forward(x), y);
  model.backward(loss.backward());
}

// Rank r's gradients accumulated over micro-batches 0..k-1, without any Reducer.
Grads local_grads(int rank, int micro_batches) {
  auto model = small_mlp();
  for (int k = 0; k < micro_batches; ++k) backward(*model, rank, k);
  Grads g;
  for (Parameter* p : model->parameters()) g.push_back(p->grad.to_vector());
  return g;
}

Grads grads_of(Module& model) {
  Grads g;
  for (Parameter* p : model.parameters()) g.push_back(p->grad.to_vector());
  return g;
}

// One ulp at |x| of the hook's wire type: bfloat16 (8 significant bits) or float16 (11, and
// never below its subnormals' spacing 2^-24).
float wire_ulp(CommHook hook, float x) {
  int e = 0;
  std::frexp(x, &e);
  if (hook == CommHook::fp16_compress) return std::max(std::ldexp(1.0f, e - 11), 0x1p-24f);
  return x == 0.0f ? 0.0f : std::ldexp(1.0f, e - 8);
}

// A rank's gradient value as the hook puts it on the wire, widened.
float on_wire(CommHook hook, float g, int world) {
  return hook == CommHook::fp16_compress ? round_to<f16>(g * (1.0f / float(world)))
                                         : round_to<bf16>(g);
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

MpiProcessGroupOptions options(bool shared) {
  MpiProcessGroupOptions o;
  o.shared_memory = shared;
  return o;
}

ReducerOptions hook_options(CommHook hook) {
  ReducerOptions o;
  o.first_bucket_mb = 1e-4;  // several buckets, launched from inside backward
  o.bucket_cap_mb = 2e-4;
  o.comm_hook = hook;
  return o;
}

std::vector<float> flat(const std::vector<Parameter*>& params) {
  std::vector<float> v;
  for (Parameter* p : params) {
    auto x = p->value.to_vector();
    v.insert(v.end(), x.begin(), x.end());
  }
  return v;
}

void expect_same_on_every_rank(const std::vector<float>& mine, const std::string& what) {
  std::vector<float> root = mine;
  MPI_Bcast(root.data(), int(root.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
  EXPECT_EQ(std::memcmp(root.data(), mine.data(), mine.size() * sizeof(float)), 0)
      << what << ": differs from rank 0";
}

class CommHookMpi : public ::testing::TestWithParam<std::tuple<bool, CommHook>> {
 protected:
  MpiProcessGroup pg{MPI_COMM_WORLD, options(std::get<0>(GetParam()))};
  CommHook hook = std::get<1>(GetParam());
  int rank = pg.rank();
  int world = pg.size();

  // `got` against the hook's reference built from every rank's local gradients.
  void expect_hook_result(const Grads& got, const std::vector<Grads>& per_rank) {
    const bool exact = world == 1 || pg.uses_shared_memory();
    const bool fp16 = hook == CommHook::fp16_compress;
    size_t bad = 0;
    std::string first;
    for (size_t p = 0; p < got.size(); ++p) {
      for (size_t i = 0; i < got[p].size(); ++i) {
        float acc = on_wire(hook, per_rank[0][p][i], world), mag = std::fabs(acc);
        for (int r = 1; r < world; ++r) {
          const float v = on_wire(hook, per_rank[size_t(r)][p][i], world);
          acc += v;
          mag += std::fabs(v);
        }
        // fp16 sums the pre-divided values; bf16 averages.
        const float avg = fp16 ? acc : acc * (1.0f / float(world));
        const float want = fp16 ? round_to<f16>(avg) : round_to<bf16>(avg);
        const float tol = fp16 ? float(world) * wire_ulp(hook, mag) : 2.0f * wire_ulp(hook, mag);
        const bool ok = exact ? bits(got[p][i]) == bits(want) : std::fabs(got[p][i] - avg) <= tol;
        if (!ok && bad++ == 0) {
          first = "parameter " + std::to_string(p) + " element " + std::to_string(i) + ": got " +
                  std::to_string(got[p][i]) + " want " + std::to_string(want);
        }
      }
    }
    EXPECT_EQ(bad, 0u) << (exact ? "exact" : "within one ulp per combine") << "; first " << first;
  }
};

}  // namespace

TEST_P(CommHookMpi, GradientsAreTheHookReductionOfEveryRanksGradients) {
  std::vector<Grads> per_rank;
  per_rank.reserve(size_t(world));
  for (int r = 0; r < world; ++r) per_rank.push_back(local_grads(r, 1));
  auto model = small_mlp();
  Reducer reducer(model->parameters(), pg, hook_options(hook));
  ASSERT_GE(reducer.buckets().size(), 2u);
  for (int step = 0; step < 2; ++step) {  // the second step runs on the rebuilt buckets
    SCOPED_TRACE("step " + std::to_string(step));
    reducer.zero_grad();
    reducer.prepare_for_backward(true);
    backward(*model, rank, 0);
    reducer.finish();
    const Grads got = grads_of(*model);
    expect_hook_result(got, per_rank);
    std::vector<float> all;
    for (const auto& g : got) all.insert(all.end(), g.begin(), g.end());
    expect_same_on_every_rank(all, "reduced gradients");
  }
}

TEST_P(CommHookMpi, GradAccumulationWithNoSyncCompressesOnlyTheSum) {
  std::vector<Grads> per_rank;
  per_rank.reserve(size_t(world));
  for (int r = 0; r < world; ++r) per_rank.push_back(local_grads(r, 2));
  const Grads first_micro_batch = local_grads(rank, 1);
  auto model = small_mlp();
  Reducer reducer(model->parameters(), pg, hook_options(hook));
  for (int cycle = 0; cycle < 2; ++cycle) {  // the second cycle on the rebuilt buckets
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    reducer.zero_grad();
    reducer.prepare_for_backward(/*sync=*/false);
    backward(*model, rank, 0);
    reducer.finish();
    // Nothing was compressed or reduced: still this rank's own float32 gradients.
    EXPECT_EQ(grads_of(*model), first_micro_batch);
    reducer.prepare_for_backward(/*sync=*/true);
    backward(*model, rank, 1);
    reducer.finish();
    expect_hook_result(grads_of(*model), per_rank);
  }
}

TEST_P(CommHookMpi, TrainingStaysCloseToFloat32AndReplicasStayIdentical) {
  auto train = [&](CommHook h) {
    auto model = small_mlp();
    ReducerOptions o = hook_options(h);
    Reducer reducer(model->parameters(), pg, o);
    SGD sgd(model->parameters(), /*momentum=*/0.9f);
    for (int step = 0; step < 8; ++step) {
      reducer.zero_grad();
      reducer.prepare_for_backward(true);
      backward(*model, rank, step);
      reducer.finish();
      sgd.step(0.1f);
    }
    return flat(model->parameters());
  };
  const std::vector<float> f32 = train(CommHook::none);
  const std::vector<float> b16 = train(hook);
  ASSERT_EQ(b16.size(), f32.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < f32.size(); ++i) {
    num += (double(b16[i]) - f32[i]) * (double(b16[i]) - f32[i]);
    den += double(f32[i]) * f32[i];
  }
  const double rel = std::sqrt(num / den);
  EXPECT_GT(rel, 0.0) << "the hook changed nothing: were the gradients compressed?";
  EXPECT_LE(rel, 2e-3) << "16-bit gradients drifted further from float32 training than rounding";
  expect_same_on_every_rank(b16,
                            std::string("parameters after training with ") + comm_hook_name(hook));
}

TEST_P(CommHookMpi, WireBuffersAreAllocatedOnceAndReportedInStats) {
  auto model = small_mlp();
  auto params = model->parameters();
  ReducerOptions o = hook_options(hook);
  o.first_bucket_mb = 1e-5;  // one parameter per bucket
  o.bucket_cap_mb = 1e-5;
  Reducer reducer(params, pg, o);
  ASSERT_EQ(reducer.buckets().size(), params.size());
  EXPECT_NE(reducer.layout().find(comm_hook_name(hook)), std::string::npos) << reducer.layout();
  const Tensor arena = reducer.buckets()[0].wire;
  auto check_layout = [&] {
    for (const Bucket& b : reducer.buckets()) {
      EXPECT_EQ(b.wire.dtype(), comm_hook_wire_dtype(hook)) << "bucket " << b.index;
      EXPECT_EQ(b.wire.numel(), b.flat.numel()) << "bucket " << b.index;
      EXPECT_TRUE(b.wire.shares_storage_with(arena)) << "bucket " << b.index;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(b.wire.raw()) % 64, 0u) << "bucket " << b.index;
    }
  };
  check_layout();
  reducer.zero_grad();
  reducer.prepare_for_backward(true);
  for (Parameter* p : params) p->grad_ready();  // registration order: rebuilt in this order
  reducer.finish();
  reducer.zero_grad();  // the rebuild re-carves the same wire arena
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(reducer.buckets()[i].params, std::vector<size_t>{i});
  }
  check_layout();
  reducer.prepare_for_backward(true);
  for (Parameter* p : params) {
    p->grad.fill_(float(rank + 1) / 3.0f);  // not a 16-bit value: rounded on the way
    p->grad_ready();
  }
  reducer.finish();
  const float want = float(world + 1) / 2.0f / 3.0f;
  for (Parameter* p : params) {
    for (float g : p->grad.to_vector()) EXPECT_NEAR(g, want, 4 * wire_ulp(hook, want)) << p->name;
  }
  const CommStats& s = reducer.last_stats();
  ASSERT_EQ(s.spans.size(), params.size());
  for (const BucketSpan& span : s.spans) {
    EXPECT_EQ(span.bytes, reducer.buckets()[span.bucket].flat.numel() * 2)
        << "bucket " << span.bucket << ": the bytes on the wire";
  }
}

INSTANTIATE_TEST_SUITE_P(SharedMemory, CommHookMpi,
                         ::testing::Combine(::testing::Values(true, false),
                                            ::testing::Values(CommHook::bf16_compress,
                                                              CommHook::fp16_compress)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "on_" : "off_") +
                                  comm_hook_name(std::get<1>(info.param));
                         });

// fp16_compress divides before the cast: gradients whose sum over the ranks would overflow
// float16 (but whose average does not) come through finite; a gradient beyond 65504 even
// after the division becomes infinity on every rank, as in PyTorch.
TEST_P(CommHookMpi, Fp16DividesBeforeTheSumAndOverflowsToInfinityBeyondItsRange) {
  if (hook != CommHook::fp16_compress) GTEST_SKIP() << "fp16_compress only";
  auto model = small_mlp();
  auto params = model->parameters();
  Reducer reducer(params, pg, hook_options(hook));
  reducer.zero_grad();
  reducer.prepare_for_backward(true);
  for (Parameter* p : params) {
    float* g = p->grad.f32();
    for (size_t i = 0; i < p->grad.numel(); ++i) {
      // Element 0: 60000 on every rank (a sum over 2+ ranks would pass 65504); element 1:
      // beyond the range even divided by 4 ranks.
      g[i] = i == 0 ? 60000.0f : i == 1 ? -70000.0f * float(world) : 0.5f;
    }
    p->grad_ready();
  }
  reducer.finish();
  for (Parameter* p : params) {
    auto g = p->grad.to_vector();
    EXPECT_EQ(g[0], round_to<f16>(60000.0f)) << p->name;
    EXPECT_EQ(g[1], -std::numeric_limits<float>::infinity()) << p->name;
    if (g.size() > 2) {
      EXPECT_EQ(g[2], 0.5f) << p->name;
    }
  }
}
