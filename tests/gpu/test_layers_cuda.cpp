// The layers, the loss and the optimizers on CUDA tensors against the same objects on the
// CPU: same parameters (built from the same seed, then moved with Module::to), same random
// Philox inputs (never exactly zero), results compared to fp32 rounding. Then an MLP trained
// on both from one init, and the steady state's allocation count.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "models/mlp.h"
#include "runtime/core/cuda/allocator.h"
#include "runtime/core/tensor.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/linear.h"
#include "runtime/nn/parameter_arena.h"
#include "runtime/nn/relu.h"
#include "runtime/nn/sequential.h"
#include "runtime/optim/adamw.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/sgd.h"
#include "tests/gpu/gpu_test_util.h"

using namespace dp;
using gpu_test::all_close;
using gpu_test::random_floats;

namespace {

const Device kGpu = Device::cuda(0);

Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  return Tensor::from_vector(shape, random_floats(shape_numel(shape), seed, lo, hi));
}

// Element-wise closeness of a (device) tensor to a (host) reference. The absolute floor
// defaults to the reference's largest magnitude: an element that is a near-cancelling sum
// carries the rounding error of its large terms, not of its small result.
::testing::AssertionResult near_ref(const Tensor& got, const Tensor& want, double rtol,
                                    double floor = -1.0) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure() << got.str() << " vs " << want.str();
  const std::vector<float> w = want.to_vector();
  if (floor < 0) {
    floor = 1e-30;
    for (float v : w) floor = std::max(floor, static_cast<double>(std::fabs(v)));
  }
  return all_close(got.to_vector(), w, rtol, floor);
}

std::vector<int32_t> random_labels(size_t n, int classes, uint64_t seed) {
  Philox rng(seed, 17);
  std::vector<int32_t> v(n);
  for (int32_t& y : v) y = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  return v;
}

// Random gradients in every parameter (what a backward would leave).
void fill_random_grads(const std::vector<Parameter*>& params, uint64_t seed) {
  for (size_t i = 0; i < params.size(); ++i)
    params[i]->grad.copy_(random_tensor(params[i]->grad.shape(), seed + 100 * i));
}

void copy_params(const std::vector<Parameter*>& dst, const std::vector<Parameter*>& src) {
  ASSERT_EQ(dst.size(), src.size());
  for (size_t i = 0; i < dst.size(); ++i) {
    dst[i]->value.copy_(src[i]->value);
    dst[i]->grad.copy_(src[i]->grad);
  }
}

}  // namespace

class CudaLayers : public gpu_test::CudaTest {};

void mlp_trains_the_same_on_cpu_and_gpu(DType dtype);
void steady_state_step_allocates_nothing(DType dtype);

