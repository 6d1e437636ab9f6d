// The element-wise, loss and optimizer kernels against the CPU functions they replace
// (runtime/ops/cpu/elementwise.h, nn::SoftmaxCrossEntropy), on fresh random inputs at odd
// sizes, with guard zones around every output.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "runtime/core/tensor.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/ops/cpu/elementwise.h"
#include "runtime/ops/cuda/elementwise.h"
#include "runtime/ops/cuda/optim.h"
#include "runtime/ops/cuda/softmax_cross_entropy.h"
#include "tests/gpu/gpu_test_util.h"

using namespace dp;
using namespace dp::gpu_test;

namespace {

// A few exact zeros where the ReLU convention (gradient 0 at 0) matters.
std::vector<float> with_zeros(std::vector<float> v) {
  for (size_t i = 0; i < v.size(); i += 5) v[i] = 0.0f;
  return v;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
uint16_t bits(__nv_bfloat16 h) {
  return static_cast<__nv_bfloat16_raw>(h).x;
}

}  // namespace

class CudaElementwise : public CudaTest {};

TEST_F(CudaElementwise, Fill) {
  for (size_t n : odd_sizes()) {
    SCOPED_TRACE(n);
    DeviceBuffer<float> x(random_floats(n, n), stream);
    cuda::fill(n, -2.5f, x.get(), stream);
    EXPECT_TRUE(all_equal(x.download(), std::vector<float>(n, -2.5f)));
    EXPECT_TRUE(x.guards_intact());
  }
}

TEST_F(CudaElementwise, AddRowBias) {
  for (const Shape2d& s : odd_shapes()) {
    SCOPED_TRACE(testing::Message() << s.rows << "x" << s.cols);
    std::vector<float> y = random_floats(s.rows * s.cols, 1 + s.rows);
    const std::vector<float> bias = random_floats(s.cols, 2 + s.cols);
    DeviceBuffer<float> dy(y, stream), dbias(bias, stream);
    cuda::add_row_bias(s.rows, s.cols, dbias.get(), dy.get(), stream);
    dp::add_row_bias(s.rows, s.cols, bias.data(), y.data());
    // One float add per element, the same on both sides: bit-exact.
    EXPECT_TRUE(all_equal(dy.download(), y));
    EXPECT_TRUE(dy.guards_intact());
  }
}

TEST_F(CudaElementwise, ColSumAccumulate) {
  for (const Shape2d& s : odd_shapes()) {
    SCOPED_TRACE(testing::Message() << s.rows << "x" << s.cols);
    const std::vector<float> x = random_floats(s.rows * s.cols, 3 + s.rows);
    std::vector<float> out = random_floats(s.cols, 4 + s.cols);  // accumulates onto this
    DeviceBuffer<float> dx(x, stream), dout(out, stream);
    cuda::col_sum_accumulate(s.rows, s.cols, dx.get(), dout.get(), stream);
    dp::col_sum_accumulate(s.rows, s.cols, x.data(), out.data());
    // Both sum in float, in different orders; the CPU's running sum has an error that grows
    // like eps * rows * E|x| (about 2.5e-8 * rows here), so the absolute floor scales with rows.
    EXPECT_TRUE(all_close(dout.download(), out, 1e-5, 0.05 * double(s.rows)));
    EXPECT_TRUE(dout.guards_intact());
  }
}

// Multiples of 1/8 with small sums are exact in float: any order of summation gives the CPU's
// bits, so a missed or doubled row shows up without any tolerance.
TEST_F(CudaElementwise, ColSumAccumulateExact) {
  for (const Shape2d& s : odd_shapes()) {
    SCOPED_TRACE(testing::Message() << s.rows << "x" << s.cols);
    const std::vector<float> x = random_small_ints(s.rows * s.cols, 5 + s.rows, 4, 0.125f);
    std::vector<float> out = random_small_ints(s.cols, 6 + s.cols);
    DeviceBuffer<float> dx(x, stream), dout(out, stream);
    cuda::col_sum_accumulate(s.rows, s.cols, dx.get(), dout.get(), stream);
    dp::col_sum_accumulate(s.rows, s.cols, x.data(), out.data());
    EXPECT_TRUE(all_equal(dout.download(), out));
  }
}

TEST_F(CudaElementwise, ReluForwardAndBackward) {
  for (size_t n : odd_sizes()) {
    SCOPED_TRACE(n);
    std::vector<float> x = with_zeros(random_floats(n, 7 + n));
    // A NaN is kept, with its gradient (torch.relu): the CPU twin's rule, compared bit for bit.
    x[n / 2] = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> dy = random_floats(n, 8 + n);
    std::vector<float> y(n), dx(n);
    dp::relu_forward(n, x.data(), y.data());
    dp::relu_backward(n, x.data(), dy.data(), dx.data());

    DeviceBuffer<float> dev_x(x, stream), dev_y(n, stream), dev_dy(dy, stream), dev_dx(n, stream);
    cuda::relu_forward(n, dev_x.get(), dev_y.get(), stream);
    cuda::relu_backward(n, dev_x.get(), dev_dy.get(), dev_dx.get(), stream);
    EXPECT_TRUE(all_equal(dev_y.download(), y));
    EXPECT_TRUE(all_equal(dev_dx.download(), dx));
    EXPECT_TRUE(dev_y.guards_intact() && dev_dx.guards_intact());

    // In place, as the header allows: y = x and dx = dy.
    cuda::relu_forward(n, dev_x.get(), dev_x.get(), stream);
    EXPECT_TRUE(all_equal(dev_x.download(), y));
    dev_x.upload(x);
    cuda::relu_backward(n, dev_x.get(), dev_dy.get(), dev_dy.get(), stream);
    EXPECT_TRUE(all_equal(dev_dy.download(), dx));
  }
}

TEST_F(CudaElementwise, AxpyAndScale) {
  for (size_t n : odd_sizes()) {
    SCOPED_TRACE(n);
    const std::vector<float> x = random_floats(n, 9 + n);
    std::vector<float> y = random_floats(n, 10 + n);
    DeviceBuffer<float> dx(x, stream), dy(y, stream);
    cuda::axpy(n, -0.37f, dx.get(), dy.get(), stream);
    dp::axpy(n, -0.37f, x.data(), y.data());
    // The GPU fuses the multiply-add (one rounding instead of two).
    EXPECT_TRUE(all_close(dy.download(), y, 1e-6, 1.0));
    cuda::scale(n, 1.7f, dy.get(), stream);
    dp::scale(n, 1.7f, y.data());
    EXPECT_TRUE(all_close(dy.download(), y, 1e-6, 1.0));
    EXPECT_TRUE(dy.guards_intact());
  }
}

TEST_F(CudaElementwise, SumSquaresMatchesCpuAndIsDeterministic) {
  DeviceBuffer<unsigned char> scratch(cuda::kSumSquaresScratchBytes, stream);
  DeviceBuffer<double> result(1, stream);
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{33}, size_t{1000}, size_t{4097},
                   size_t{262145}, (size_t{1} << 21) + 3, size_t{10000019}}) {
    SCOPED_TRACE(n);
    const std::vector<float> x = random_floats(n, 11 + n, -3.0f, 3.0f);
    DeviceBuffer<float> dx(x, stream);
    const double want = dp::sum_squares(n, x.data());
    cuda::sum_squares(n, dx.get(), result.get(), scratch.get(), stream);
    const double got = result.download()[0];
    // Both accumulate exact double squares; only the order of the additions differs.
    EXPECT_NEAR(got, want, 1e-11 * std::max(want, 1.0));
    for (int rep = 0; rep < 3; ++rep) {
      cuda::sum_squares(n, dx.get(), result.get(), scratch.get(), stream);
      const double again = result.download()[0];
      // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
      EXPECT_EQ(std::memcmp(&again, &got, sizeof(double)), 0) << "not deterministic";
    }
    // accumulate = true adds onto the previous value (what a norm over many tensors uses).
    cuda::sum_squares(n, dx.get(), result.get(), scratch.get(), stream, /*accumulate=*/true);
    EXPECT_NEAR(result.download()[0], 2 * want, 1e-11 * std::max(2 * want, 1.0));
    EXPECT_TRUE(result.guards_intact() && scratch.guards_intact());
  }
}

