#include "runtime/ops/conv_ops.h"

#include <limits>

#include "runtime/core/error.h"
#include "runtime/ops/cpu/bf16_ops.h"
#include "runtime/ops/cpu/conv.h"
#include "runtime/ops/cpu/gemm.h"
#include "runtime/ops/cuda/conv.h"
#include "runtime/ops/device_ops.h"

namespace dp::ops {

namespace {

void ensure(Tensor& t, int64_t numel, DType dtype, Device device) {
  if (t.defined() && t.numel() == static_cast<size_t>(numel) && t.dtype() == dtype &&
      t.device() == device)
    return;
  t = Tensor::zeros({numel}, dtype, device);
}

int blas_int(int64_t v, const char* what) {
  DP_CHECK(v >= 0 && v <= std::numeric_limits<int>::max(),
           "conv2d: the GEMM's {} = {} exceeds the BLAS int range (use a smaller batch)", what, v);
  return static_cast<int>(v);
}

// C = alpha op(A) op(B) + beta C on the tensor's device; A and B of `dtype` (float32 or
// bfloat16), C float32 unless c_dtype says bfloat16 (then A and B are bfloat16 too).
void gemm_any(Device d, DType dtype, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
              const void* a, int64_t lda, const void* b, int64_t ldb, float beta, void* c,
              int64_t ldc, DType c_dtype) {
  const int M = blas_int(m, "m"), N = blas_int(n, "n"), K = blas_int(k, "k");
  const int LA = blas_int(lda, "lda"), LB = blas_int(ldb, "ldb"), LC = blas_int(ldc, "ldc");
  if (dtype == DType::bf16) {
    const auto* a16 = static_cast<const bf16*>(a);
    const auto* b16 = static_cast<const bf16*>(b);
    if (d.is_cuda())
      gpu::gemm_bf16(d.index, ta, tb, M, N, K, 1.0f, a16, LA, b16, LB, beta, c, LC, c_dtype,
                     nullptr);
    else
      gemm_bf16(ta, tb, M, N, K, 1.0f, a16, LA, b16, LB, beta, c, LC, c_dtype, nullptr);
    return;
  }
  const auto* af = static_cast<const float*>(a);
  const auto* bf = static_cast<const float*>(b);
  auto* cf = static_cast<float*>(c);
  if (d.is_cuda())
    gpu::gemm_f32(d.index, ta, tb, M, N, K, 1.0f, af, LA, bf, LB, beta, cf, LC, nullptr);
  else
    gemm(ta, tb, M, N, K, 1.0f, af, LA, bf, LB, beta, cf, LC);
}

bool is_float(DType d) {
  return d == DType::f32 || d == DType::bf16;
}

// The output channels of a convolution whose weight is `w`.
int64_t out_channels(const Tensor& w) {
  return w.ndim() == 0 ? 0 : w.dim(0);
}

void check_geometry(const char* op, const Window2d& g, const Tensor& x, const Tensor& w,
                    const Tensor& y) {
  DP_CHECK(g.valid() && x.numel() == static_cast<size_t>(g.batch * g.channels * g.plane()) &&
               w.numel() == static_cast<size_t>(out_channels(w) * g.patch()) &&
               y.numel() == static_cast<size_t>(g.batch * out_channels(w) * g.positions()),
           "{}: input {}, weight {} and output {} do not fit a {}x{} window, stride {}, padding "
           "{} over {} images of {}x{}x{}",
           op, x.str(), w.str(), y.str(), g.kernel, g.kernel, g.stride, g.padding, g.batch,
           g.channels, g.height, g.width);
}

#ifdef DPRUN_HAVE_CUDA
constexpr bool kHaveCuda = true;
#else
constexpr bool kHaveCuda = false;
#endif

void require_cuda(const Tensor& t) {
  DP_CHECK(kHaveCuda || !t.is_cuda(),
           "conv2d: {} is a CUDA tensor but dprun was built without CUDA", t.str());
}

// Elements of the unfolded input kept in Conv2dWorkspace::col: the batch's on a GPU, one
// image's on the CPU.
int64_t col_numel(const Window2d& g, Device d) {
  return g.patch() * g.positions() * (d.is_cpu() ? 1 : g.batch);
}

// One image's slice of an NCHW tensor (offset in elements times the element size).
template <typename T>
T* image(void* base, int64_t b, int64_t per_image) {
  return static_cast<T*>(base) + b * per_image;
}
template <typename T>
const T* image(const void* base, int64_t b, int64_t per_image) {
  return static_cast<const T*>(base) + b * per_image;
}

template <typename T>
void forward_cpu(const Tensor& x, const Tensor& w, const Tensor* bias, const Window2d& g,
                 Conv2dWorkspace& ws, Tensor& y) {
  const int64_t o = out_channels(w), k = g.patch(), p = g.positions();
  const float* b = bias != nullptr ? bias->f32() : nullptr;
  T* col = static_cast<T*>(ws.col.raw());  // one image's, reused
  for (int64_t i = 0; i < g.batch; ++i) {
    im2col(g, image<T>(x.raw(), i, g.channels * g.plane()), col);
    // The bias goes in first and the GEMM adds to it (beta = 1): one rounding in bfloat16,
    // no second pass over the output.
    T* out = image<T>(y.raw(), i, o * p);
    if (b != nullptr) fill_channels(1, o, p, b, out);
    gemm_any(x.device(), x.dtype(), false, false, o, p, k, w.raw(), k, col, p,
             b != nullptr ? 1.0f : 0.0f, out, p, x.dtype());
  }
}

template <typename T>
void backward_params_cpu(const Tensor& x, const Tensor& dy, const Window2d& g, Conv2dWorkspace& ws,
                         Tensor& dw, Tensor* db) {
  const int64_t o = dw.dim(0), k = g.patch(), p = g.positions();
  T* col = static_cast<T*>(ws.col.raw());
  for (int64_t i = 0; i < g.batch; ++i) {
    im2col(g, image<T>(x.raw(), i, g.channels * g.plane()), col);
    gemm_any(dy.device(), dy.dtype(), false, true, o, k, p, image<T>(dy.raw(), i, o * p), p, col, p,
             1.0f, dw.f32(), k, DType::f32);
  }
  if (db != nullptr)
    channel_sum_accumulate(g.batch, o, p, static_cast<const T*>(dy.raw()), db->f32());
}

template <typename T, typename TX>
void backward_input_cpu(const Tensor& dy, const Tensor& w, const Window2d& g, Conv2dWorkspace& ws,
                        Tensor& dx) {
  const int64_t o = out_channels(w), k = g.patch(), p = g.positions();
  for (int64_t i = 0; i < g.batch; ++i) {
    gemm_any(dy.device(), dy.dtype(), true, false, k, p, o, w.raw(), k,
             image<T>(dy.raw(), i, o * p), p, 0.0f, ws.dcol.f32(), p, DType::f32);
    col2im(g, ws.dcol.f32(), image<TX>(dx.raw(), i, g.channels * g.plane()));
  }
}

}  // namespace

void conv2d_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, const Window2d& g,
                    Conv2dWorkspace& ws, Tensor& y) {
  check_geometry("conv2d", g, x, weight, y);
  DP_CHECK(is_float(x.dtype()) && weight.dtype() == x.dtype() && y.dtype() == x.dtype() &&
               weight.device() == x.device() && y.device() == x.device(),
           "conv2d: input {}, weight {} and output {} must share one float dtype and device",
           x.str(), weight.str(), y.str());
  const int64_t o = out_channels(weight);
  if (bias != nullptr)
    DP_CHECK(bias->dtype() == DType::f32 && bias->numel() == static_cast<size_t>(o) &&
                 bias->device() == x.device(),
             "conv2d: bias {} must be float32 [{}] on {}", bias->str(), o, x.device().str());
  require_cuda(x);
  const Device d = x.device();
  ensure(ws.col, col_numel(g, d), x.dtype(), d);
  if (g.batch == 0) return;
  if (d.is_cpu()) {
    if (x.dtype() == DType::bf16)
      forward_cpu<bf16>(x, weight, bias, g, ws, y);
    else
      forward_cpu<float>(x, weight, bias, g, ws, y);
    return;
  }
#ifdef DPRUN_HAVE_CUDA
  const int64_t n = g.batch * g.positions(), k = g.patch();
  ensure(ws.out, o * n, DType::f32, d);
  gpu::im2col(d.index, x.dtype(), g, x.raw(), ws.col.raw());
  gemm_any(d, x.dtype(), false, false, o, n, k, weight.raw(), k, ws.col.raw(), n, 0.0f,
           ws.out.raw(), n, DType::f32);
  gpu::channel_major_to_nchw(d.index, x.dtype(), g.batch, o, g.positions(), ws.out.f32(),
                             bias != nullptr ? bias->f32() : nullptr, y.raw());
#endif
}

