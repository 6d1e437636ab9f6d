// The transformer layers against PyTorch's own results (tests/data/layer_*.json, float64):
// forward output and every gradient.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/nn/attention.h"
#include "runtime/nn/embedding.h"
#include "runtime/nn/gelu.h"
#include "runtime/nn/layernorm.h"
#include "tests/support/reference_data.h"

using namespace dp;
using test::expect_reference;
using test::load_reference;
using test::reference_tensor;

TEST(TransformerReference, Embedding) {
  const auto c = load_reference("layer_embedding.json");
  ASSERT_EQ(c.at("layer"), "embedding");
  const Tensor w = reference_tensor(c["inputs"]["weight"]);
  const auto rows = c["attrs"]["indices"].get<std::vector<std::vector<int32_t>>>();
  std::vector<int32_t> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  const Tensor idx = Tensor::from_vector({int64_t(rows.size()), int64_t(rows[0].size())}, flat);
  Embedding emb("emb", size_t(w.dim(0)), size_t(w.dim(1)), 0);
  emb.weight().value.copy_(w);
  expect_reference(emb.forward(idx), c["output"], "output");
  emb.backward(reference_tensor(c["grad_output"]));
  expect_reference(emb.weight().grad, c["grads"]["weight"], "grad weight");
}

TEST(TransformerReference, LayerNorm) {
  const auto c = load_reference("layer_layernorm.json");
  ASSERT_EQ(c.at("layer"), "layernorm");
  const Tensor x = reference_tensor(c["inputs"]["x"]);
  LayerNorm ln("ln", size_t(x.dim(x.ndim() - 1)), c["attrs"]["eps"].get<float>());
  ln.weight().value.copy_(reference_tensor(c["inputs"]["weight"]));
  ln.bias().value.copy_(reference_tensor(c["inputs"]["bias"]));
  expect_reference(ln.forward(x), c["output"], "output");
  expect_reference(ln.backward(reference_tensor(c["grad_output"])), c["grads"]["x"], "grad x");
  expect_reference(ln.weight().grad, c["grads"]["weight"], "grad weight");
  expect_reference(ln.bias().grad, c["grads"]["bias"], "grad bias");
}

TEST(TransformerReference, GeluTanh) {
  const auto c = load_reference("layer_gelu_tanh.json");
  ASSERT_EQ(c.at("layer"), "gelu_tanh");
  GELU gelu("gelu");
  expect_reference(gelu.forward(reference_tensor(c["inputs"]["x"])), c["output"], "output");
  expect_reference(gelu.backward(reference_tensor(c["grad_output"])), c["grads"]["x"], "grad x");
}

TEST(TransformerReference, CausalSelfAttention) {
  const auto c = load_reference("layer_causal_self_attention.json");
  ASSERT_EQ(c.at("layer"), "causal_self_attention");
  const Tensor x = reference_tensor(c["inputs"]["x"]);
  const size_t embed = size_t(x.dim(2)), heads = c["attrs"]["heads"].get<size_t>();
  CausalSelfAttention attn("attn", embed, heads, 0);
  attn.c_attn().weight().value.copy_(reference_tensor(c["inputs"]["w_qkv"]));
  attn.c_attn().bias().value.copy_(reference_tensor(c["inputs"]["b_qkv"]));
  attn.c_proj().weight().value.copy_(reference_tensor(c["inputs"]["w_proj"]));
  attn.c_proj().bias().value.copy_(reference_tensor(c["inputs"]["b_proj"]));
  expect_reference(attn.forward(x), c["output"], "output");
  expect_reference(attn.backward(reference_tensor(c["grad_output"])), c["grads"]["x"], "grad x");
  expect_reference(attn.c_attn().weight().grad, c["grads"]["w_qkv"], "grad w_qkv");
  expect_reference(attn.c_attn().bias().grad, c["grads"]["b_qkv"], "grad b_qkv");
  expect_reference(attn.c_proj().weight().grad, c["grads"]["w_proj"], "grad w_proj");
  expect_reference(attn.c_proj().bias().grad, c["grads"]["b_proj"], "grad b_proj");
}