TEST_F(CudaLayers, LinearForwardBackwardMatchCpu) {
  for (int64_t batch : {1, 13, 64}) {
    SCOPED_TRACE(batch);
    Linear cpu("fc", 37, 19, 7);
    Linear dev("fc", 37, 19, 7);
    dev.to(kGpu);
    ASSERT_TRUE(dev.weight().value.is_cuda());
    ASSERT_TRUE(dev.bias().grad.is_cuda());
    // Non-zero starting gradients: backward must ACCUMULATE into them on both sides.
    fill_random_grads(cpu.parameters(), 5);
    fill_random_grads(dev.parameters(), 5);
    std::vector<std::string> order;
    for (Parameter* p : dev.parameters())
      p->on_grad_ready = [&order](Parameter& q) { order.push_back(q.name); };

    const Tensor x = random_tensor({batch, 37}, 1 + static_cast<uint64_t>(batch));
    const Tensor xd = x.to(kGpu);
    const Tensor& y = cpu.forward(x);
    const Tensor& yd = dev.forward(xd);
    EXPECT_TRUE(yd.is_cuda());
    EXPECT_TRUE(near_ref(yd, y, 1e-4));

    const Tensor dy = random_tensor({batch, 19}, 99);
    const Tensor& dx = cpu.backward(dy);
    const Tensor& dxd = dev.backward(dy.to(kGpu));
    EXPECT_TRUE(dxd.is_cuda());
    EXPECT_TRUE(near_ref(dxd, dx, 1e-4));
    EXPECT_TRUE(near_ref(dev.weight().grad, cpu.weight().grad, 1e-4));
    EXPECT_TRUE(near_ref(dev.bias().grad, cpu.bias().grad, 1e-5));
    EXPECT_EQ(order, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  }
}

// The Reducer re-points gradients into a bucket's flat buffer: the layer must write through
// those views (here element-aligned only: the bias first, then the weight at an odd offset).
TEST_F(CudaLayers, LinearWritesThroughGradientViews) {
  Linear cpu("fc", 9, 5, 3);
  Linear dev("fc", 9, 5, 3);
  dev.to(kGpu);
  Tensor flat = Tensor::zeros({5 + 45}, DType::f32, kGpu);
  dev.bias().grad = flat.view(0, {5});
  dev.weight().grad = flat.view(5, {5, 9});
  const Tensor x = random_tensor({6, 9}, 21);
  const Tensor dy = random_tensor({6, 5}, 22);
  cpu.forward(x);
  cpu.backward(dy);
  dev.forward(x.to(kGpu));
  dev.backward(dy.to(kGpu));
  const std::vector<float> all = flat.to_vector();
  EXPECT_TRUE(all_close(std::vector<float>(all.begin(), all.begin() + 5),
                        cpu.bias().grad.to_vector(), 1e-5, 1.0));
  EXPECT_TRUE(all_close(std::vector<float>(all.begin() + 5, all.end()),
                        cpu.weight().grad.to_vector(), 1e-4, 1.0));
}

// Buffers follow the input: a new batch size or another device reallocates them, and the
// results stay right.
TEST_F(CudaLayers, BuffersFollowTheInputsShapeAndDevice) {
  ReLU relu("relu"), ref("ref");
  for (int64_t batch : {8, 3, 8}) {
    for (bool on_gpu : {true, false, true}) {
      SCOPED_TRACE(testing::Message() << batch << " " << on_gpu);
      const Tensor x = random_tensor({batch, 5}, 30 + static_cast<uint64_t>(batch));
      const Tensor& y = relu.forward(on_gpu ? x.to(kGpu) : x);
      EXPECT_EQ(y.is_cuda(), on_gpu);
      EXPECT_TRUE(near_ref(y, ref.forward(x), 0.0, 1.0));
    }
  }
}

TEST_F(CudaLayers, LinearWithoutInputGradSkipsDx) {
  Linear dev("fc", 8, 4, 1);
  dev.to(kGpu);
  dev.set_needs_input_grad(false);
  dev.forward(random_tensor({3, 8}, 2).to(kGpu));
  EXPECT_FALSE(dev.backward(random_tensor({3, 4}, 3).to(kGpu)).defined());
}

TEST_F(CudaLayers, LinearRejectsMixedDevices) {
  Linear cpu_layer("fc1", 8, 4, 1);
  try {
    cpu_layer.forward(random_tensor({3, 8}, 2).to(kGpu));
    FAIL() << "expected a dp::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fc1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cuda:0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("cpu"), std::string::npos) << msg;
  }
  Linear dev("fc2", 8, 4, 1);
  dev.to(kGpu);
  EXPECT_THROW(dev.forward(random_tensor({3, 8}, 2)), Error);
  dev.forward(random_tensor({3, 8}, 2).to(kGpu));
  EXPECT_THROW(dev.backward(random_tensor({3, 4}, 3)), Error);  // grad_output on the host
}

TEST_F(CudaLayers, ReluForwardBackwardMatchCpu) {
  ReLU cpu("relu"), dev("relu");
  const Tensor x = random_tensor({17, 33}, 4);
  const Tensor& y = cpu.forward(x);
  const Tensor& yd = dev.forward(x.to(kGpu));
  EXPECT_TRUE(yd.is_cuda());
  EXPECT_TRUE(near_ref(yd, y, 0.0, 1.0));  // a max: exact
  const Tensor dy = random_tensor({17, 33}, 5);
  EXPECT_TRUE(near_ref(dev.backward(dy.to(kGpu)), cpu.backward(dy), 0.0, 1.0));
  EXPECT_THROW(dev.backward(dy), Error);  // grad_output on the host
}

TEST_F(CudaLayers, SequentialMlpForwardBackwardMatchCpu) {
  auto cpu = make_mlp(784, {64}, 10, 11);
  auto dev = make_mlp(784, {64}, 10, 11);
  dev->to(kGpu);
  const Tensor x = random_tensor({32, 784}, 6);
  EXPECT_TRUE(near_ref(dev->forward(x.to(kGpu)), cpu->forward(x), 1e-4));
  const Tensor dy = random_tensor({32, 10}, 7);
  EXPECT_FALSE(dev->backward(dy.to(kGpu)).defined());  // the input needs no gradient
  cpu->backward(dy);
  auto pc = cpu->parameters(), pd = dev->parameters();
  ASSERT_EQ(pc.size(), pd.size());
  for (size_t i = 0; i < pc.size(); ++i) {
    SCOPED_TRACE(pc[i]->name);
    EXPECT_TRUE(pd[i]->grad.is_cuda());
    EXPECT_TRUE(near_ref(pd[i]->grad, pc[i]->grad, 1e-4));
  }
}

TEST_F(CudaLayers, CrossEntropyMatchesCpuWithHostAndDeviceLabels) {
  for (bool labels_on_device : {false, true}) {
    SCOPED_TRACE(labels_on_device);
    const int64_t batch = 37, classes = 10;
    const Tensor logits = random_tensor({batch, classes}, 8, -4.0f, 4.0f);
    const Tensor labels = Tensor::from_vector({batch}, random_labels(37, 10, 9));
    SoftmaxCrossEntropy cpu, dev;
    const float loss = cpu.forward(logits, labels);
    const float loss_d = dev.forward(logits.to(kGpu), labels_on_device ? labels.to(kGpu) : labels);
    EXPECT_NEAR(loss_d, loss, 1e-5 * std::fabs(loss));
    EXPECT_EQ(dev.correct(), cpu.correct());
    const Tensor& g = cpu.backward(0.5f);
    const Tensor& gd = dev.backward(0.5f);
    EXPECT_TRUE(gd.is_cuda());
    EXPECT_TRUE(near_ref(gd, g, 1e-5));
  }
}

TEST_F(CudaLayers, CrossEntropyBadLabelIsAnError) {
  const Tensor logits = random_tensor({4, 3}, 10).to(kGpu);
  const Tensor bad = Tensor::from_vector({4}, std::vector<int32_t>{0, 1, 3, 2});
  SoftmaxCrossEntropy loss;
  EXPECT_THROW(loss.forward(logits, bad), Error);  // host labels: checked up front
  try {  // device labels: reported by the kernel, with the CPU path's message
    loss.forward(logits, bad.to(kGpu));
    FAIL() << "expected a dp::Error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "loss: label 3 at batch index 2 is out of range for 3 classes (expected 0..2)");
  }
  // The loss is still usable afterwards.
  const Tensor good = Tensor::from_vector({4}, std::vector<int32_t>{0, 1, 2, 2});
  EXPECT_TRUE(std::isfinite(loss.forward(logits, good.to(kGpu))));
}

// 20 SGD-momentum steps of a 784-64-10 MLP on the CPU and on the GPU from the same init and
// the same batches, in float32 and in bf16 mixed precision: the loss curves agree to the
// compute dtype's rounding (the GEMMs sum in another order; in bf16 that can move a rounding
// by one unit), and in float32 the final parameters too.
TEST_F(CudaLayers, MlpTrainsTheSameOnCpuAndGpu) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    mlp_trains_the_same_on_cpu_and_gpu(dtype);
  }
}