// f32 -> bf16 against NVIDIA's host conversion (round to nearest even): ties, subnormals,
// overflow to infinity, signed zeros, infinities and NaN.
TEST_F(CudaElementwise, Bf16Conversions) {
  std::vector<float> x = random_floats(4097, 12, -1e4f, 1e4f);
  const float specials[] = {0.0f,
                            -0.0f,
                            1.0f + 1.0f / 256,  // exactly halfway: rounds to even (1.0)
                            1.0f + 3.0f / 256,  // halfway: rounds up to even
                            std::numeric_limits<float>::denorm_min(),
                            -1e-40f,
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(),
                            3.0e38f};
  x.insert(x.end(), std::begin(specials), std::end(specials));
  const size_t n = x.size();
  DeviceBuffer<float> dx(x, stream);
  DeviceBuffer<__nv_bfloat16> dh(n, stream);
  cuda::f32_to_bf16(n, dx.get(), dh.get(), stream);
  const std::vector<__nv_bfloat16> h = dh.download();
  for (size_t i = 0; i < n; ++i) {
    const __nv_bfloat16 want = __float2bfloat16_rn(x[i]);
    if (std::isnan(x[i]))
      EXPECT_TRUE(std::isnan(__bfloat162float(h[i]))) << i;
    else
      EXPECT_EQ(bits(h[i]), bits(want)) << "x[" << i << "] = " << x[i];
  }
  EXPECT_TRUE(dh.guards_intact());

  // bf16 -> f32 for every one of the 65536 bit patterns: exact.
  std::vector<__nv_bfloat16> all(65536);
  for (uint32_t u = 0; u < 65536; ++u) {
    __nv_bfloat16_raw raw;
    raw.x = static_cast<unsigned short>(u);
    all[u] = __nv_bfloat16(raw);
  }
  DeviceBuffer<__nv_bfloat16> dall(all, stream);
  DeviceBuffer<float> back(all.size(), stream);
  cuda::bf16_to_f32(all.size(), dall.get(), back.get(), stream);
  const std::vector<float> f = back.download();
  for (size_t i = 0; i < all.size(); ++i) {
    const float want = __bfloat162float(all[i]);
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(f[i])) << i;
    else
      EXPECT_EQ(bits(f[i]), bits(want)) << "pattern " << i;
  }
  EXPECT_TRUE(back.guards_intact());
}

