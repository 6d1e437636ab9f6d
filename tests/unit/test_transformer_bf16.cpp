// bfloat16 compute (mixed precision) of the transformer layers and of GPT against the same
// objects in float32: outputs in bfloat16, parameter gradients in float32, all within what
// bfloat16's 8 significant bits allow. (The float32 paths themselves are pinned by the
// gradient checks and PyTorch's reference vectors.)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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
using test::random_tensor;

namespace {

// max |got - want| / max |want|: error relative to the tensor's scale (elementwise relative
// errors are meaningless for values that are sums of cancelling terms).
double scaled_error(const Tensor& got, const Tensor& want) {
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  double diff = 0, scale = 1e-30;
  for (size_t i = 0; i < g.size(); ++i) {
    diff = std::max(diff, std::fabs(double(g[i]) - w[i]));
    scale = std::max(scale, std::fabs(double(w[i])));
  }
  return diff / scale;
}

// Runs `f32` and `b16` (same parameters; b16 switched to bfloat16 compute) on the same
// float32 input and upstream gradient; compares output, dx and every parameter gradient.
void compare(Module& f32, Module& b16, const Tensor& x, const Tensor& g, double tol,
             bool has_dx = true) {
  b16.set_compute_dtype(DType::bf16);
  const auto pf = f32.parameters(), pb = b16.parameters();
  ASSERT_EQ(pf.size(), pb.size());
  for (size_t i = 0; i < pf.size(); ++i) pb[i]->value.copy_(pf[i]->value);
  const Tensor& yf = f32.forward(x);
  const Tensor& yb = b16.forward(x);
  EXPECT_EQ(yb.dtype(), DType::bf16) << b16.name();
  ASSERT_EQ(yb.shape(), yf.shape());
  EXPECT_LE(scaled_error(yb, yf), tol) << b16.name() << " output";
  const Tensor& dxf = f32.backward(g);
  const Tensor& dxb = b16.backward(g);
  if (has_dx) {
    EXPECT_EQ(dxb.dtype(), x.dtype()) << "dx comes back in the input's dtype";
    EXPECT_LE(scaled_error(dxb, dxf), tol) << b16.name() << " dx";
  }
  for (size_t i = 0; i < pf.size(); ++i) {
    EXPECT_EQ(pb[i]->grad.dtype(), DType::f32) << pb[i]->name;
    EXPECT_LE(scaled_error(pb[i]->grad, pf[i]->grad), tol) << pb[i]->name;
  }
}

void randomise(Module& m, uint64_t seed, float scale = 0.5f) {
  for (Parameter* p : m.parameters())
    p->value.copy_(random_tensor(p->value.shape(), seed++, -scale, scale));
}

}  // namespace

// Tolerances: about 2-3x the largest error seen. One bfloat16 rounding is at most 2^-9
// relative; a layer rounds its output, its GEMM operands and its dx once each, and GPT
// stacks a dozen such layers.
TEST(TransformerBf16, Embedding) {
  Embedding f("emb", 9, 6, 1), b("emb", 9, 6, 1);
  const Tensor idx = Tensor::from_vector({2, 3}, std::vector<int32_t>{1, 8, 1, 0, 4, 4});
  compare(f, b, idx, random_tensor({2, 3, 6}, 2), 5e-3, /*has_dx=*/false);
}

TEST(TransformerBf16, LayerNorm) {
  LayerNorm f("ln", 32), b("ln", 32);
  randomise(f, 3);
  compare(f, b, random_tensor({4, 5, 32}, 4, -2.0f, 3.0f), random_tensor({4, 5, 32}, 5), 1e-2);
}

TEST(TransformerBf16, Gelu) {
  GELU f("gelu"), b("gelu");
  compare(f, b, random_tensor({7, 33}, 6, -5.0f, 5.0f), random_tensor({7, 33}, 7), 1e-2);
}

TEST(TransformerBf16, CausalSelfAttention) {
  CausalSelfAttention f("attn", 32, 4, 8), b("attn", 32, 4, 8);
  randomise(f, 9, 0.3f);
  compare(f, b, random_tensor({2, 19, 32}, 10), random_tensor({2, 19, 32}, 11), 1.5e-2);
}

TEST(TransformerBf16, TransformerBlock) {
  TransformerBlock f("h.0", 32, 4, 12), b("h.0", 32, 4, 12);
  randomise(f, 13, 0.3f);
  compare(f, b, random_tensor({2, 11, 32}, 14), random_tensor({2, 11, 32}, 15), 2e-2);
}

TEST(TransformerBf16, WholeGpt) {
  GptConfig c;
  c.layers = 2, c.heads = 2, c.embed = 32, c.context = 16, c.vocab = 40;
  GptModel f(c, 16), b(c, 16);
  Philox rng(17, 1);
  std::vector<int32_t> tok(3 * 16);
  for (auto& t : tok) t = int32_t(rng.below(40));
  compare(f, b, Tensor::from_vector({3, 16}, tok), random_tensor({48, 40}, 18), 3e-2,
          /*has_dx=*/false);
}
