// The CNN layers (Conv2d, MaxPool2d, BatchNorm2d, Flatten) and the cnn model on CUDA tensors
// against the same objects on the CPU (whose float32 path is checked against finite
// differences and PyTorch in tests/unit): same parameters (same seed, then Module::to), same
// random inputs, in float32 and in bf16. Then the model trained on both from one init, and
// its steady state's allocation count.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "models/cnn.h"
#include "runtime/core/cuda/allocator.h"
#include "runtime/core/rng.h"
#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/conv2d.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/flatten.h"
#include "runtime/nn/maxpool2d.h"
#include "runtime/ops/cast.h"
#include "runtime/optim/sgd.h"
#include "tests/gpu/gpu_test_util.h"

using namespace dp;
using gpu_test::all_close;
using gpu_test::random_floats;

namespace {

const Device kGpu = Device::cuda(0);

// float32 on the host, or its bfloat16 rounding when dtype is bf16.
Tensor random_input(const Shape& shape, uint64_t seed, DType dtype = DType::f32) {
  Tensor x = Tensor::from_vector(shape, random_floats(shape_numel(shape), seed));
  if (dtype == DType::f32) return x;
  Tensor y = Tensor::zeros(shape, DType::bf16);
  cast_into(x, y);
  return y;
}

// Element-wise closeness to a host reference, the absolute floor the reference's largest
// magnitude times `rtol` (a cancelling sum carries its large terms' rounding).
::testing::AssertionResult near_ref(const Tensor& got, const Tensor& want, double rtol) {
  if (got.shape() != want.shape() || got.dtype() != want.dtype())
    return ::testing::AssertionFailure() << got.str() << " vs " << want.str();
  const std::vector<float> w = want.to_vector();
  double floor = 1e-30;
  for (float v : w) floor = std::max(floor, static_cast<double>(std::fabs(v)));
  return all_close(got.to_vector(), w, rtol, floor);
}

// float32: summation order only; bfloat16: a rounding may move by one unit (2^-7).
double tol_for(DType dtype, double f32_tol = 1e-5) {
  return dtype == DType::f32 ? f32_tol : std::ldexp(1.0, -7);
}

std::vector<int32_t> random_labels(size_t n, int classes, uint64_t seed) {
  Philox rng(seed, 29);
  std::vector<int32_t> v(n);
  for (int32_t& y : v) y = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  return v;
}

const DType kDtypes[] = {DType::f32, DType::bf16};

}  // namespace

class CudaCnnLayers : public gpu_test::CudaTest {};

TEST_F(CudaCnnLayers, Conv2dMatchesCpu) {
  struct Case {
    size_t in, out, k, stride, pad;
    bool bias;
    Shape x;
  };
  for (DType dtype : kDtypes) {
    for (const Case& c :
         {Case{3, 8, 3, 1, 1, true, {4, 3, 9, 7}}, Case{5, 4, 3, 2, 1, true, {3, 5, 11, 8}},
          Case{2, 3, 2, 3, 1, false, {2, 2, 7, 8}}, Case{1, 16, 5, 1, 2, true, {8, 1, 12, 12}}}) {
      SCOPED_TRACE(testing::Message()
                   << dtype_name(dtype) << " k" << c.k << " s" << c.stride << " p" << c.pad);
      Conv2d cpu("conv", c.in, c.out, c.k, c.stride, c.pad, 7, c.bias);
      Conv2d dev("conv", c.in, c.out, c.k, c.stride, c.pad, 7, c.bias);
      cpu.set_compute_dtype(dtype);
      dev.set_compute_dtype(dtype);
      dev.to(kGpu);
      // Non-zero starting gradients: backward ACCUMULATES on both sides.
      for (Conv2d* l : {&cpu, &dev})
        for (Parameter* p : l->parameters()) p->grad.fill_(0.125f);
      std::vector<std::string> order;
      for (Parameter* p : dev.parameters())
        p->on_grad_ready = [&order](Parameter& q) { order.push_back(q.name); };
      const Tensor x = random_input(c.x, 1, dtype);
      const Tensor& y = cpu.forward(x);
      const Tensor& yd = dev.forward(x.to(kGpu));
      EXPECT_TRUE(yd.is_cuda());
      EXPECT_TRUE(near_ref(yd, y, tol_for(dtype, 1e-4)));
      const Tensor dy = random_input(y.shape(), 2, dtype);
      const Tensor& dx = cpu.backward(dy);
      const Tensor& dxd = dev.backward(dy.to(kGpu));
      EXPECT_TRUE(near_ref(dxd, dx, tol_for(dtype, 1e-4)));
      EXPECT_TRUE(near_ref(dev.weight().grad, cpu.weight().grad, 1e-4));
      if (c.bias) {
        EXPECT_TRUE(near_ref(dev.bias().grad, cpu.bias().grad, 1e-5));
      }
      ASSERT_FALSE(order.empty());
      EXPECT_EQ(order.front(), "conv.weight");
    }
  }
}