TEST_F(CudaElementwise, NullPointersAreErrors) {
  EXPECT_THROW(cuda::fill(3, 1.0f, nullptr, stream), dp::Error);
  EXPECT_THROW(cuda::axpy(3, 1.0f, nullptr, nullptr, stream), dp::Error);
  DeviceBuffer<double> result(1, stream);
  EXPECT_THROW(cuda::sum_squares(0, nullptr, result.get(), nullptr, stream), dp::Error);
  cuda::fill(0, 1.0f, nullptr, stream);  // empty: nothing to check, nothing to launch
}

// ---------------------------------------------------------------------------------------
// Softmax cross-entropy against nn::SoftmaxCrossEntropy.

namespace {

struct CeCase {
  int64_t batch, classes;
  float spread;  // logits uniform in [-spread, spread)
};

struct CeDevice {
  DeviceBuffer<float> logits, probs, row_loss, grad;
  DeviceBuffer<int32_t> labels;
  DeviceBuffer<cuda::CrossEntropyStats> stats;
  CeDevice(const std::vector<float>& x, const std::vector<int32_t>& y, cudaStream_t s)
      : logits(x, s),
        probs(x.size(), s),
        row_loss(y.size(), s),
        grad(x.size(), s),
        labels(y, s),
        stats(1, s) {}
};

std::vector<int32_t> random_labels(int64_t batch, int64_t classes, uint64_t seed) {
  Philox rng(seed, 21);
  std::vector<int32_t> y(static_cast<size_t>(batch));
  for (int32_t& v : y) v = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  return y;
}

}  // namespace

class CudaCrossEntropy : public CudaTest {};

