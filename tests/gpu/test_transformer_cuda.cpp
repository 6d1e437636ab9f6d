// The transformer layers and GPT on CUDA tensors against the same objects on the CPU (same
// parameters, same inputs), in float32 and bfloat16 compute; the GPU kernels' determinism;
// GPT's tied weight, training, generation and allocation-free steady state on a GPU.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/gpt.h"
#include "runtime/core/cuda/allocator.h"
#include "runtime/core/tensor.h"
#include "runtime/nn/attention.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/embedding.h"
#include "runtime/nn/gelu.h"
#include "runtime/nn/layernorm.h"
#include "runtime/nn/transformer_block.h"
#include "runtime/optim/adamw.h"
#include "tests/gpu/gpu_test_util.h"

using namespace dp;
using gpu_test::all_close;
using gpu_test::random_floats;

namespace {

const Device kGpu = Device::cuda(0);

Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  return Tensor::from_vector(shape, random_floats(shape_numel(shape), seed, lo, hi));
}

Tensor random_tokens(const Shape& shape, int vocab, uint64_t seed) {
  Philox rng(seed, 21);
  std::vector<int32_t> v(shape_numel(shape));
  for (int32_t& t : v) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return Tensor::from_vector(shape, v);
}

// max |got - want| <= rtol * max |want|: the tensor's scale is the floor (elements that are
// sums of cancelling terms carry the rounding of their large terms).
::testing::AssertionResult near_ref(const Tensor& got, const Tensor& want, double rtol) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << got.str() << " vs " << want.str();
  const std::vector<float> w = want.to_vector();
  double floor = 1e-30;
  for (float v : w) floor = std::max(floor, static_cast<double>(std::fabs(v)));
  return all_close(got.to_vector(), w, rtol, floor);
}

// `cpu` and `dev` (same construction) get the same random parameters; dev moves to the GPU.
// Both run forward and backward on the same input and upstream gradient in `dtype`; output,
// dx and every parameter gradient must agree within rtol.
void compare(Module& cpu, Module& dev, const Tensor& x, const Tensor& g, DType dtype, double rtol,
             bool has_dx = true) {
  auto pc = cpu.parameters(), pd = dev.parameters();
  ASSERT_EQ(pc.size(), pd.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    if (pc[i]->value.numel() > 1 && pc[i]->name.find("ln") == std::string::npos)
      pc[i]->value.copy_(random_tensor(pc[i]->value.shape(), 100 + i, -0.3f, 0.3f));
    pd[i]->value.copy_(pc[i]->value);
  }
  cpu.set_compute_dtype(dtype);
  dev.set_compute_dtype(dtype);
  dev.to(kGpu);
  const Tensor& y = cpu.forward(x);
  const Tensor& yd = dev.forward(x.to(kGpu));
  EXPECT_TRUE(yd.is_cuda());
  EXPECT_EQ(yd.dtype(), y.dtype());
  EXPECT_TRUE(near_ref(yd, y, rtol)) << cpu.name() << " output";
  const Tensor& dx = cpu.backward(g);
  const Tensor& dxd = dev.backward(g.to(kGpu));
  if (has_dx) {
    EXPECT_TRUE(near_ref(dxd, dx, rtol)) << cpu.name() << " dx";
  }
  for (size_t i = 0; i < pc.size(); ++i) {
    EXPECT_TRUE(pd[i]->grad.is_cuda()) << pc[i]->name;
    EXPECT_TRUE(near_ref(pd[i]->grad, pc[i]->grad, rtol)) << pc[i]->name;
  }
}

// float32: the GPU sums in another order (rounding); bfloat16: that can move a rounding of a
// stored activation by one unit (2^-8), which the next layer carries on.
double tol(DType dtype) {
  return dtype == DType::f32 ? 2e-5 : 2e-2;
}

GptConfig tiny_gpt() {
  GptConfig c;
  c.layers = 2, c.heads = 4, c.embed = 64, c.context = 40, c.vocab = 50;
  return c;
}

}  // namespace

class CudaTransformer : public gpu_test::CudaTest {};

