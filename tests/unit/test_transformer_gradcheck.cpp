// Finite-difference gradient checks of the transformer layers (Embedding, LayerNorm, GELU,
// CausalSelfAttention, the GPT-2 block) and of a whole tiny GPT, every parameter included
// (the tied wte too), in float32 with central differences.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "models/gpt.h"
#include "runtime/nn/attention.h"
#include "runtime/nn/embedding.h"
#include "runtime/nn/gelu.h"
#include "runtime/nn/layernorm.h"
#include "runtime/nn/transformer_block.h"
#include "tests/support/gradcheck.h"

using namespace dp;
using test::check_fd;
using test::dot;
using test::random_tensor;

namespace {

Tensor tokens(const Shape& shape, int vocab, uint64_t seed) {
  Philox rng(seed, 7);
  std::vector<int32_t> v(shape_numel(shape));
  for (auto& t : v) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return Tensor::from_vector(shape, v);
}

// Randomises every parameter (so that LayerNorm weights are not all ones, biases not zero:
// a gradient term that multiplies them would otherwise hide).
void randomise(Module& m, uint64_t seed, float scale = 0.5f) {
  for (Parameter* p : m.parameters())
    p->value.copy_(random_tensor(p->value.shape(), seed++, -scale, scale));
}

// Backward once with fresh gradients, then every parameter (and dx when given) against
// central differences of sum(m(x) * g).
void check_module(Module& m, const Tensor& x, const Tensor& g, float eps, double tol,
                  bool check_input = true) {
  for (Parameter* p : m.parameters()) p->grad.zero_();
  m.forward(x);
  const Tensor& dx_ref = m.backward(g);
  if (check_input) {
    ASSERT_TRUE(dx_ref.defined());
    const Tensor dx = dx_ref.clone();
    check_fd(m, x, g, x, dx, eps, tol, m.name() + " dx");
  }
  for (Parameter* p : m.parameters()) {
    const Tensor analytic = p->grad.clone();
    check_fd(m, x, g, p->value, analytic, eps, tol, p->name);
  }
}

// Tolerances: max(atol, rtol |numeric|) about 5-10x the largest error seen with correct
// gradients (float32 rounding of the loss over the step, and the step's truncation error),
// while a missing or misplaced term is off by far more.

}  // namespace

TEST(TransformerGradCheck, EmbeddingScatterAddsRepeatedIndices) {
  Embedding emb("emb", 7, 5, 3);
  // Index 2 appears three times: its row must receive all three gradients.
  Tensor idx = Tensor::from_vector({2, 3}, std::vector<int32_t>{2, 0, 2, 6, 2, 1});
  Tensor g = random_tensor({2, 3, 5}, 4);
  emb.forward(idx);
  EXPECT_FALSE(emb.backward(g).defined()) << "indices have no gradient";
  const Tensor analytic = emb.weight().grad.clone();
  // Linear in the table: a large step has no truncation error.
  check_fd([&] { return dot(emb.forward(idx), g); }, emb.weight().value, analytic, 1e-2f, 1e-5,
           1e-4, "emb.weight");
  for (int c = 0; c < 5; ++c) EXPECT_EQ(analytic.f32()[3 * 5 + c], 0.0f) << "unused row 3";
}

TEST(TransformerGradCheck, LayerNorm) {
  LayerNorm ln("ln", 16);
  randomise(ln, 10);
  // A mean far from zero and unequal scales per row: what the normalisation removes.
  Tensor x = random_tensor({3, 4, 16}, 1, 1.0f, 3.0f);
  check_module(ln, x, random_tensor({3, 4, 16}, 2), 1e-2f, 3e-4);
}

TEST(TransformerGradCheck, GeluTanh) {
  GELU gelu("gelu");
  Tensor x = random_tensor({5, 9}, 3, -4.0f, 4.0f);
  check_module(gelu, x, random_tensor({5, 9}, 4), 1e-3f, 1e-3);
}

TEST(TransformerGradCheck, CausalSelfAttention) {
  CausalSelfAttention attn("attn", 8, 2, 5);
  randomise(attn, 20);
  Tensor x = random_tensor({2, 5, 8}, 6);
  check_module(attn, x, random_tensor({2, 5, 8}, 7), 1e-2f, 5e-4);
}

TEST(TransformerGradCheck, CausalSelfAttentionLongSequenceUsesRowPanels) {
  // 160 positions: the CPU kernel splits each head's rows into panels that skip the masked
  // triangle (runtime/ops/cpu/attention.cpp), so dk and dv are sums over panels. Only the
  // input gradient and c_attn's bias are checked: the panels are what differs.
  CausalSelfAttention attn("attn", 4, 1, 5);
  randomise(attn, 30, 0.8f);
  Tensor x = random_tensor({1, 160, 4}, 8);
  Tensor g = random_tensor({1, 160, 4}, 9);
  attn.forward(x);
  const Tensor dx = attn.backward(g).clone();
  const Tensor db = attn.c_attn().bias().grad.clone();
  check_fd(attn, x, g, x, dx, 1e-2f, 2e-3, "attn dx");
  check_fd(attn, x, g, attn.c_attn().bias().value, db, 1e-2f, 2e-3, "attn.c_attn.bias");
}

TEST(TransformerGradCheck, TransformerBlock) {
  TransformerBlock block("h.0", 8, 2, 11);
  randomise(block, 40);
  Tensor x = random_tensor({2, 4, 8}, 12);
  check_module(block, x, random_tensor({2, 4, 8}, 13), 1e-2f, 5e-4);
}

TEST(TransformerGradCheck, WholeTinyGptEveryParameterIncludingTiedWte) {
  GptConfig c;
  c.layers = 2, c.heads = 2, c.embed = 8, c.context = 6, c.vocab = 11;
  GptModel gpt(c, 3);
  randomise(gpt, 50, 0.3f);
  // T = 5 < context: the positional table's last row gets no gradient.
  Tensor tok = tokens({2, 5}, 11, 14);
  Tensor g = random_tensor({10, 11}, 15);
  gpt.forward(tok);
  EXPECT_FALSE(gpt.backward(g).defined());
  for (Parameter* p : gpt.parameters()) {
    const Tensor analytic = p->grad.clone();
    check_fd([&] { return dot(gpt.forward(tok), g); }, p->value, analytic, 1e-2f, 3e-4, 3e-4,
             p->name);
  }
}