TEST_F(CudaCrossEntropy, MatchesCpuLoss) {
  const CeCase cases[] = {{1, 1, 3.0f},     {1, 7, 3.0f},     {7, 10, 3.0f},
                          {33, 1000, 8.0f}, {4097, 10, 3.0f}, {3, 50257, 5.0f},
                          {64, 33, 3.0f},   {9, 10, 3000.0f}};  // the last: exp would overflow
  uint64_t seed = 40;
  for (const CeCase& c : cases) {
    SCOPED_TRACE(testing::Message()
                 << "batch " << c.batch << " classes " << c.classes << " spread " << c.spread);
    const size_t B = size_t(c.batch), C = size_t(c.classes);
    std::vector<float> x = random_floats(B * C, seed += 3, -c.spread, c.spread);
    std::vector<int32_t> y = random_labels(c.batch, c.classes, seed + 1);
    if (C >= 6 && B >= 2) {
      // Ties for the maximum: the first index wins. Row 0 is counted correct, row 1 is not.
      for (size_t j = 0; j < C; ++j) x[j] = x[C + j] = 0.0f;
      x[2] = x[5] = x[C + 2] = x[C + 5] = 1.0f;
      y[0] = 2;
      y[1] = 5;
    }

    SoftmaxCrossEntropy cpu;
    const Tensor logits = Tensor::from_vector({c.batch, c.classes}, x);
    const Tensor labels = Tensor::from_vector({c.batch}, y);
    const float want_loss = cpu.forward(logits, labels);
    // scale = B makes the CPU gradient probs - onehot exactly (k = B / B = 1).
    const std::vector<float> want_probs_minus_onehot =
        cpu.backward(static_cast<float>(c.batch)).to_vector();
    const std::vector<float> want_grad = cpu.backward(0.5f).to_vector();

    CeDevice d(x, y, stream);
    cuda::softmax_cross_entropy_forward(c.batch, c.classes, d.logits.get(), d.labels.get(),
                                        d.probs.get(), d.row_loss.get(), d.stats.get(), stream);
    const cuda::CrossEntropyStats stats =
        cuda::read_cross_entropy_stats(d.stats.get(), c.classes, stream);
    EXPECT_NEAR(stats.mean_loss, want_loss, 1e-5 * std::max(1.0f, std::fabs(want_loss)));
    EXPECT_EQ(static_cast<size_t>(stats.correct), cpu.correct());
    EXPECT_EQ(stats.bad_row, -1);

    // probs = (probs - onehot) + onehot, from the CPU's own backward.
    std::vector<float> want_probs = want_probs_minus_onehot;
    for (size_t r = 0; r < B; ++r) want_probs[r * C + size_t(y[r])] += 1.0f;
    EXPECT_TRUE(all_close(d.probs.download(), want_probs, 1e-5, 1e-2));

    // Per-row loss: the CPU loss of that row alone (a batch of one). Every row of the small
    // cases, a spread of rows of the large ones.
    const std::vector<float> row_loss = d.row_loss.download();
    const size_t step = B <= 64 ? 1 : 97;
    for (size_t r = 0; r < B; r += step) {
      SoftmaxCrossEntropy one;
      const std::vector<float> xr(x.begin() + long(r * C), x.begin() + long((r + 1) * C));
      const float want = one.forward(Tensor::from_vector({1, c.classes}, xr),
                                     Tensor::from_vector({1}, std::vector<int32_t>{y[r]}));
      EXPECT_NEAR(row_loss[r], want, 1e-5 * std::max(1.0f, std::fabs(want))) << "row " << r;
    }

    cuda::softmax_cross_entropy_backward(c.batch, c.classes, d.probs.get(), d.labels.get(),
                                         static_cast<float>(c.batch), d.grad.get(), stream);
    EXPECT_TRUE(all_close(d.grad.download(), want_probs_minus_onehot, 1e-5, 1e-2));
    // In place (grad = probs), with another scale.
    cuda::softmax_cross_entropy_backward(c.batch, c.classes, d.probs.get(), d.labels.get(), 0.5f,
                                         d.probs.get(), stream);
    EXPECT_TRUE(all_close(d.probs.download(), want_grad, 1e-5, 1e-2 / double(B)));
    EXPECT_TRUE(d.probs.guards_intact() && d.grad.guards_intact() && d.row_loss.guards_intact() &&
                d.stats.guards_intact());
  }
}

