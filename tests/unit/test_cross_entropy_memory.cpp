// The loss holds one [B, C] float32 buffer: the probabilities, which backward overwrites with
// the gradient (on the CPU), and into which bfloat16 logits are widened. GPT-2's vocabulary at
// 4 x 1024 tokens makes each such buffer 785 MiB.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/tensor.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/ops/cast.h"
#include "tests/support/heap.h"

namespace dp {
namespace {

using test::heap_bytes;
using test::heap_visible;

constexpr int64_t kRows = 256, kClasses = 8192;
constexpr size_t kBuffer = size_t(kRows) * size_t(kClasses) * sizeof(float);  // 8 MiB

Tensor random_logits() {
  std::mt19937 gen(3);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> v(size_t(kRows * kClasses));
  for (float& x : v) x = d(gen);
  return Tensor::from_vector({kRows, kClasses}, v);
}

Tensor random_labels() {
  std::vector<int32_t> y(static_cast<size_t>(kRows));
  for (size_t i = 0; i < y.size(); ++i) y[i] = int32_t((i * 7919) % size_t(kClasses));
  return Tensor::from_vector({kRows}, y);
}

TEST(CrossEntropyMemory, Float32LogitsHoldOneBuffer) {
  if (!heap_visible()) GTEST_SKIP() << "this allocator is not visible to mallinfo2";
  const Tensor logits = random_logits(), labels = random_labels();
  SoftmaxCrossEntropy loss;
  const size_t before = heap_bytes();
  loss.forward(logits, labels);
  loss.backward();
  const size_t held = heap_bytes() - before;
  EXPECT_LT(held, kBuffer + kBuffer / 10)
      << "held " << held << " bytes for one " << kBuffer << "-byte [B, C] buffer";
}

TEST(CrossEntropyMemory, Bfloat16LogitsAreWidenedIntoTheProbabilities) {
  if (!heap_visible()) GTEST_SKIP() << "this allocator is not visible to mallinfo2";
  const Tensor logits32 = random_logits(), labels = random_labels();
  Tensor logits16 = Tensor::zeros({kRows, kClasses}, DType::bf16);
  cast_into(logits32, logits16);
  SoftmaxCrossEntropy loss;
  const size_t before = heap_bytes();
  loss.forward(logits16, labels);
  loss.backward();
  const size_t held = heap_bytes() - before;
  // The float32 buffer and the bfloat16 gradient handed back: 6 bytes per logit.
  EXPECT_LT(held, kBuffer * 3 / 2 + kBuffer / 10) << "held " << held << " bytes";
}

// Widening in place changes no bit: the bfloat16 logits' loss and gradient are those of their
// float32 widening, the gradient rounded once.
TEST(CrossEntropyMemory, Bfloat16InPlaceMatchesTheWidenedFloat32) {
  const Tensor labels = random_labels();
  Tensor logits16 = Tensor::zeros({kRows, kClasses}, DType::bf16);
  cast_into(random_logits(), logits16);
  Tensor widened = Tensor::zeros({kRows, kClasses});
  cast_into(logits16, widened);
  SoftmaxCrossEntropy a, b;
  EXPECT_EQ(a.forward(logits16, labels), b.forward(widened, labels));
  EXPECT_EQ(a.correct(), b.correct());
  const Tensor& g16 = a.backward(0.5f);
  ASSERT_EQ(g16.dtype(), DType::bf16);
  Tensor want = Tensor::zeros({kRows, kClasses}, DType::bf16);
  cast_into(b.backward(0.5f), want);
  const std::vector<uint16_t> got(static_cast<const uint16_t*>(g16.raw()),
                                  static_cast<const uint16_t*>(g16.raw()) + g16.numel());
  const std::vector<uint16_t> expect(static_cast<const uint16_t*>(want.raw()),
                                     static_cast<const uint16_t*>(want.raw()) + want.numel());
  EXPECT_EQ(got, expect);
}

TEST(CrossEntropyMemory, ASecondBackwardAfterOneForwardIsAnError) {
  SoftmaxCrossEntropy loss;
  loss.forward(random_logits(), random_labels());
  loss.backward();
  try {
    loss.backward();
    ADD_FAILURE() << "a second backward returned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("backward called twice after one forward"),
              std::string::npos)
        << e.what();
  }
  loss.forward(random_logits(), random_labels());
  EXPECT_NO_THROW(loss.backward());
}

// A forward that fails after widening bfloat16 logits into the probabilities' buffer leaves
// nothing for backward to turn into a gradient: backward says so instead of using it.
TEST(CrossEntropyMemory, BackwardAfterAFailedForwardIsAnError) {
  SoftmaxCrossEntropy loss;
  loss.forward(random_logits(), random_labels());
  Tensor logits16 = Tensor::zeros({kRows, kClasses}, DType::bf16);
  cast_into(random_logits(), logits16);
  Tensor bad = random_labels();
  bad.data<int32_t>()[3] = int32_t(kClasses);
  EXPECT_THROW(loss.forward(logits16, bad), Error);
  try {
    loss.backward();
    ADD_FAILURE() << "backward after a failed forward returned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("or after a forward that failed"), std::string::npos)
        << e.what();
  }
}

TEST(CrossEntropyMemory, ReleasedBuffersAreAllocatedAgainByTheNextForward) {
  const Tensor logits = random_logits(), labels = random_labels();
  SoftmaxCrossEntropy loss;
  const float first = loss.forward(logits, labels);
  loss.release_buffers();
  EXPECT_EQ(loss.forward(logits, labels), first);
  EXPECT_EQ(loss.backward().numel(), kRows * kClasses);
}

}  // namespace
}  // namespace dp