void conv2d_backward_params(const Tensor& x, const Tensor& dy, const Window2d& g,
                            Conv2dWorkspace& ws, Tensor& dweight, Tensor* dbias) {
  const int64_t o = dweight.ndim() == 0 ? 0 : dweight.dim(0);
  DP_CHECK(ws.col.defined() && ws.col.dtype() == dy.dtype() && ws.col.device() == dy.device() &&
               ws.col.numel() == static_cast<size_t>(col_numel(g, dy.device())),
           "conv2d backward: no forward of this geometry and dtype to differentiate (dy {})",
           dy.str());
  DP_CHECK(x.dtype() == dy.dtype() && x.device() == dy.device() &&
               x.numel() == static_cast<size_t>(g.batch * g.channels * g.plane()),
           "conv2d backward: input {} is not the forward's (dy {})", x.str(), dy.str());
  DP_CHECK(dy.numel() == static_cast<size_t>(g.batch * o * g.positions()) &&
               dweight.dtype() == DType::f32 &&
               dweight.numel() == static_cast<size_t>(o * g.patch()) &&
               dweight.device() == dy.device(),
           "conv2d backward: dy {} and weight gradient {} do not fit the forward", dy.str(),
           dweight.str());
  if (dbias != nullptr)
    DP_CHECK(dbias->dtype() == DType::f32 && dbias->numel() == static_cast<size_t>(o) &&
                 dbias->device() == dy.device(),
             "conv2d backward: bias gradient {} must be float32 [{}]", dbias->str(), o);
  require_cuda(dy);
  if (g.batch == 0) return;
  const Device d = dy.device();
  if (d.is_cpu()) {
    if (dy.dtype() == DType::bf16)
      backward_params_cpu<bf16>(x, dy, g, ws, dweight, dbias);
    else
      backward_params_cpu<float>(x, dy, g, ws, dweight, dbias);
    return;
  }
#ifdef DPRUN_HAVE_CUDA
  const int64_t n = g.batch * g.positions(), k = g.patch();
  ensure(ws.dout, o * n, dy.dtype(), d);
  gpu::nchw_to_channel_major(d.index, dy.dtype(), g.batch, o, g.positions(), dy.raw(),
                             ws.dout.raw());
  gemm_any(d, dy.dtype(), false, true, o, k, n, ws.dout.raw(), n, ws.col.raw(), n, 1.0f,
           dweight.raw(), k, DType::f32);
  if (dbias != nullptr)
    gpu::channel_sum_accumulate(d.index, dy.dtype(), g.batch, o, g.positions(), dy.raw(),
                                dbias->f32());
#endif
}