TEST_F(CudaTransformer, EmbeddingMatchesCpu) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Embedding cpu("emb", 300, 70, 1), dev("emb", 300, 70, 1);
    // Many repeats of few rows: what the deterministic scatter-add must get right.
    const Tensor idx = random_tokens({5, 37}, 20, 2);
    compare(cpu, dev, idx, random_tensor({5, 37, 70}, 3), dtype, tol(dtype) / 4, false);
  }
}

TEST_F(CudaTransformer, EmbeddingBadIndexNamesLayerIndexAndPosition) {
  Embedding dev("wte", 10, 4, 1);
  dev.to(kGpu);
  const Tensor bad = Tensor::from_vector({2, 3}, std::vector<int32_t>{0, 1, 2, 3, 4, 12}).to(kGpu);
  try {
    dev.forward(bad);
    FAIL() << "expected a dp::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "wte: index 12 at position [1, 2] of the input int32[2, 3] is outside "
                 "the table's 10 rows [0, 10)");
  }
  // One past the last row: the boundary of the kernel's check.
  const Tensor edge = Tensor::from_vector({2, 2}, std::vector<int32_t>{0, 9, 2, 10}).to(kGpu);
  try {
    dev.forward(edge);
    FAIL() << "expected a dp::Error for index 10 of a 10-row table";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "wte: index 10 at position [1, 1] of the input int32[2, 2] is outside "
                 "the table's 10 rows [0, 10)");
  }
  EXPECT_TRUE(dev.forward(random_tokens({2, 3}, 10, 4).to(kGpu)).is_cuda());
}

TEST_F(CudaTransformer, LayerNormMatchesCpu) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    for (int64_t width : {8, 33, 768}) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " " << width);
      LayerNorm cpu("ln", size_t(width)), dev("ln", size_t(width));
      cpu.weight().value.copy_(random_tensor({width}, 5, 0.5f, 1.5f));
      cpu.bias().value.copy_(random_tensor({width}, 6));
      compare(cpu, dev, random_tensor({3, 7, width}, 7, -2.0f, 4.0f),
              random_tensor({3, 7, width}, 8), dtype, tol(dtype));
    }
  }
}

TEST_F(CudaTransformer, GeluMatchesCpu) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    GELU cpu("gelu"), dev("gelu");
    compare(cpu, dev, random_tensor({33, 257}, 9, -6.0f, 6.0f), random_tensor({33, 257}, 10), dtype,
            tol(dtype) / 4);
  }
}

TEST_F(CudaTransformer, CausalSelfAttentionMatchesCpu) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    // Sequences shorter than a warp, not a multiple of it, and long enough that the CPU
    // splits rows into panels (> 128).
    for (int64_t seq : {1, 5, 45, 150}) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " T=" << seq);
      CausalSelfAttention cpu("attn", 48, 3, 11), dev("attn", 48, 3, 11);
      compare(cpu, dev, random_tensor({2, seq, 48}, 12), random_tensor({2, seq, 48}, 13), dtype,
              tol(dtype));
      EXPECT_TRUE(near_ref(dev.probabilities(), cpu.probabilities(), tol(dtype)));
    }
  }
}

TEST_F(CudaTransformer, TransformerBlockMatchesCpu) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    TransformerBlock cpu("h.0", 64, 4, 14), dev("h.0", 64, 4, 14);
    compare(cpu, dev, random_tensor({3, 19, 64}, 15), random_tensor({3, 19, 64}, 16), dtype,
            tol(dtype));
  }
}

TEST_F(CudaTransformer, GptMatchesCpu) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    GptModel cpu(tiny_gpt(), 17), dev(tiny_gpt(), 17);
    compare(cpu, dev, random_tokens({3, 40}, 50, 18), random_tensor({120, 50}, 19), dtype,
            2 * tol(dtype), false);
  }
}