// NaN logits: the loss is NaN on both sides, and the argmax (the `correct` count) follows the
// CPU's scan `if (x[j] > x[arg]) arg = j` from arg = 0: a NaN at index 0 wins, any other NaN
// is skipped. Row 1 puts its NaN first in lane 3's stride (3, 35, ...) and its maximum at 35.
TEST_F(CudaCrossEntropy, NanLogitsArgmaxMatchesCpu) {
  const int64_t B = 4, C = 70;
  std::vector<float> x = random_floats(size_t(B * C), 80, -1.0f, 1.0f);
  std::vector<int32_t> y = {40, 35, 50, 7};
  const float nan = std::numeric_limits<float>::quiet_NaN();
  x[0 * C + 0] = nan, x[0 * C + 40] = 5.0f;  // NaN at 0: argmax 0, label 40 is wrong
  x[1 * C + 3] = nan, x[1 * C + 35] = 5.0f;  // argmax 35 (the NaN is skipped): right
  x[2 * C + 1] = nan, x[2 * C + 50] = 5.0f;  // argmax 50: right
  x[3 * C + 7] = 5.0f;                       // no NaN: right
  SoftmaxCrossEntropy cpu;
  const float want_loss = cpu.forward(Tensor::from_vector({B, C}, x), Tensor::from_vector({B}, y));
  ASSERT_TRUE(std::isnan(want_loss));
  ASSERT_EQ(cpu.correct(), 3u);

  CeDevice d(x, y, stream);
  cuda::softmax_cross_entropy_forward(B, C, d.logits.get(), d.labels.get(), d.probs.get(),
                                      d.row_loss.get(), d.stats.get(), stream);
  const cuda::CrossEntropyStats stats = cuda::read_cross_entropy_stats(d.stats.get(), C, stream);
  EXPECT_TRUE(std::isnan(stats.mean_loss));
  EXPECT_EQ(static_cast<size_t>(stats.correct), cpu.correct());
  const std::vector<float> row_loss = d.row_loss.download();
  for (size_t r = 0; r < 3; ++r) EXPECT_TRUE(std::isnan(row_loss[r])) << "row " << r;
  EXPECT_FALSE(std::isnan(row_loss[3]));
}

// A bad label is reported by the host check with the CPU loss's message, naming the first bad
// row; nothing is written out of bounds, before or after.
TEST_F(CudaCrossEntropy, OutOfRangeLabelIsAnError) {
  const int64_t B = 9, C = 10;
  const std::vector<float> x = random_floats(size_t(B * C), 50, -3.0f, 3.0f);
  std::vector<int32_t> y = random_labels(B, C, 51);
  y[5] = int32_t(C);  // one past the end
  y[3] = -1;          // the first bad row
  CeDevice d(x, y, stream);
  cuda::softmax_cross_entropy_forward(B, C, d.logits.get(), d.labels.get(), d.probs.get(),
                                      d.row_loss.get(), d.stats.get(), stream);
  try {
    cuda::read_cross_entropy_stats(d.stats.get(), C, stream);
    FAIL() << "expected a dp::Error for label -1";
  } catch (const dp::Error& e) {
    EXPECT_NE(std::string(e.what()).find("label -1 at batch index 3"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("10 classes"), std::string::npos) << e.what();
  }
  const std::vector<float> row_loss = d.row_loss.download();
  EXPECT_TRUE(std::isnan(row_loss[3]) && std::isnan(row_loss[5]));
  EXPECT_FALSE(std::isnan(row_loss[0]));

  // The backward of a bad row is k * probs, with no onehot term anywhere.
  cuda::softmax_cross_entropy_backward(B, C, d.probs.get(), d.labels.get(), float(B), d.grad.get(),
                                       stream);
  const std::vector<float> probs = d.probs.download(), grad = d.grad.download();
  for (size_t j = 0; j < size_t(C); ++j) {
    EXPECT_EQ(grad[3 * C + j], probs[3 * C + j]);
    EXPECT_EQ(grad[5 * C + j], probs[5 * C + j]);
  }
  EXPECT_TRUE(d.grad.guards_intact() && d.probs.guards_intact());

  // The stats are reset by the next forward: good labels read back cleanly.
  y[3] = 0, y[5] = 1;
  d.labels.upload(y);
  cuda::softmax_cross_entropy_forward(B, C, d.logits.get(), d.labels.get(), d.probs.get(),
                                      d.row_loss.get(), d.stats.get(), stream);
  EXPECT_EQ(cuda::read_cross_entropy_stats(d.stats.get(), C, stream).bad_row, -1);
}

// ---------------------------------------------------------------------------------------
// Optimizers against the CPU updates that SGD::step and AdamW::step call.

namespace {

struct SgdCase {
  float momentum, dampening, weight_decay;
  bool nesterov;
};

constexpr int kSteps = 4;

}  // namespace

class CudaOptim : public CudaTest {};

TEST_F(CudaOptim, SgdMatchesCpuOverSteps) {
  const SgdCase cases[] = {{0.0f, 0.0f, 0.0f, false},
                           {0.0f, 0.0f, 1e-2f, false},
                           {0.9f, 0.0f, 0.0f, false},
                           {0.9f, 0.1f, 1e-2f, false},
                           {0.9f, 0.0f, 1e-2f, true}};
  for (const SgdCase& c : cases)
    for (size_t n : {size_t{1}, size_t{7}, size_t{4097}, (size_t{1} << 20) + 1}) {
      SCOPED_TRACE(testing::Message()
                   << "n " << n << " momentum " << c.momentum << " dampening " << c.dampening
                   << " wd " << c.weight_decay << " nesterov " << c.nesterov);
      std::vector<float> p = random_floats(n, 60 + n), buf(n, 0.0f);
      // NaN in the device buffer: the first step must write it without reading it.
      DeviceBuffer<float> dp_(p, stream), dg(n, stream),
          dbuf(std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()), stream);
      float* buf_ptr = c.momentum == 0.0f ? nullptr : dbuf.get();
      for (int t = 0; t < kSteps; ++t) {
        const std::vector<float> g = random_floats(n, 1000 * uint64_t(t) + n);
        const float lr = 0.1f / float(t + 1);
        dg.upload(g);
        cuda::sgd_update(n, lr, c.momentum, c.dampening, c.weight_decay, c.nesterov, t == 0,
                         dp_.get(), dg.get(), buf_ptr, stream);
        dp::sgd_update(n, lr, c.momentum, c.dampening, c.weight_decay, c.nesterov, t == 0, p.data(),
                       g.data(), c.momentum == 0.0f ? nullptr : buf.data());
        ASSERT_TRUE(all_close(dp_.download(), p, 1e-5, 1.0)) << "param after step " << t;
        if (c.momentum != 0.0f) {
          ASSERT_TRUE(all_close(dbuf.download(), buf, 1e-5, 1.0)) << "buf after step " << t;
        }
        ASSERT_EQ(dg.download(), g) << "the gradient is read, never written";
      }
      EXPECT_TRUE(dp_.guards_intact() && dbuf.guards_intact());
    }
}