void conv2d_backward_input(const Tensor& dy, const Tensor& weight, const Window2d& g,
                           Conv2dWorkspace& ws, Tensor& dx) {
  check_geometry("conv2d backward", g, dx, weight, dy);
  DP_CHECK(weight.dtype() == dy.dtype() && is_float(dx.dtype()) && weight.device() == dy.device() &&
               dx.device() == dy.device(),
           "conv2d backward: dy {}, weight {} and dx {} must be float tensors on one device, dy "
           "and weight of one dtype",
           dy.str(), weight.str(), dx.str());
  require_cuda(dy);
  if (g.batch == 0) return;
  const Device d = dy.device();
  const int64_t o = out_channels(weight), k = g.patch(), p = g.positions();
  if (d.is_cpu()) {
    ensure(ws.dcol, k * p, DType::f32, d);
    const bool x16 = dx.dtype() == DType::bf16;
    if (dy.dtype() == DType::bf16)
      x16 ? backward_input_cpu<bf16, bf16>(dy, weight, g, ws, dx)
          : backward_input_cpu<bf16, float>(dy, weight, g, ws, dx);
    else
      x16 ? backward_input_cpu<float, bf16>(dy, weight, g, ws, dx)
          : backward_input_cpu<float, float>(dy, weight, g, ws, dx);
    return;
  }
#ifdef DPRUN_HAVE_CUDA
  const int64_t n = g.batch * p;
  DP_CHECK(ws.dout.defined() && ws.dout.numel() == static_cast<size_t>(o * n) &&
               ws.dout.dtype() == dy.dtype() && ws.dout.device() == d,
           "conv2d backward: the input gradient needs conv2d_backward_params first (dy {})",
           dy.str());
  ensure(ws.dcol, k * n, DType::f32, d);
  gemm_any(d, dy.dtype(), true, false, k, n, o, weight.raw(), k, ws.dout.raw(), n, 0.0f,
           ws.dcol.raw(), n, DType::f32);
  gpu::col2im(d.index, dx.dtype(), g, ws.dcol.f32(), dx.raw());
#else
  (void)o;
#endif
}

}  // namespace dp::ops