void mlp_trains_the_same_on_cpu_and_gpu(DType dtype) {
  auto cpu = make_mlp(784, {64}, 10, 3);
  auto dev = make_mlp(784, {64}, 10, 3);
  cpu->set_compute_dtype(dtype);
  dev->set_compute_dtype(dtype);
  dev->to(kGpu);
  SGD opt_c(cpu->parameters(), 0.9f);
  SGD opt_d(dev->parameters(), 0.9f);
  EXPECT_TRUE(opt_d.device() == kGpu);
  SoftmaxCrossEntropy loss_c, loss_d;
  std::vector<float> curve_c, curve_d;
  for (int step = 0; step < 20; ++step) {
    // Four batches in turn: the model can fit them, so the loss must go down.
    const uint64_t b = static_cast<uint64_t>(step % 4);
    const Tensor x = random_tensor({32, 784}, 1000 + b);
    const Tensor y = Tensor::from_vector({32}, random_labels(32, 10, 2000 + b));
    opt_c.zero_grad();
    opt_d.zero_grad();
    curve_c.push_back(loss_c.forward(cpu->forward(x), y));
    curve_d.push_back(loss_d.forward(dev->forward(x.to(kGpu)), y));
    cpu->backward(loss_c.backward());
    dev->backward(loss_d.backward());
    opt_c.step(0.05f);
    opt_d.step(0.05f);
  }
  const double tol = dtype == DType::f32 ? 1e-4 : 1e-2;
  for (size_t i = 0; i < curve_c.size(); ++i)
    EXPECT_NEAR(curve_d[i], curve_c[i], tol * std::fabs(curve_c[i])) << "step " << i;
  // It learned something: the last pass over the four batches beats the first.
  EXPECT_LT(curve_d[16] + curve_d[17] + curve_d[18] + curve_d[19],
            curve_d[0] + curve_d[1] + curve_d[2] + curve_d[3]);
  auto pc = cpu->parameters(), pd = dev->parameters();
  for (size_t i = 0; i < pc.size(); ++i) {
    EXPECT_EQ(pd[i]->value.dtype(), DType::f32) << pc[i]->name << ": master weights";
    if (dtype == DType::f32) {
      EXPECT_LT(max_rel_diff(pd[i]->value, pc[i]->value), 1e-4) << pc[i]->name;
    }
  }
}

