// bf16 mixed precision on the GPU against the same layers on the CPU (whose bf16 path
// tests/unit/test_mixed_precision.cpp checks against float32 references): same seeds, same
// bfloat16-rounded operands, so results differ only by the GEMMs' summation order, which
// may move a bfloat16 rounding by one unit. Whole-MLP training and the steady state's
// allocations are checked in both dtypes in test_layers_cuda.cpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/core/rng.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/linear.h"
#include "runtime/nn/relu.h"
#include "runtime/ops/cast.h"
#include "tests/gpu/gpu_test_util.h"

using namespace dp;
using gpu_test::random_floats;

namespace {

const Device kGpu = Device::cuda(0);

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  return Tensor::from_vector(shape, random_floats(shape_numel(shape), seed));
}

Tensor random_bf16(const Shape& shape, uint64_t seed, Device d = Device::cpu()) {
  Tensor x = random_tensor(shape, seed);
  Tensor y = Tensor::zeros(shape, DType::bf16);
  cast_into(x, y);
  return y.to(d);
}

std::vector<int32_t> random_labels(size_t n, int classes, uint64_t seed) {
  Philox rng(seed, 23);
  std::vector<int32_t> v(n);
  for (int32_t& y : v) y = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  return v;
}

// Every element within `units` bfloat16 units of the reference, measured against the larger
// of the element and `floor` (a cancelling sum carries its terms' error). One unit is 2^-7
// relative at most (bf16 keeps 8 significant bits: the unit of v in [2^e, 2^(e+1)) is
// 2^(e-7), between 2^-8 |v| and 2^-7 |v|), so 2^-7 is what lets a rounding move by one unit.
::testing::AssertionResult within_bf16(const Tensor& got, const Tensor& want, double units,
                                       double floor) {
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  if (g.size() != w.size())
    return ::testing::AssertionFailure() << got.str() << " vs " << want.str();
  for (size_t i = 0; i < g.size(); ++i) {
    const double tol = units * std::ldexp(std::max(std::fabs(double(w[i])), floor), -7);
    if (!(std::fabs(double(g[i]) - double(w[i])) <= tol))
      return ::testing::AssertionFailure()
             << "element " << i << ": " << g[i] << " vs " << w[i] << " (tolerance " << tol << ")";
  }
  return ::testing::AssertionSuccess();
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t.to_vector()) m = std::max(m, std::fabs(double(v)));
  return m;
}

}  // namespace

class CudaMixedPrecision : public gpu_test::CudaTest {};

TEST_F(CudaMixedPrecision, LinearMatchesCpu) {
  for (int64_t batch : {1, 13, 64}) {
    SCOPED_TRACE(batch);
    Linear cpu("fc", 37, 19, 7), dev("fc", 37, 19, 7);
    cpu.set_compute_dtype(DType::bf16);
    dev.set_compute_dtype(DType::bf16);
    dev.to(kGpu);
    const Tensor x = random_tensor({batch, 37}, 1 + static_cast<uint64_t>(batch));
    const Tensor& y = cpu.forward(x);
    const Tensor& yd = dev.forward(x.to(kGpu));
    ASSERT_EQ(yd.dtype(), DType::bf16);
    EXPECT_TRUE(within_bf16(yd, y, 1, 0.05 * max_abs(y)));

    const Tensor dy = random_bf16({batch, 19}, 99);
    cpu.set_needs_input_grad(true);
    dev.set_needs_input_grad(true);
    const Tensor& dx = cpu.backward(dy);
    const Tensor& dxd = dev.backward(dy.to(kGpu));
    ASSERT_EQ(dxd.dtype(), DType::f32) << "dx in the input's dtype";
    EXPECT_LT(max_rel_diff(dxd, dx), 1e-5 * std::max(1.0, max_abs(dx)));
    EXPECT_LT(max_rel_diff(dev.weight().grad, cpu.weight().grad),
              1e-5 * std::max(1.0, max_abs(cpu.weight().grad)));
    EXPECT_LT(max_rel_diff(dev.bias().grad, cpu.bias().grad),
              1e-5 * std::max(1.0, max_abs(cpu.bias().grad)));
  }
}

TEST_F(CudaMixedPrecision, BfloatInputGivesBfloatInputGradient) {
  Linear cpu("fc", 64, 32, 3), dev("fc", 64, 32, 3);
  cpu.set_compute_dtype(DType::bf16);
  dev.set_compute_dtype(DType::bf16);
  dev.to(kGpu);
  const Tensor x = random_bf16({16, 64}, 5);
  cpu.forward(x);
  dev.forward(x.to(kGpu));
  const Tensor dy = random_bf16({16, 32}, 6);
  const Tensor& dx = cpu.backward(dy);
  const Tensor& dxd = dev.backward(dy.to(kGpu));
  ASSERT_EQ(dxd.dtype(), DType::bf16);
  EXPECT_TRUE(within_bf16(dxd, dx, 1, 0.05 * max_abs(dx)));
}

TEST_F(CudaMixedPrecision, ReluAndLossMatchCpuExactly) {
  ReLU cpu("relu"), dev("relu");
  const Tensor x = random_bf16({8, 50}, 7);
  EXPECT_EQ(dev.forward(x.to(kGpu)).to_vector(), cpu.forward(x).to_vector());
  const Tensor dy = random_bf16({8, 50}, 8);
  EXPECT_EQ(dev.backward(dy.to(kGpu)).to_vector(), cpu.backward(dy).to_vector());

  SoftmaxCrossEntropy lc, ld;
  const Tensor logits = random_bf16({8, 10}, 9);
  const Tensor y = Tensor::from_vector({8}, random_labels(8, 10, 10));
  EXPECT_NEAR(ld.forward(logits.to(kGpu), y), lc.forward(logits, y), 1e-5);
  EXPECT_EQ(ld.correct(), lc.correct());
  const Tensor& gd = ld.backward(0.5f);
  ASSERT_EQ(gd.dtype(), DType::bf16);
  EXPECT_TRUE(within_bf16(gd, lc.backward(0.5f), 1, 1e-6));
}
