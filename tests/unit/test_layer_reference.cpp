// The layers against PyTorch's own results (tests/data/layer_*.json, computed in float64;
// see /work/shared/testdata/README.md): forward output and every gradient.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/core/tensor.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/linear.h"
#include "runtime/nn/relu.h"
#include "tests/support/reference_data.h"

using namespace dp;
using nlohmann::json;

using test::expect_reference;
using test::load_reference;
using test::reference_tensor;

TEST(LayerReference, Linear) {
  const json c = load_reference("layer_linear.json");
  ASSERT_EQ(c.at("layer"), "linear");
  Tensor x = reference_tensor(c["inputs"]["x"]);
  Tensor w = reference_tensor(c["inputs"]["weight"]);
  Tensor b = reference_tensor(c["inputs"]["bias"]);
  Linear fc("fc", size_t(w.dim(1)), size_t(w.dim(0)), 0);
  fc.weight().value.copy_(w);
  fc.bias().value.copy_(b);

  expect_reference(fc.forward(x), c["output"], "output");
  const Tensor& dx = fc.backward(reference_tensor(c["grad_output"]));
  expect_reference(dx, c["grads"]["x"], "grad x");
  expect_reference(fc.weight().grad, c["grads"]["weight"], "grad weight");
  expect_reference(fc.bias().grad, c["grads"]["bias"], "grad bias");
}

TEST(LayerReference, Relu) {
  const json c = load_reference("layer_relu.json");
  ASSERT_EQ(c.at("layer"), "relu");
  ReLU relu("relu");
  expect_reference(relu.forward(reference_tensor(c["inputs"]["x"])), c["output"], "output");
  expect_reference(relu.backward(reference_tensor(c["grad_output"])), c["grads"]["x"], "grad x");
}

TEST(LayerReference, SoftmaxCrossEntropy) {
  const json c = load_reference("layer_softmax_cross_entropy.json");
  ASSERT_EQ(c.at("layer"), "softmax_cross_entropy");
  ASSERT_EQ(c["attrs"]["reduction"], "mean");
  Tensor logits = reference_tensor(c["inputs"]["logits"]);
  std::vector<int32_t> labels = c["attrs"]["labels"].get<std::vector<int32_t>>();
  SoftmaxCrossEntropy loss;
  const float l = loss.forward(logits, Tensor::from_vector({int64_t(labels.size())}, labels));
  const double want = c["output"]["data"][0].get<double>();
  EXPECT_NEAR(l, want, 1e-5 * std::max(1.0, std::fabs(want)));
  // The upstream gradient of a scalar loss is backward's scale.
  const float upstream = c["grad_output"]["data"][0].get<float>();
  expect_reference(loss.backward(upstream), c["grads"]["logits"], "grad logits");
}
