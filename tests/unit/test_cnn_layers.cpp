// The CNN layers' contracts beyond their gradients: Conv2d against a direct convolution over
// odd geometries, the backward contract (accumulation, grad_ready before dx, re-pointed
// gradient views, skipped dx), initialisation, buffer reuse, MaxPool2d's tie and NaN rules,
// Flatten as a view, and errors that name the layer.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/conv2d.h"
#include "runtime/nn/flatten.h"
#include "runtime/nn/maxpool2d.h"
#include "tests/support/gradcheck.h"

using namespace dp;
using test::random_tensor;

namespace {

// y[b, o, oh, ow] = bias[o] + sum over c, ki, kj of w[o, c, ki, kj] * x[b, c, ih, iw], in
// double, straight from the definition.
std::vector<double> direct_conv(const Tensor& x, const Tensor& w, const Tensor& bias,
                                int64_t stride, int64_t pad) {
  const int64_t B = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3);
  const int64_t O = w.dim(0), K = w.dim(2);
  const int64_t OH = (H + 2 * pad - K) / stride + 1, OW = (W + 2 * pad - K) / stride + 1;
  const float* xv = x.f32();
  const float* wv = w.f32();
  std::vector<double> y;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double s = bias.numel() > 0 ? bias.f32()[o] : 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t ki = 0; ki < K; ++ki)
              for (int64_t kj = 0; kj < K; ++kj) {
                const int64_t ih = oh * stride - pad + ki, iw = ow * stride - pad + kj;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                s += double(wv[((o * C + c) * K + ki) * K + kj]) *
                     xv[((b * C + c) * H + ih) * W + iw];
              }
          y.push_back(s);
        }
  return y;
}

}  // namespace

