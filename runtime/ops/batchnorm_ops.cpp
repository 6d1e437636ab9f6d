#include "runtime/ops/batchnorm_ops.h"

#include <cmath>
#include <initializer_list>

#include "runtime/core/error.h"
#include "runtime/ops/cpu/batchnorm.h"
#include "runtime/ops/cuda/batchnorm.h"

namespace dp::ops {

namespace {

// x [B, C, rest...] as batch x channels x plane.
struct Layout {
  int64_t batch, channels, plane;
};

Layout layout_of(const Tensor& x) {
  DP_CHECK(x.defined() && x.ndim() >= 2 && (x.dtype() == DType::f32 || x.dtype() == DType::bf16),
           "batchnorm: expected a float32 or bfloat16 [batch, channels, ...] tensor, got {}",
           x.defined() ? x.str() : "an undefined tensor");
  int64_t plane = 1;
  for (size_t i = 2; i < x.ndim(); ++i) plane *= x.dim(i);
  return {x.dim(0), x.dim(1), plane};
}

// Every per-channel tensor is float32 [C] on x's device; activations match x.
void check_channels(const Tensor& x, const Layout& l, std::initializer_list<const Tensor*> stats) {
  for (const Tensor* t : stats)
    DP_CHECK(t->defined() && t->dtype() == DType::f32 &&
                 t->numel() == static_cast<size_t>(l.channels) && t->device() == x.device(),
             "batchnorm: per-channel tensor {} must be float32 [{}] on {}",
             t->defined() ? t->str() : "undefined", l.channels, x.device().str());
}

void check_like(const Tensor& x, std::initializer_list<const Tensor*> acts) {
  for (const Tensor* t : acts)
    DP_CHECK(t->defined() && t->shape() == x.shape() && t->dtype() == x.dtype() &&
                 t->device() == x.device(),
             "batchnorm: {} must have the input's shape, dtype and device ({})",
             t->defined() ? t->str() : "undefined", x.str());
}

// The fused ReLU has CPU kernels only; a CUDA caller runs ops::relu_forward / relu_backward.
void check_relu(const Tensor& x, bool relu) {
  DP_CHECK(!relu || !x.is_cuda(),
           "batchnorm: the fused ReLU runs on the CPU only, got {} (apply ops::relu_* after)",
           x.str());
}

#ifndef DPRUN_HAVE_CUDA
[[noreturn]] void no_cuda(const Tensor& x) {
  fail("batchnorm: {} is a CUDA tensor but dprun was built without CUDA", x.str());
}
#endif

}  // namespace

void batchnorm_batch_stats(const Tensor& x, float eps, Tensor& mean, Tensor& invstd,
                           Tensor* running_mean, Tensor* running_var, Tensor* num_batches_tracked,
                           float momentum) {
  const Layout l = layout_of(x);
  check_channels(x, l, {&mean, &invstd});
  const bool update = running_mean != nullptr;
  if (update) {
    DP_CHECK(running_var != nullptr, "batchnorm: running_mean without running_var");
    check_channels(x, l, {running_mean, running_var});
    if (num_batches_tracked != nullptr)
      DP_CHECK(num_batches_tracked->dtype() == DType::f32 && num_batches_tracked->numel() == 1 &&
                   num_batches_tracked->device() == x.device(),
               "batchnorm: num_batches_tracked {} must be one float32 on {}",
               num_batches_tracked->str(), x.device().str());
  }
  const int64_t n = l.batch * l.plane;
  DP_CHECK(n > (update ? 1 : 0),
           "batchnorm: batch statistics of {} need more than {} value per channel", x.str(),
           update ? 1 : 0);
  if (x.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::batchnorm_batch_stats(
        x.device().index, x.dtype(), l.batch, l.channels, l.plane, x.raw(), eps, momentum,
        mean.f32(), invstd.f32(), update ? running_mean->f32() : nullptr,
        update ? running_var->f32() : nullptr,
        update && num_batches_tracked != nullptr ? num_batches_tracked->f32() : nullptr);
    return;
#else
    no_cuda(x);
#endif
  }
  float* mu = mean.f32();
  float* inv = invstd.f32();  // holds the variance until the end
  if (x.dtype() == DType::bf16)
    dp::batchnorm_batch_stats(l.batch, l.channels, l.plane, x.data<bf16>(), mu, inv);
  else
    dp::batchnorm_batch_stats(l.batch, l.channels, l.plane, x.f32(), mu, inv);
  const float unbias = static_cast<float>(double(n) / double(n - 1 > 0 ? n - 1 : 1));
  for (int64_t c = 0; c < l.channels; ++c) {
    const float var = inv[c];
    if (update) {
      float* rm = running_mean->f32();
      float* rv = running_var->f32();
      rm[c] = (1.0f - momentum) * rm[c] + momentum * mu[c];
      rv[c] = (1.0f - momentum) * rv[c] + momentum * var * unbias;
    }
    inv[c] = 1.0f / std::sqrt(var + eps);
  }
  if (update && num_batches_tracked != nullptr) *num_batches_tracked->f32() += 1.0f;
}

void batchnorm_running_stats(const Tensor& running_mean, const Tensor& running_var, float eps,
                             Tensor& mean, Tensor& invstd) {
  const int64_t c = static_cast<int64_t>(running_mean.numel());
  for (const Tensor* t : std::initializer_list<const Tensor*>{&running_var, &mean, &invstd})
    DP_CHECK(t->dtype() == DType::f32 && running_mean.dtype() == DType::f32 &&
                 t->numel() == running_mean.numel() && t->device() == running_mean.device(),
             "batchnorm: running statistics {} and {} must be float32 of one size and device",
             running_mean.str(), t->str());
  if (running_mean.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::batchnorm_running_stats(running_mean.device().index, c, running_mean.f32(),
                                 running_var.f32(), eps, mean.f32(), invstd.f32());
    return;
#else
    no_cuda(running_mean);
#endif
  }
  for (int64_t i = 0; i < c; ++i) {
    mean.f32()[i] = running_mean.f32()[i];
    invstd.f32()[i] = 1.0f / std::sqrt(running_var.f32()[i] + eps);
  }
}

void batchnorm_apply(const Tensor& x, const Tensor& mean, const Tensor& invstd,
                     const Tensor& weight, const Tensor& bias, Tensor& y, bool relu) {
  const Layout l = layout_of(x);
  check_channels(x, l, {&mean, &invstd, &weight, &bias});
  check_like(x, {&y});
  check_relu(x, relu);
  if (x.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::batchnorm_apply(x.device().index, x.dtype(), l.batch, l.channels, l.plane, x.raw(),
                         mean.f32(), invstd.f32(), weight.f32(), bias.f32(), y.raw());
    return;
#else
    no_cuda(x);
#endif
  }
  if (x.dtype() == DType::bf16)
    dp::batchnorm_apply(l.batch, l.channels, l.plane, x.data<bf16>(), mean.f32(), invstd.f32(),
                        weight.f32(), bias.f32(), relu, y.data<bf16>());
  else
    dp::batchnorm_apply(l.batch, l.channels, l.plane, x.f32(), mean.f32(), invstd.f32(),
                        weight.f32(), bias.f32(), relu, y.f32());
}

void batchnorm_backward_params(const Tensor& x, const Tensor& dy, const Tensor& mean,
                               const Tensor& invstd, Tensor& sum_dy, Tensor& sum_dy_xhat,
                               Tensor& dweight, Tensor& dbias, const FusedReLU* relu) {
  const Layout l = layout_of(x);
  check_channels(x, l, {&mean, &invstd, &sum_dy, &sum_dy_xhat, &dweight, &dbias});
  check_like(x, {&dy});
  check_relu(x, relu != nullptr);
  if (relu != nullptr) check_channels(x, l, {&relu->weight, &relu->bias});
  const float* rw = relu != nullptr ? relu->weight.f32() : nullptr;
  const float* rb = relu != nullptr ? relu->bias.f32() : nullptr;
  if (x.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::batchnorm_backward_sums(x.device().index, x.dtype(), l.batch, l.channels, l.plane, x.raw(),
                                 dy.raw(), mean.f32(), invstd.f32(), sum_dy.f32(),
                                 sum_dy_xhat.f32(), dweight.f32(), dbias.f32());
    return;
#else
    no_cuda(x);
#endif
  }
  if (x.dtype() == DType::bf16)
    dp::batchnorm_backward_sums(l.batch, l.channels, l.plane, x.data<bf16>(), dy.data<bf16>(),
                                mean.f32(), invstd.f32(), rw, rb, sum_dy.f32(), sum_dy_xhat.f32());
  else
    dp::batchnorm_backward_sums(l.batch, l.channels, l.plane, x.f32(), dy.f32(), mean.f32(),
                                invstd.f32(), rw, rb, sum_dy.f32(), sum_dy_xhat.f32());
  for (int64_t c = 0; c < l.channels; ++c) {
    dweight.f32()[c] += sum_dy_xhat.f32()[c];
    dbias.f32()[c] += sum_dy.f32()[c];
  }
}

void batchnorm_backward_input(const Tensor& x, const Tensor& dy, const Tensor& mean,
                              const Tensor& invstd, const Tensor& weight, const Tensor& sum_dy,
                              const Tensor& sum_dy_xhat, bool batch_stats, Tensor& dx,
                              const FusedReLU* relu) {
  const Layout l = layout_of(x);
  check_channels(x, l, {&mean, &invstd, &weight, &sum_dy, &sum_dy_xhat});
  check_like(x, {&dy, &dx});
  check_relu(x, relu != nullptr);
  if (relu != nullptr) {
    check_channels(x, l, {&relu->weight, &relu->bias});
    DP_CHECK(relu->weight.f32() == weight.f32(),
             "batchnorm backward: the fused ReLU's weight must be the normalisation's");
  }
  const float* rb = relu != nullptr ? relu->bias.f32() : nullptr;
  if (x.is_cuda()) {
#ifdef DPRUN_HAVE_CUDA
    gpu::batchnorm_backward_input(x.device().index, x.dtype(), l.batch, l.channels, l.plane,
                                  x.raw(), dy.raw(), mean.f32(), invstd.f32(), weight.f32(),
                                  sum_dy.f32(), sum_dy_xhat.f32(), batch_stats, dx.raw());
    return;
#else
    no_cuda(x);
#endif
  }
  if (x.dtype() == DType::bf16)
    dp::batchnorm_backward_input(l.batch, l.channels, l.plane, x.data<bf16>(), dy.data<bf16>(),
                                 mean.f32(), invstd.f32(), weight.f32(), rb, sum_dy.f32(),
                                 sum_dy_xhat.f32(), batch_stats, dx.data<bf16>());
  else
    dp::batchnorm_backward_input(l.batch, l.channels, l.plane, x.f32(), dy.f32(), mean.f32(),
                                 invstd.f32(), weight.f32(), rb, sum_dy.f32(), sum_dy_xhat.f32(),
                                 batch_stats, dx.f32());
}

}  // namespace dp::ops