// The scatter-add and the column sums have a fixed order on the GPU too: the same inputs give
// the same bits (ranks compare losses and norms).
TEST_F(CudaTransformer, BackwardIsDeterministic) {
  GptModel dev(tiny_gpt(), 20);
  dev.to(kGpu);
  const Tensor tok = random_tokens({4, 40}, 8, 21).to(kGpu);  // 8 of 50 tokens: many repeats
  const Tensor g = random_tensor({160, 50}, 22).to(kGpu);
  std::vector<std::vector<float>> first;
  for (int run = 0; run < 2; ++run) {
    for (Parameter* p : dev.parameters()) p->grad.zero_();
    dev.forward(tok);
    dev.backward(g);
    size_t i = 0;
    for (Parameter* p : dev.parameters()) {
      if (run == 0) {
        first.push_back(p->grad.to_vector());
      } else {
        EXPECT_TRUE(gpu_test::all_equal(p->grad.to_vector(), first[i])) << p->name;
      }
      ++i;
    }
  }
}

TEST_F(CudaTransformer, GptTiedWteReadyOnceAfterBothUses) {
  GptModel dev(tiny_gpt(), 23);
  dev.to(kGpu);
  std::map<std::string, int> fired;
  std::string last;
  for (Parameter* p : dev.parameters())
    p->on_grad_ready = [&](Parameter& q) {
      ++fired[q.name];
      last = q.name;
    };
  dev.forward(random_tokens({2, 40}, 50, 24).to(kGpu));
  dev.backward(random_tensor({80, 50}, 25).to(kGpu));
  for (Parameter* p : dev.parameters()) EXPECT_EQ(fired[p->name], 1) << p->name;
  EXPECT_EQ(last, "wte");
}

// A few AdamW steps on the CPU and the GPU from one init: the loss curves agree and fall; the
// steady-state step allocates no device memory.
TEST_F(CudaTransformer, GptTrainsTheSameAndAllocatesNothingInTheSteadyState) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    GptModel cpu(tiny_gpt(), 26), dev(tiny_gpt(), 26);
    cpu.set_compute_dtype(dtype);
    dev.set_compute_dtype(dtype);
    dev.to(kGpu);
    AdamW oc(cpu.parameters(), 0.9f, 0.95f, 1e-8f, 0.1f),
        od(dev.parameters(), 0.9f, 0.95f, 1e-8f, 0.1f);
    SoftmaxCrossEntropy lc, ld;
    const Tensor tok = random_tokens({4, 40}, 50, 27);
    std::vector<int32_t> next(160);
    for (size_t i = 0; i < next.size(); ++i) next[i] = int32_t((i * 7) % 50);
    const Tensor y = Tensor::from_vector({160}, next);
    const Tensor tok_d = tok.to(kGpu), y_d = y.to(kGpu);
    std::vector<float> cc, cd;
    AllocatorStats before;
    for (int step = 0; step < 8; ++step) {
      if (step == 3) before = default_cuda_allocator().stats();
      oc.zero_grad();
      od.zero_grad();
      cc.push_back(lc.forward(cpu.forward(tok), y));
      cd.push_back(ld.forward(dev.forward(tok_d), y_d));
      cpu.backward(lc.backward());
      dev.backward(ld.backward());
      oc.step(3e-3f);
      od.step(3e-3f);
    }
    const AllocatorStats after = default_cuda_allocator().stats();
    EXPECT_EQ(after.cuda_malloc_calls, before.cuda_malloc_calls)
        << "before: " << before.str() << "\nafter: " << after.str();
    for (size_t i = 0; i < cc.size(); ++i)
      EXPECT_NEAR(cd[i], cc[i], (dtype == DType::f32 ? 1e-4 : 2e-2) * cc[i]) << "step " << i;
    EXPECT_LT(cd.back(), cd.front());
  }
}

TEST_F(CudaTransformer, GenerationMatchesCpuAndIsDeterministic) {
  GptModel cpu(tiny_gpt(), 28), dev(tiny_gpt(), 28);
  dev.to(kGpu);
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  // Greedy over 50 tokens: the window slides past the context of 40.
  EXPECT_EQ(generate(dev, prompt, 50, 0.0f, 0, 0), generate(cpu, prompt, 50, 0.0f, 0, 0));
  EXPECT_EQ(generate(dev, prompt, 20, 1.0f, 10, 7), generate(dev, prompt, 20, 1.0f, 10, 7));
}