TEST_F(CudaCnnLayers, Conv2dWithoutInputGradSkipsDx) {
  Conv2d dev("conv1", 1, 4, 3, 1, 1, 1);
  dev.to(kGpu);
  dev.set_needs_input_grad(false);
  dev.forward(random_input({2, 1, 6, 6}, 3).to(kGpu));
  EXPECT_FALSE(dev.backward(random_input({2, 4, 6, 6}, 4).to(kGpu)).defined());
}

TEST_F(CudaCnnLayers, MaxPool2dMatchesCpuExactly) {
  for (DType dtype : kDtypes) {
    struct Case {
      size_t k, stride, pad;
    };
    for (const Case& c : {Case{2, 2, 0}, Case{3, 2, 1}, Case{3, 1, 1}}) {
      SCOPED_TRACE(testing::Message() << dtype_name(dtype) << " k" << c.k << " s" << c.stride);
      MaxPool2d cpu("pool", c.k, c.stride, c.pad), dev("pool", c.k, c.stride, c.pad);
      // Values on a coarse grid: ties in many windows, so the tie rule is exercised.
      Tensor x = random_input({3, 4, 9, 10}, 5);
      for (size_t i = 0; i < x.numel(); ++i) x.f32()[i] = std::round(4 * x.f32()[i]) / 4;
      x.f32()[7] = std::nanf("");
      Tensor xin = x;
      if (dtype == DType::bf16) {
        xin = Tensor::zeros(x.shape(), DType::bf16);
        cast_into(x, xin);
      }
      const Tensor& y = cpu.forward(xin);
      EXPECT_TRUE(near_ref(dev.forward(xin.to(kGpu)), y, 0.0));
      const Tensor ad = dev.argmax().to(Device::cpu());
      const int32_t* a = ad.data<int32_t>();
      const int32_t* b = cpu.argmax().data<int32_t>();
      EXPECT_EQ(std::vector<int32_t>(a, a + ad.numel()), std::vector<int32_t>(b, b + ad.numel()));
      const Tensor dy = random_input(y.shape(), 6, dtype);
      EXPECT_TRUE(near_ref(dev.backward(dy.to(kGpu)), cpu.backward(dy), tol_for(dtype, 1e-6)));
    }
  }
}

TEST_F(CudaCnnLayers, BatchNorm2dMatchesCpuInTrainingAndEval) {
  // With relu the CPU runs the fused kernels and CUDA a separate ReLU pass each way.
  for (DType dtype : kDtypes) {
    for (bool training : {true, false}) {
      for (bool relu : {false, true}) {
        SCOPED_TRACE(testing::Message() << dtype_name(dtype) << (training ? " train" : " eval")
                                        << (relu ? " relu" : ""));
        BatchNorm2d cpu("bn", 6, 1e-5f, 0.1f, relu), dev("bn", 6, 1e-5f, 0.1f, relu);
        for (BatchNorm2d* bn : {&cpu, &dev}) {
          bn->weight().value.copy_(random_input({6}, 7));
          bn->bias().value.copy_(random_input({6}, 8));
          bn->running_var().value.fill_(0.7f);
          bn->train(training);
        }
        dev.to(kGpu);
        const Tensor x = random_input({16, 6, 9, 11}, 9, dtype);
        const Tensor& y = cpu.forward(x);
        EXPECT_TRUE(near_ref(dev.forward(x.to(kGpu)), y, tol_for(dtype, 1e-5)));
        EXPECT_TRUE(near_ref(dev.running_mean().value, cpu.running_mean().value, 1e-5));
        EXPECT_TRUE(near_ref(dev.running_var().value, cpu.running_var().value, 1e-5));
        EXPECT_EQ(dev.num_batches_tracked().value.to_vector(),
                  cpu.num_batches_tracked().value.to_vector());
        const Tensor dy = random_input(x.shape(), 10, dtype);
        const Tensor& dx = cpu.backward(dy);
        EXPECT_TRUE(near_ref(dev.backward(dy.to(kGpu)), dx, tol_for(dtype, 1e-4)));
        EXPECT_TRUE(near_ref(dev.weight().grad, cpu.weight().grad, 1e-4));
        EXPECT_TRUE(near_ref(dev.bias().grad, cpu.bias().grad, 1e-4));
      }
    }
  }
}