TEST(Conv2d, MatchesADirectConvolutionOverOddGeometries) {
  struct Case {
    size_t in, out, k, stride, pad;
    Shape x;
  };
  for (const Case& c : {Case{1, 2, 1, 1, 0, {2, 1, 3, 4}}, Case{2, 3, 5, 2, 2, {2, 2, 9, 7}},
                        Case{3, 2, 3, 3, 1, {1, 3, 10, 5}}, Case{2, 4, 4, 1, 0, {3, 2, 4, 6}},
                        Case{1, 1, 3, 1, 1, {1, 1, 1, 1}}}) {
    SCOPED_TRACE(testing::Message() << "k" << c.k << " s" << c.stride << " p" << c.pad);
    Conv2d conv("conv", c.in, c.out, c.k, c.stride, c.pad, 3);
    Tensor x = random_tensor(c.x, 4);
    const Tensor& y = conv.forward(x);
    const std::vector<double> want =
        direct_conv(x, conv.weight().value, conv.bias().value, int64_t(c.stride), int64_t(c.pad));
    ASSERT_EQ(y.numel(), want.size());
    EXPECT_EQ(y.dim(2), conv.out_size(c.x[2]));
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(y.f32()[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << i;
  }
}

TEST(Conv2d, BackwardAccumulatesIntoGrad) {
  Conv2d conv("conv", 2, 3, 3, 1, 1, 5);
  Tensor x = random_tensor({2, 2, 4, 4}, 10);
  Tensor g = random_tensor({2, 3, 4, 4}, 11);
  conv.forward(x);
  conv.backward(g);
  Tensor w1 = conv.weight().grad.clone(), b1 = conv.bias().grad.clone();
  conv.backward(g);
  for (size_t i = 0; i < w1.numel(); ++i)
    EXPECT_FLOAT_EQ(conv.weight().grad.f32()[i], 2 * w1.f32()[i]);
  for (size_t i = 0; i < b1.numel(); ++i)
    EXPECT_FLOAT_EQ(conv.bias().grad.f32()[i], 2 * b1.f32()[i]);
}

TEST(Conv2d, SignalsGradsReadyBeforeComputingDx) {
  Conv2d conv("conv", 2, 3, 3, 1, 1, 5);
  conv.forward(random_tensor({2, 2, 5, 5}, 12));
  // The dx buffer is reused: while the hooks run it must still hold the first dx.
  Tensor dx_buf = conv.backward(random_tensor({2, 3, 5, 5}, 13));
  const std::vector<float> dx_first = dx_buf.to_vector();
  std::vector<std::string> order;
  std::vector<bool> dx_untouched;
  auto hook = [&](Parameter& p) {
    order.push_back(p.name);
    dx_untouched.push_back(dx_buf.to_vector() == dx_first);
  };
  conv.weight().on_grad_ready = hook;
  conv.bias().on_grad_ready = hook;
  const Tensor& dx = conv.backward(random_tensor({2, 3, 5, 5}, 14));
  EXPECT_TRUE(dx.shares_storage_with(dx_buf));
  EXPECT_NE(dx.to_vector(), dx_first);
  EXPECT_EQ(order, (std::vector<std::string>{"conv.weight", "conv.bias"}));
  EXPECT_EQ(dx_untouched, (std::vector<bool>{true, true}));
}

TEST(BatchNorm2d, SignalsGradsReadyBeforeComputingDx) {
  BatchNorm2d bn("bn", 2);
  bn.forward(random_tensor({2, 2, 3, 3}, 15));
  Tensor dx_buf = bn.backward(random_tensor({2, 2, 3, 3}, 16));
  const std::vector<float> dx_first = dx_buf.to_vector();
  std::vector<std::string> order;
  std::vector<bool> dx_untouched;
  auto hook = [&](Parameter& p) {
    order.push_back(p.name);
    dx_untouched.push_back(dx_buf.to_vector() == dx_first);
  };
  bn.weight().on_grad_ready = hook;
  bn.bias().on_grad_ready = hook;
  bn.backward(random_tensor({2, 2, 3, 3}, 17));
  EXPECT_EQ(order, (std::vector<std::string>{"bn.weight", "bn.bias"}));
  EXPECT_EQ(dx_untouched, (std::vector<bool>{true, true}));
}

TEST(Conv2d, WithoutInputGradSkipsDxButWritesParameterGrads) {
  Conv2d conv("conv1", 1, 2, 3, 1, 1, 5);
  conv.set_needs_input_grad(false);
  int ready = 0;
  conv.weight().on_grad_ready = [&](Parameter&) { ++ready; };
  conv.forward(random_tensor({2, 1, 4, 4}, 18));
  EXPECT_FALSE(conv.backward(random_tensor({2, 2, 4, 4}, 19)).defined());
  EXPECT_EQ(ready, 1);
  double norm = 0;
  for (float v : conv.weight().grad.to_vector()) norm += std::fabs(v);
  EXPECT_GT(norm, 0.0);
}

TEST(Conv2d, WritesThroughARepointedGradView) {
  // The Reducer makes each gradient a view into a bucket's flat buffer.
  Conv2d conv("conv", 2, 2, 2, 1, 0, 5);
  Tensor bucket = Tensor::zeros({2 + 16 + 4});
  conv.bias().grad = bucket.view(0, {2});
  conv.weight().grad = bucket.view(2, {2, 2, 2, 2});
  conv.forward(random_tensor({2, 2, 3, 3}, 20));
  conv.backward(random_tensor({2, 2, 2, 2}, 21));
  const auto flat = bucket.to_vector();
  for (size_t i = 0; i < 18; ++i) EXPECT_NE(flat[i], 0.0f) << i;
  for (size_t i = 18; i < flat.size(); ++i) EXPECT_EQ(flat[i], 0.0f) << i;
  // A wrong-sized view is an error, not memory corruption.
  conv.weight().grad = bucket.view(0, {3, 2, 2});
  EXPECT_THROW(conv.backward(random_tensor({2, 2, 2, 2}, 21)), Error);
}

TEST(Conv2d, InitialisationIsPyTorchsAndSeeded) {
  Conv2d a("conv1", 3, 8, 3, 1, 1, 42), b("conv1", 3, 8, 3, 1, 1, 42),
      c("conv1", 3, 8, 3, 1, 1, 43);
  EXPECT_EQ(a.weight().value.to_vector(), b.weight().value.to_vector());
  EXPECT_NE(a.weight().value.to_vector(), c.weight().value.to_vector());
  const double bound = 1.0 / std::sqrt(3.0 * 3 * 3);  // fan_in = C * k * k
  double lo = 1, hi = -1;
  for (float v : a.weight().value.to_vector()) {
    EXPECT_GE(v, -bound);
    EXPECT_LT(v, bound);
    lo = std::min(lo, double(v));
    hi = std::max(hi, double(v));
  }
  EXPECT_LT(lo, -0.8 * bound);
  EXPECT_GT(hi, 0.8 * bound);
  for (float v : a.bias().value.to_vector()) {
    EXPECT_GE(v, -bound);
    EXPECT_LT(v, bound);
  }
  EXPECT_EQ(a.parameters().size(), 2u);
  Conv2d nobias("conv2", 3, 8, 3, 1, 1, 42, false);
  ASSERT_EQ(nobias.parameters().size(), 1u);
  EXPECT_EQ(nobias.parameters()[0]->name, "conv2.weight");
  EXPECT_EQ(nobias.weight().value.shape(), (Shape{8, 3, 3, 3}));
}

TEST(Conv2d, ReusesBuffersUntilTheBatchChanges) {
  Conv2d conv("conv", 2, 3, 3, 2, 1, 5);
  Tensor x = random_tensor({4, 2, 6, 6}, 22);
  const float* first = conv.forward(x).f32();
  conv.backward(random_tensor({4, 3, 3, 3}, 23));
  EXPECT_EQ(conv.forward(random_tensor({4, 2, 6, 6}, 24)).f32(), first);
  // The last, smaller batch of an epoch: a new shape, computed correctly.
  const std::vector<float> small = conv.forward(x.view(0, {1, 2, 6, 6})).to_vector();
  const Tensor& all = conv.forward(x);
  ASSERT_EQ(small.size(), all.numel() / 4);
  for (size_t i = 0; i < small.size(); ++i) EXPECT_FLOAT_EQ(small[i], all.f32()[i]);
}

TEST(Conv2d, ErrorsNameTheLayer) {
  Conv2d conv("conv2", 3, 4, 3, 1, 1, 0);
  try {
    conv.forward(Tensor::zeros({2, 5, 8, 8}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "conv2: expected a float32 or bfloat16 input [batch, 3, height, width], got "
                 "float32[2, 5, 8, 8]");
  }
  EXPECT_THROW(conv.forward(Tensor::zeros({2, 3, 64})), Error);
  EXPECT_THROW(conv.backward(Tensor::zeros({2, 4, 8, 8})), Error);  // before forward
  conv.forward(Tensor::zeros({2, 3, 8, 8}));
  EXPECT_THROW(conv.backward(Tensor::zeros({2, 4, 7, 8})), Error);
  try {
    Conv2d big("conv3", 1, 1, 5, 1, 0, 0);
    big.forward(Tensor::zeros({1, 1, 3, 9}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("conv3: a 5x5 kernel does not fit"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(Conv2d("bad", 0, 4, 3, 1, 1, 0), Error);
  EXPECT_THROW(Conv2d("bad", 3, 4, 3, 0, 1, 0), Error);
}

TEST(MaxPool2d, FirstMaximumWinsTiesAndNaNWins) {
  MaxPool2d pool("pool", 2);
  EXPECT_EQ(pool.stride(), 2u);  // PyTorch's default: stride = kernel
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // One 2x4 image, two windows: [1 3 / 3 2] (tie between (0,1) and (1,0)) and
  // [5 nan / 7 nan] (NaN wins; PyTorch's CPU scan keeps the last NaN).
  Tensor x = Tensor::from_vector({1, 1, 2, 4}, std::vector<float>{1, 3, 5, nan, 3, 2, 7, nan});
  const Tensor& y = pool.forward(x);
  ASSERT_EQ(y.shape(), (Shape{1, 1, 1, 2}));
  EXPECT_EQ(y.f32()[0], 3.0f);
  EXPECT_TRUE(std::isnan(y.f32()[1]));
  EXPECT_EQ(pool.argmax().data<int32_t>()[0], 1);  // (0, 1): the first 3 in row-major order
  EXPECT_EQ(pool.argmax().data<int32_t>()[1], 7);  // (1, 3): the last NaN
  const std::vector<float> dx =
      pool.backward(Tensor::from_vector({1, 1, 1, 2}, std::vector<float>{10, 20})).to_vector();
  EXPECT_EQ(dx, (std::vector<float>{0, 10, 0, 0, 0, 0, 0, 20}));
}

TEST(MaxPool2d, MatchesPyTorchsScanOnEveryPath) {
  // The kernel has a 2x2/stride-2 fast path (whole blocks of outputs; a row's tail as an
  // overlapping last block, or for rows shorter than a block a block that runs on into the
  // next rows, or a padded copy at the tensor's end), an unrolled scan for 2x2 and 3x3
  // windows inside the image, and a general one: each against PyTorch's scan written out
  // here, on values with many ties and a few NaNs.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    size_t k, stride, pad;
    int64_t h, w;
  };
  for (const Case& c : {Case{2, 2, 0, 6, 38}, Case{2, 2, 0, 5, 17}, Case{2, 2, 0, 4, 28},
                        Case{2, 2, 0, 14, 14}, Case{2, 2, 0, 7, 13}, Case{2, 1, 0, 5, 9},
                        Case{3, 2, 1, 7, 12}, Case{3, 3, 0, 9, 10}, Case{4, 2, 2, 9, 11}}) {
    SCOPED_TRACE(testing::Message()
                 << "k" << c.k << " s" << c.stride << " p" << c.pad << " " << c.h << "x" << c.w);
    Tensor x = random_tensor({2, 3, c.h, c.w}, 40);
    for (size_t i = 0; i < x.numel(); ++i) x.f32()[i] = std::round(3 * x.f32()[i]);
    for (size_t i = 5; i < x.numel(); i += 97) x.f32()[i] = nan;
    MaxPool2d pool("pool", c.k, c.stride, c.pad);
    const Tensor& y = pool.forward(x);
    const int64_t oh_n = y.dim(2), ow_n = y.dim(3), k = int64_t(c.k), s = int64_t(c.stride),
                  p = int64_t(c.pad);
    for (int64_t pl = 0; pl < 6; ++pl) {
      const float* img = x.f32() + pl * c.h * c.w;
      for (int64_t oh = 0; oh < oh_n; ++oh)
        for (int64_t ow = 0; ow < ow_n; ++ow) {
          const int64_t h0 = std::max<int64_t>(oh * s - p, 0),
                        w0 = std::max<int64_t>(ow * s - p, 0);
          float best = -std::numeric_limits<float>::infinity();
          int64_t at = h0 * c.w + w0;
          for (int64_t ih = h0; ih < std::min<int64_t>(oh * s - p + k, c.h); ++ih)
            for (int64_t iw = w0; iw < std::min<int64_t>(ow * s - p + k, c.w); ++iw)
              if (img[ih * c.w + iw] > best || std::isnan(img[ih * c.w + iw])) {
                best = img[ih * c.w + iw];
                at = ih * c.w + iw;
              }
          const int64_t o = (pl * oh_n + oh) * ow_n + ow;
          ASSERT_EQ(pool.argmax().data<int32_t>()[o], at)
              << "plane " << pl << " (" << oh << ", " << ow << ")";
          const float got = y.f32()[o];
          EXPECT_TRUE(got == best || (std::isnan(got) && std::isnan(best)));
        }
    }
  }
}

TEST(MaxPool2d, BackwardRoutesEachGradientToItsArgmaxAndZerosTheRest) {
  // Against the scatter into zeros written out, bit for bit (a NaN and a -0 gradient
  // included), on the cnn's 14x14 maps and on odd sizes whose last row or column no window
  // reads.
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const auto& hw : {std::pair<int64_t, int64_t>{14, 14}, {7, 13}, {6, 38}, {5, 3}}) {
    SCOPED_TRACE(testing::Message() << hw.first << "x" << hw.second);
    const Tensor x = random_tensor({2, 3, hw.first, hw.second}, 41);
    MaxPool2d pool("pool", 2);
    const Tensor& y = pool.forward(x);
    Tensor dy = random_tensor(y.shape(), 42);
    dy.f32()[3] = nan;
    dy.f32()[5] = -0.0f;
    const Tensor& dx = pool.backward(dy);
    std::vector<float> want(x.numel(), 0.0f);
    const int64_t plane = hw.first * hw.second, out = y.dim(2) * y.dim(3);
    for (int64_t o = 0; o < int64_t(y.numel()); ++o)
      want[size_t(o / out * plane + pool.argmax().data<int32_t>()[o])] = dy.f32()[o];
    ASSERT_EQ(dx.numel(), want.size());
    for (size_t i = 0; i < want.size(); ++i)
      // NOLINTNEXTLINE(bugprone-suspicious-memory-comparison): bit identity, NaN and -0 too
      ASSERT_EQ(std::memcmp(&dx.f32()[i], &want[i], sizeof(float)), 0)
          << "pixel " << i << ": " << dx.f32()[i] << ", want " << want[i];
  }
}

TEST(MaxPool2d, PaddingIsNeverSelected) {
  MaxPool2d pool("pool", 3, 1, 1);
  // All negative: a zero from the padding would win if padding were read.
  Tensor x = Tensor::from_vector({1, 1, 2, 2}, std::vector<float>{-4, -3, -2, -1});
  EXPECT_EQ(pool.forward(x).to_vector(), (std::vector<float>{-1, -1, -1, -1}));
}

TEST(MaxPool2d, ErrorsNameTheLayer) {
  EXPECT_THROW(MaxPool2d("pool1", 2, 2, 2), Error);  // padding > kernel / 2
  EXPECT_THROW(MaxPool2d("pool1", 0), Error);
  MaxPool2d pool("pool2", 2);
  try {
    pool.forward(Tensor::zeros({2, 3, 1, 5}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pool2: a 2x2 pooling window does not fit"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(pool.backward(Tensor::zeros({2, 3, 1, 2})), Error);  // before forward
  pool.forward(Tensor::zeros({2, 3, 4, 4}));
  EXPECT_THROW(pool.backward(Tensor::zeros({2, 3, 2, 3})), Error);
}

TEST(Flatten, IsAViewBothWays) {
  Flatten flat("flatten");
  Tensor x = random_tensor({3, 2, 2, 5}, 30);
  const Tensor& y = flat.forward(x);
  EXPECT_EQ(y.shape(), (Shape{3, 20}));
  EXPECT_TRUE(y.shares_storage_with(x));
  Tensor g = random_tensor({3, 20}, 31);
  const Tensor& dx = flat.backward(g);
  EXPECT_EQ(dx.shape(), x.shape());
  EXPECT_TRUE(dx.shares_storage_with(g));
  EXPECT_THROW(flat.backward(random_tensor({3, 21}, 32)), Error);
  EXPECT_THROW(flat.forward(random_tensor({4}, 33)), Error);
  flat.set_needs_input_grad(false);
  flat.forward(x);
  EXPECT_FALSE(flat.backward(g).defined());
}
