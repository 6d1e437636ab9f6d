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
using test::expect_matches;
using test::load_case;
using test::tensor_of;

namespace {

void check_conv_case(const std::string& file, const std::string& layer) {
  const json c = load_case(file);
  ASSERT_EQ(c.at("layer"), layer);
  ASSERT_EQ(c["attrs"]["layout"], "NCHW");
  Tensor x = tensor_of(c["inputs"]["x"]);
  Tensor w = tensor_of(c["inputs"]["weight"]);
  Tensor b = tensor_of(c["inputs"]["bias"]);
  ASSERT_EQ(w.dim(2), w.dim(3)) << "square kernels only";
  Conv2d conv("conv", size_t(w.dim(1)), size_t(w.dim(0)), size_t(w.dim(2)),
              c["attrs"]["stride"].get<size_t>(), c["attrs"]["padding"].get<size_t>(), 0);
  conv.weight().value.copy_(w);
  conv.bias().value.copy_(b);

  expect_matches(conv.forward(x), c["output"], "output");
  const Tensor& dx = conv.backward(tensor_of(c["grad_output"]));
  expect_matches(dx, c["grads"]["x"], "grad x");
  expect_matches(conv.weight().grad, c["grads"]["weight"], "grad weight");
  expect_matches(conv.bias().grad, c["grads"]["bias"], "grad bias");
}

}  // namespace

TEST(CnnLayerReference, Conv2dStride1Padding1) {
  check_conv_case("layer_conv2d.json", "conv2d");
}

TEST(CnnLayerReference, Conv2dStride2Padding1) {
  check_conv_case("layer_conv2d_s2.json", "conv2d_s2");
}

TEST(CnnLayerReference, MaxPool2d) {
  const json c = load_case("layer_maxpool2d.json");
  ASSERT_EQ(c.at("layer"), "maxpool2d");
  MaxPool2d pool("pool", c["attrs"]["kernel"].get<size_t>(), c["attrs"]["stride"].get<size_t>());
  expect_matches(pool.forward(tensor_of(c["inputs"]["x"])), c["output"], "output");
  expect_matches(pool.backward(tensor_of(c["grad_output"])), c["grads"]["x"], "grad x");
}

TEST(CnnLayerReference, BatchNorm2dTraining) {
  const json c = load_case("layer_batchnorm2d_train.json");
  ASSERT_EQ(c.at("layer"), "batchnorm2d_train");
  Tensor w = tensor_of(c["inputs"]["weight"]);
  BatchNorm2d bn("bn", size_t(w.numel()), c["attrs"]["eps"].get<float>(),
                 c["attrs"]["momentum"].get<float>());
  bn.weight().value.copy_(w);
  bn.bias().value.copy_(tensor_of(c["inputs"]["bias"]));
  ASSERT_TRUE(bn.training());
  expect_matches(bn.forward(tensor_of(c["inputs"]["x"])), c["output"], "output");
  const Tensor& dx = bn.backward(tensor_of(c["grad_output"]));
  expect_matches(dx, c["grads"]["x"], "grad x");
  expect_matches(bn.weight().grad, c["grads"]["weight"], "grad weight");
  expect_matches(bn.bias().grad, c["grads"]["bias"], "grad bias");
}