TEST_F(CudaLayers, SgdStepsMatchCpu) {
  struct Config {
    float momentum, dampening, weight_decay;
    bool nesterov;
  };
  for (const Config& c : {Config{0.0f, 0.0f, 0.0f, false}, Config{0.9f, 0.1f, 1e-2f, false},
                          Config{0.9f, 0.0f, 1e-3f, true}}) {
    SCOPED_TRACE(testing::Message() << c.momentum << " " << c.nesterov);
    auto cpu = make_mlp(20, {16}, 5, 1);
    auto dev = make_mlp(20, {16}, 5, 1);
    dev->to(kGpu);
    SGD oc(cpu->parameters(), c.momentum, c.dampening, c.weight_decay, c.nesterov);
    SGD od(dev->parameters(), c.momentum, c.dampening, c.weight_decay, c.nesterov);
    for (uint64_t step = 0; step < 3; ++step) {
      fill_random_grads(cpu->parameters(), 50 + step);
      fill_random_grads(dev->parameters(), 50 + step);
      oc.step(0.1f);
      od.step(0.1f);
    }
    auto pc = cpu->parameters(), pd = dev->parameters();
    for (size_t i = 0; i < pc.size(); ++i) EXPECT_TRUE(near_ref(pd[i]->value, pc[i]->value, 1e-5));
  }
}

TEST_F(CudaLayers, AdamWStepsMatchCpu) {
  auto cpu = make_mlp(20, {16}, 5, 2);
  auto dev = make_mlp(20, {16}, 5, 2);
  dev->to(kGpu);
  AdamW oc(cpu->parameters(), 0.9f, 0.999f, 1e-8f, 0.01f);
  AdamW od(dev->parameters(), 0.9f, 0.999f, 1e-8f, 0.01f);
  for (uint64_t step = 0; step < 3; ++step) {
    fill_random_grads(cpu->parameters(), 70 + step);
    fill_random_grads(dev->parameters(), 70 + step);
    oc.step(1e-2f);
    od.step(1e-2f);
  }
  auto pc = cpu->parameters(), pd = dev->parameters();
  for (size_t i = 0; i < pc.size(); ++i) EXPECT_TRUE(near_ref(pd[i]->value, pc[i]->value, 1e-5));
}

