// Backward buffers shared between modules of one structure (Module::share_backward_scratch):
// GPT's blocks hold one set of input-gradient buffers between them instead of one set each
// (18 x batch x tokens x width floats a block: 226 MB at gpt2-small, batch 4, so sharing saves
// 11 of 12 sets, 2.3 GiB), and compute exactly what separate sets compute.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "models/gpt.h"
#include "runtime/core/error.h"
#include "runtime/nn/gelu.h"
#include "runtime/nn/linear.h"
#include "runtime/nn/relu.h"
#include "runtime/nn/sequential.h"
#include "runtime/nn/transformer_block.h"
#include "runtime/ops/cast.h"
#include "tests/support/gradcheck.h"
#include "tests/support/heap.h"

namespace dp {
namespace {

using test::heap_bytes;
using test::heap_visible;

constexpr int64_t kBatch = 2, kTokens = 8, kEmbed = 32;
constexpr size_t kHeads = 4, kBlocks = 3;

using Chain = std::vector<std::unique_ptr<TransformerBlock>>;

Chain make_chain(bool shared, DType compute) {
  Chain chain;
  for (size_t i = 0; i < kBlocks; ++i) {
    chain.push_back(std::make_unique<TransformerBlock>("h." + std::to_string(i), kEmbed, kHeads,
                                                       /*seed=*/11));
    chain.back()->set_compute_dtype(compute);
    if (shared && i > 0) chain[0]->share_backward_scratch(*chain.back());
  }
  return chain;
}

// Forward through the chain, backward from `dy`; returns the chain's input gradient (a copy:
// the blocks' buffers are reused by the next call).
Tensor run(Chain& chain, const Tensor& x, const Tensor& dy) {
  const Tensor* h = &x;
  for (auto& block : chain) h = &block->forward(*h);
  const Tensor* g = &dy;
  for (size_t i = chain.size(); i-- > 0;) g = &chain[i]->backward(*g);
  return g->clone();
}

void expect_bitwise_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  ASSERT_EQ(g.size(), w.size()) << what;
  size_t wrong = 0;
  for (size_t i = 0; i < g.size() && wrong < 3; ++i) {
    if (g[i] != w[i]) {
      ++wrong;
      ADD_FAILURE() << what << " element " << i << ": " << g[i] << " != " << w[i];
    }
  }
}

// The float32 input and gradient exercise the dtype conversions at the chain's edges under
// bfloat16 compute; two steps, so that the second runs over buffers the first left behind.
TEST(BackwardScratch, SharedBlocksComputeWhatSeparateBlocksCompute) {
  for (const DType compute : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(compute));
    Chain separate = make_chain(false, compute), shared = make_chain(true, compute);
    for (int step = 0; step < 2; ++step) {
      const Tensor x = test::random_tensor({kBatch, kTokens, kEmbed}, 100 + uint64_t(step));
      const Tensor dy = test::random_tensor({kBatch, kTokens, kEmbed}, 200 + uint64_t(step));
      const Tensor want = run(separate, x, dy);
      const Tensor got = run(shared, x, dy);
      expect_bitwise_equal(got, want, "dL/dx, step " + std::to_string(step));
      for (size_t i = 0; i < kBlocks; ++i) {
        const std::vector<Parameter*> a = separate[i]->parameters(), b = shared[i]->parameters();
        ASSERT_EQ(a.size(), b.size());
        for (size_t p = 0; p < a.size(); ++p)
          expect_bitwise_equal(b[p]->grad, a[p]->grad, b[p]->name + ".grad");
      }
    }
  }
}

TEST(BackwardScratch, ModulesOfAnotherStructureAreRefused) {
  TransformerBlock block("h.0", kEmbed, kHeads, 1);
  Linear linear("proj", size_t(kEmbed), size_t(kEmbed), 1);
  try {
    block.share_backward_scratch(linear);
    FAIL() << "expected a dp::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("h.0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("proj"), std::string::npos) << msg;
  }
  TransformerBlock wider("h.1", 2 * kEmbed, kHeads, 1);  // same structure, other sizes: fine
  EXPECT_NO_THROW(block.share_backward_scratch(wider));
  // A difference deep in the tree is found before anything is shared, and named.
  Sequential a("a"), b("b");
  a.add(std::make_unique<Linear>("a.fc", 4, 4, 1));
  a.add(std::make_unique<ReLU>("a.act"));
  b.add(std::make_unique<Linear>("b.fc", 4, 4, 1));
  b.add(std::make_unique<GELU>("b.act"));
  try {
    a.share_backward_scratch(b);
    FAIL() << "expected a dp::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a and b cannot share backward scratch: they are not "
                                         "built the same way (a.act differs"),
              std::string::npos)
        << e.what();
  }
}

// GptModel shares its blocks' backward buffers: its first backward allocates one block's set
// (18 [B, T, C] float32 tensors), not one per block.
TEST(BackwardScratch, GptBlocksHoldOneSetBetweenThem) {
  if (!heap_visible()) GTEST_SKIP() << "this allocator is not visible to mallinfo2";
  GptConfig c;
  c.layers = 6;
  c.heads = 4;
  c.embed = 64;
  c.context = 64;
  c.vocab = 97;
  GptModel model(c, 5);
  const int64_t B = 4, T = 64;
  std::vector<int32_t> ids(size_t(B * T));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t((i * 31) % c.vocab);
  const Tensor tokens = Tensor::from_vector({B, T}, ids);
  const Tensor& logits = model.forward(tokens);
  const Tensor dlogits = test::random_tensor(logits.shape(), 7, -1e-3f, 1e-3f);
  const size_t btc = size_t(B * T) * c.embed * sizeof(float);  // one [B, T, C] float32
  const size_t set = 18 * btc;                                 // one block's, 1.2 MB
  const size_t before = heap_bytes();
  model.backward(dlogits);
  const size_t grew = heap_bytes() - before;
  // One set, the final LayerNorm's and the head's [B, T, C] gradients, and less than one more
  // [B, T, C] of small blocks: any one kind of scratch left unshared (LayerNorm's dx, the
  // block's two sums, the attention's dqkv: 2 to 3 [B, T, C] for each of 5 blocks) exceeds it.
  EXPECT_LT(grew, set + 3 * btc) << "backward allocated " << grew << " bytes; one block's set is "
                                 << set;
}

}  // namespace
}  // namespace dp
