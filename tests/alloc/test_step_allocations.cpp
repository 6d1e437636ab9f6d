// The steady-state step of every model allocates nothing: forward, loss, backward, gradient
// clipping's norm and the optimizer, fp32 and bf16, with and without the parameter arena.
// Its own binary, because it replaces the global operator new to count the calls made on the
// counting thread (every heap allocation of C++ code goes through it).
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "models/cnn.h"
#include "models/gpt.h"
#include "models/mlp.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/parameter_arena.h"
#include "runtime/optim/adamw.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/sgd.h"

namespace {

thread_local bool counting = false;
thread_local size_t allocations = 0;

void* counted(std::size_t n) {
  if (counting) ++allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t n) {
  return counted(n);
}
void* operator new[](std::size_t n) {
  return counted(n);
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace dp {
namespace {

// Heap allocations on this thread while `f` runs.
template <typename F>
size_t allocations_in(F&& f) {
  allocations = 0;
  counting = true;
  f();
  counting = false;
  return allocations;
}

struct Case {
  std::string name;
  std::unique_ptr<Module> model;
  Tensor x, y;  // a batch and its targets (flattened to one label per row of logits)
};

Case mlp_case() {
  Case c{"mlp", make_mlp(20, {16, 8}, 5, 1), Tensor::zeros({6, 20}),
         Tensor::zeros({6}, DType::i32)};
  return c;
}

Case cnn_case() {
  CnnConfig cfg;
  cfg.channels = {4, 8};
  cfg.fc_hidden = {16};
  Case c{"cnn", make_cnn({1, 8, 8}, 5, cfg, 1), Tensor::zeros({3, 64}),
         Tensor::zeros({3}, DType::i32)};
  return c;
}

Case gpt_case() {
  GptConfig g;
  g.layers = 2, g.heads = 2, g.embed = 16, g.context = 8, g.vocab = 20;
  Case c{"gpt", std::make_unique<GptModel>(g, 1), Tensor::zeros({2, 8}, DType::i32),
         Tensor::zeros({16}, DType::i32)};
  return c;
}

void fill(Case& c) {
  if (c.x.dtype() == DType::f32) {
    float* x = c.x.f32();
    for (size_t i = 0; i < c.x.numel(); ++i) x[i] = float(i % 7) * 0.25f - 0.5f;
  } else {
    int32_t* x = c.x.data<int32_t>();
    for (size_t i = 0; i < c.x.numel(); ++i) x[i] = int32_t(i % 20);
  }
  int32_t* y = c.y.data<int32_t>();
  for (size_t i = 0; i < c.y.numel(); ++i) y[i] = int32_t(i % 5);
}

class StepAllocations : public ::testing::TestWithParam<std::tuple<int, bool, bool, bool>> {};

TEST_P(StepAllocations, SteadyStateStepAllocatesNothing) {
  const auto [which, bf16, arena_on, adam] = GetParam();
  Case c = which == 0 ? mlp_case() : which == 1 ? cnn_case() : gpt_case();
  fill(c);
  c.model->set_compute_dtype(bf16 ? DType::bf16 : DType::f32);
  const std::vector<Parameter*> params = c.model->parameters();
  std::unique_ptr<ParameterArena> arena;
  if (arena_on) arena = std::make_unique<ParameterArena>(params);
  std::unique_ptr<Optimizer> opt;
  if (adam)
    opt = std::make_unique<AdamW>(params, 0.9f, 0.999f, 1e-8f, 0.01f, arena.get());
  else
    opt = std::make_unique<SGD>(params, 0.9f, 0.0f, 0.0f, false, arena.get());
  SoftmaxCrossEntropy loss;
  auto step = [&] {
    for (Parameter* p : params) p->grad.zero_();
    const Tensor& logits = c.model->forward(c.x);
    loss.forward(logits, c.y);
    c.model->backward(loss.backward(1.0f));
    clip_grad_norm(params, 1.0f, arena.get());
    opt->step(0.01f);
  };
  for (int i = 0; i < 2; ++i) step();  // the first steps allocate buffers and state
  EXPECT_EQ(allocations_in([&] {
              for (int i = 0; i < 3; ++i) step();
            }),
            0u)
      << c.name << (bf16 ? " bf16" : " fp32") << (arena_on ? " arena" : "")
      << (adam ? " adamw" : " sgd");
}

INSTANTIATE_TEST_SUITE_P(Models, StepAllocations,
                         ::testing::Combine(::testing::Values(0, 1, 2), ::testing::Bool(),
                                            ::testing::Bool(), ::testing::Bool()));

// The counter counts: a step that makes a std::vector is seen.
TEST(StepAllocationsCounter, SeesAnAllocation) {
  EXPECT_EQ(allocations_in([] {
              std::vector<int> v(3);
              v[0] = 1;
            }),
            1u);
}

}  // namespace
}  // namespace dp