// The fused update over a parameter arena (one launch per step) against the per-parameter
// launches on the GPU: the same kernel on the same elements, so bit for bit; and the one-pass
// norm and clip against the per-parameter ones.
TEST_F(CudaLayers, FusedArenaStepsAreBitIdenticalToPerParameterOnes) {
  for (bool adamw : {false, true}) {
    SCOPED_TRACE(adamw ? "adamw" : "sgd");
    auto a = make_mlp(20, {16}, 5, 2);
    auto b = make_mlp(20, {16}, 5, 2);
    a->to(kGpu);
    b->to(kGpu);
    ParameterArena arena(a->parameters());
    std::unique_ptr<Optimizer> oa, ob;
    if (adamw) {
      oa = std::make_unique<AdamW>(a->parameters(), 0.9f, 0.95f, 1e-8f, 0.1f, &arena);
      ob = std::make_unique<AdamW>(b->parameters(), 0.9f, 0.95f, 1e-8f, 0.1f);
    } else {
      oa = std::make_unique<SGD>(a->parameters(), 0.9f, 0.0f, 0.01f, true, &arena);
      ob = std::make_unique<SGD>(b->parameters(), 0.9f, 0.0f, 0.01f, true);
    }
    ASSERT_TRUE(oa->fused());
    for (uint64_t step = 0; step < 3; ++step) {
      fill_random_grads(a->parameters(), 40 + step);
      fill_random_grads(b->parameters(), 40 + step);
      const double na = clip_grad_norm(a->parameters(), 0.5, &arena);
      const double nb = clip_grad_norm(b->parameters(), 0.5);
      EXPECT_NEAR(na, nb, 1e-12 * nb);
      oa->step(1e-2f);
      ob->step(1e-2f);
    }
    auto pa = a->parameters(), pb = b->parameters();
    for (size_t i = 0; i < pa.size(); ++i)
      EXPECT_EQ(pa[i]->value.to_vector(), pb[i]->value.to_vector()) << pa[i]->name;
    oa->zero_grad();
    for (float g : arena.grads().to_vector()) ASSERT_EQ(g, 0.0f);
  }
}

TEST_F(CudaLayers, ClipGradNormMatchesCpu) {
  for (double max_norm : {0.5, 1e6}) {  // clips, does not clip
    SCOPED_TRACE(max_norm);
    auto cpu = make_mlp(20, {16}, 5, 2);
    auto dev = make_mlp(20, {16}, 5, 2);
    dev->to(kGpu);
    fill_random_grads(cpu->parameters(), 90);
    fill_random_grads(dev->parameters(), 90);
    const double nc = clip_grad_norm(cpu->parameters(), max_norm);
    const double nd = clip_grad_norm(dev->parameters(), max_norm);
    EXPECT_NEAR(nd, nc, 1e-9 * nc);
    auto pc = cpu->parameters(), pd = dev->parameters();
    for (size_t i = 0; i < pc.size(); ++i) EXPECT_TRUE(near_ref(pd[i]->grad, pc[i]->grad, 1e-6));
  }
}

TEST_F(CudaLayers, OptimizerRejectsMixedDevices) {
  auto model = make_mlp(8, {4}, 2, 1);
  model->child(0).to(kGpu);  // fc1 on the GPU, fc2 still on the host
  EXPECT_THROW({ SGD o(model->parameters(), 0.9f); }, Error);
  EXPECT_THROW({ AdamW o(model->parameters()); }, Error);
  EXPECT_THROW(clip_grad_norm(model->parameters(), 1.0), Error);
  // Moved after the optimizer was built: the state is on the old device.
  auto m2 = make_mlp(8, {4}, 2, 1);
  SGD opt(m2->parameters(), 0.9f);
  m2->to(kGpu);
  EXPECT_THROW(opt.step(0.1f), Error);
}

// After the first steps every buffer (activations, gradients, optimizer state, loss and
// clip scratch, cuBLASLt plans; bf16 copies of weights and activations) exists: later steps
// never call cudaMalloc.
TEST_F(CudaLayers, SteadyStateStepAllocatesNothing) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    steady_state_step_allocates_nothing(dtype);
  }
}

void steady_state_step_allocates_nothing(DType dtype) {
  auto model = make_mlp(784, {64}, 10, 4);
  model->set_compute_dtype(dtype);
  model->to(kGpu);
  AdamW opt(model->parameters());
  SoftmaxCrossEntropy loss;
  const Tensor x = random_tensor({32, 784}, 12).to(kGpu);
  const Tensor y_host = Tensor::from_vector({32}, random_labels(32, 10, 13));
  const Tensor y_dev = y_host.to(kGpu);
  auto step = [&](int i) {
    opt.zero_grad();
    loss.forward(model->forward(x), i % 2 == 0 ? y_host : y_dev);
    model->backward(loss.backward());
    clip_grad_norm(model->parameters(), 1.0);
    opt.step(1e-3f);
  };
  for (int i = 0; i < 3; ++i) step(i);
  const AllocatorStats before = default_cuda_allocator().stats();
  for (int i = 0; i < 5; ++i) step(i);
  const AllocatorStats after = default_cuda_allocator().stats();
  EXPECT_EQ(after.cuda_malloc_calls, before.cuda_malloc_calls)
      << "before: " << before.str() << "\nafter: " << after.str();
  EXPECT_EQ(after.active_blocks, before.active_blocks);
}