TEST_F(CudaCnnLayers, FlattenIsAViewOnTheDevice) {
  Flatten flat("flatten");
  const Tensor x = random_input({2, 3, 4, 5}, 11).to(kGpu);
  const Tensor& y = flat.forward(x);
  EXPECT_TRUE(y.is_cuda());
  EXPECT_TRUE(y.shares_storage_with(x));
  EXPECT_EQ(y.shape(), (Shape{2, 60}));
}

TEST_F(CudaCnnLayers, LayersRejectMixedDevices) {
  Conv2d conv("conv1", 1, 2, 3, 1, 1, 1);
  EXPECT_THROW(conv.forward(random_input({1, 1, 4, 4}, 12).to(kGpu)), Error);
  BatchNorm2d bn("bn1", 2);
  EXPECT_THROW(bn.forward(random_input({2, 2, 3, 3}, 13).to(kGpu)), Error);
}

// 12 SGD-momentum steps of a small cnn on the CPU and on the GPU from the same init and
// batches, in float32 and bf16: the loss curves agree to the compute dtype's rounding, and it
// learns.
TEST_F(CudaCnnLayers, CnnTrainsTheSameOnCpuAndGpu) {
  for (DType dtype : kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    CnnConfig cfg;
    cfg.channels = {8, 16};
    cfg.fc_hidden = {32};
    auto cpu = make_cnn({1, 16, 16}, 10, cfg, 3);
    auto dev = make_cnn({1, 16, 16}, 10, cfg, 3);
    cpu->set_compute_dtype(dtype);
    dev->set_compute_dtype(dtype);
    dev->to(kGpu);
    SGD opt_c(cpu->parameters(), 0.9f), opt_d(dev->parameters(), 0.9f);
    SoftmaxCrossEntropy loss_c, loss_d;
    std::vector<float> curve_c, curve_d;
    for (int step = 0; step < 12; ++step) {
      const uint64_t b = static_cast<uint64_t>(step % 3);
      const Tensor x = random_input({32, 256}, 100 + b);
      const Tensor y = Tensor::from_vector({32}, random_labels(32, 10, 200 + b));
      opt_c.zero_grad();
      opt_d.zero_grad();
      curve_c.push_back(loss_c.forward(cpu->forward(x), y));
      curve_d.push_back(loss_d.forward(dev->forward(x.to(kGpu)), y));
      cpu->backward(loss_c.backward());
      dev->backward(loss_d.backward());
      opt_c.step(0.05f);
      opt_d.step(0.05f);
    }
    const double tol = dtype == DType::f32 ? 1e-3 : 3e-2;
    for (size_t i = 0; i < curve_c.size(); ++i)
      EXPECT_NEAR(curve_d[i], curve_c[i], tol * std::fabs(curve_c[i])) << "step " << i;
    EXPECT_LT(curve_d[9] + curve_d[10] + curve_d[11], curve_d[0] + curve_d[1] + curve_d[2]);
    auto bc = cpu->buffers(), bd = dev->buffers();
    ASSERT_EQ(bc.size(), bd.size());
    for (size_t i = 0; i < bc.size(); ++i) EXPECT_TRUE(bd[i]->value.is_cuda()) << bd[i]->name;
  }
}

// After the first steps every buffer (activations, im2col workspaces, BatchNorm statistics,
// cuBLASLt plans, bf16 copies) exists: later steps never call cudaMalloc.
TEST_F(CudaCnnLayers, CnnSteadyStateStepAllocatesNothing) {
  for (DType dtype : kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    auto model = make_cnn({3, 16, 16}, 10, CnnConfig{}, 4);
    model->set_compute_dtype(dtype);
    model->to(kGpu);
    SGD opt(model->parameters(), 0.9f);
    SoftmaxCrossEntropy loss;
    const Tensor x = random_input({16, 768}, 14).to(kGpu);
    const Tensor y = Tensor::from_vector({16}, random_labels(16, 10, 15));
    auto step = [&] {
      opt.zero_grad();
      loss.forward(model->forward(x), y);
      model->backward(loss.backward());
      opt.step(1e-2f);
    };
    for (int i = 0; i < 3; ++i) step();
    const AllocatorStats before = default_cuda_allocator().stats();
    for (int i = 0; i < 4; ++i) step();
    const AllocatorStats after = default_cuda_allocator().stats();
    EXPECT_EQ(after.cuda_malloc_calls, before.cuda_malloc_calls)
        << "before: " << before.str() << "\nafter: " << after.str();
    EXPECT_EQ(after.active_blocks, before.active_blocks);
  }
}
