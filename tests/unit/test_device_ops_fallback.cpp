// The CUDA dispatch of the layers and optimizers (runtime/ops/device_ops.h) in a build
// without CUDA: every entry point throws a dp::Error saying so, rather than crashing. Mixing
// devices in a layer can only be checked with a GPU (tests/gpu/test_layers_cuda.cpp).
#include <gtest/gtest.h>

#include <string>

#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/tensor.h"
#include "runtime/nn/linear.h"
#include "runtime/ops/device_ops.h"
#include "runtime/optim/sgd.h"

using namespace dp;

TEST(DeviceOpsFallback, ThrowsBuiltWithoutCuda) {
  if (cuda_compiled()) GTEST_SKIP() << "built with CUDA: the fallbacks are not compiled in";
  try {
    gpu::relu_forward(0, 1, nullptr, nullptr);
    FAIL() << "expected a dp::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("built without CUDA"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gpu::gemm_f32(0, false, false, 1, 1, 1, 1.0f, nullptr, 1, nullptr, 1, 0.0f, nullptr,
                             1, nullptr),
               Error);
  EXPECT_THROW(gpu::sum_squares(0, 0, nullptr, nullptr), Error);
}

TEST(DeviceOpsFallback, CpuOptimizerAndLayerStayOnTheCpu) {
  Linear fc("fc", 3, 2, 1);
  SGD opt(fc.parameters(), 0.9f);
  EXPECT_TRUE(opt.device() == Device::cpu());
  EXPECT_FALSE(fc.forward(Tensor::zeros({4, 3})).is_cuda());
}

TEST(DeviceOpsFallback, CudaTensorWithoutGpuIsAnError) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is visible: tests/gpu covers this";
  // Without CUDA (or without a GPU) a layer can never be handed a CUDA tensor: creating one
  // already fails cleanly.
  EXPECT_THROW(Tensor::zeros({2, 3}, DType::f32, Device::cuda(0)), Error);
}