TEST_F(CudaOptim, AdamWMatchesCpuOverSteps) {
  const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  for (float wd : {0.0f, 0.01f})
    for (size_t n : {size_t{1}, size_t{7}, size_t{4097}, (size_t{1} << 20) + 1}) {
      SCOPED_TRACE(testing::Message() << "n " << n << " weight_decay " << wd);
      std::vector<float> p = random_floats(n, 70 + n), m(n, 0.0f), v(n, 0.0f);
      DeviceBuffer<float> dp_(p, stream), dm(m, stream), dv(v, stream), dg(n, stream);
      for (int t = 0; t < kSteps; ++t) {
        const std::vector<float> g = random_floats(n, 2000 * uint64_t(t) + n);
        const float lr = 1e-2f;
        // As AdamW::step computes them, in double.
        const double bc1 = 1.0 - std::pow(double(beta1), double(t + 1));
        const double bc2 = 1.0 - std::pow(double(beta2), double(t + 1));
        dg.upload(g);
        cuda::adamw_update(n, lr, beta1, beta2, eps, wd, bc1, bc2, dp_.get(), dg.get(), dm.get(),
                           dv.get(), stream);
        dp::adamw_update(n, lr, beta1, beta2, eps, wd, bc1, bc2, p.data(), g.data(), m.data(),
                         v.data());
        ASSERT_TRUE(all_close(dp_.download(), p, 1e-5, 1.0)) << "param after step " << t;
        ASSERT_TRUE(all_close(dm.download(), m, 1e-5, 0.1)) << "exp_avg after step " << t;
        ASSERT_TRUE(all_close(dv.download(), v, 1e-5, 0.1)) << "exp_avg_sq after step " << t;
      }
      EXPECT_TRUE(dp_.guards_intact() && dm.guards_intact() && dv.guards_intact());
    }
}

TEST_F(CudaOptim, BadArgumentsAreErrors) {
  DeviceBuffer<float> p(4, stream), g(4, stream);
  EXPECT_THROW(
      cuda::sgd_update(4, 0.1f, 0.9f, 0.0f, 0.0f, false, true, p.get(), g.get(), nullptr, stream),
      dp::Error);
  EXPECT_THROW(cuda::adamw_update(4, 0.1f, 0.9f, 0.999f, 1e-8f, 0.0f, 0.0, 0.0, p.get(), g.get(),
                                  p.get(), g.get(), stream),
               dp::Error);
}
