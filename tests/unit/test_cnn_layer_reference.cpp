// The CNN layers against PyTorch's own results (tests/data/layer_{conv2d,conv2d_s2,maxpool2d,
// batchnorm2d_train}.json, float64): forward output and every gradient to ~1e-5 relative.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/conv2d.h"
#include "runtime/nn/maxpool2d.h"
#include "tests/support/reference_data.h"

using namespace dp;
using nlohmann::json;
using test::expect_reference;
using test::load_reference;
using test::reference_tensor;

namespace {

void check_conv_case(const std::string& file, const std::string& layer) {
  const json c = load_reference(file);
  ASSERT_EQ(c.at("layer"), layer);
  ASSERT_EQ(c["attrs"]["layout"], "NCHW");
  Tensor x = reference_tensor(c["inputs"]["x"]);
  Tensor w = reference_tensor(c["inputs"]["weight"]);
  Tensor b = reference_tensor(c["inputs"]["bias"]);
  ASSERT_EQ(w.dim(2), w.dim(3)) << "square kernels only";
  Conv2d conv("conv", size_t(w.dim(1)), size_t(w.dim(0)), size_t(w.dim(2)),
              c["attrs"]["stride"].get<size_t>(), c["attrs"]["padding"].get<size_t>(), 0);
  conv.weight().value.copy_(w);
  conv.bias().value.copy_(b);

  expect_reference(conv.forward(x), c["output"], "output");
  const Tensor& dx = conv.backward(reference_tensor(c["grad_output"]));
  expect_reference(dx, c["grads"]["x"], "grad x");
  expect_reference(conv.weight().grad, c["grads"]["weight"], "grad weight");
  expect_reference(conv.bias().grad, c["grads"]["bias"], "grad bias");
}

}  // namespace

TEST(CnnLayerReference, Conv2dStride1Padding1) {
  check_conv_case("layer_conv2d.json", "conv2d");
}

TEST(CnnLayerReference, Conv2dStride2Padding1) {
  check_conv_case("layer_conv2d_s2.json", "conv2d_s2");
}

TEST(CnnLayerReference, MaxPool2d) {
  const json c = load_reference("layer_maxpool2d.json");
  ASSERT_EQ(c.at("layer"), "maxpool2d");
  MaxPool2d pool("pool", c["attrs"]["kernel"].get<size_t>(), c["attrs"]["stride"].get<size_t>());
  expect_reference(pool.forward(reference_tensor(c["inputs"]["x"])), c["output"], "output");
  expect_reference(pool.backward(reference_tensor(c["grad_output"])), c["grads"]["x"], "grad x");
}

TEST(CnnLayerReference, BatchNorm2dTraining) {
  const json c = load_reference("layer_batchnorm2d_train.json");
  ASSERT_EQ(c.at("layer"), "batchnorm2d_train");
  Tensor w = reference_tensor(c["inputs"]["weight"]);
  BatchNorm2d bn("bn", size_t(w.numel()), c["attrs"]["eps"].get<float>(),
                 c["attrs"]["momentum"].get<float>());
  bn.weight().value.copy_(w);
  bn.bias().value.copy_(reference_tensor(c["inputs"]["bias"]));
  ASSERT_TRUE(bn.training());
  expect_reference(bn.forward(reference_tensor(c["inputs"]["x"])), c["output"], "output");
  const Tensor& dx = bn.backward(reference_tensor(c["grad_output"]));
  expect_reference(dx, c["grads"]["x"], "grad x");
  expect_reference(bn.weight().grad, c["grads"]["weight"], "grad weight");
  expect_reference(bn.bias().grad, c["grads"]["bias"], "grad bias");
}
