#pragma once
// Shared by the GPU tests: the skip rule and a kernel that keeps a stream busy.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include "runtime/core/device.h"
#include "tests/gpu/spin.h"

// Every test that touches a GPU starts with this. Without one (no driver, or
// CUDA_VISIBLE_DEVICES empty) the test is skipped with a visible reason, never passed.
#define DP_REQUIRE_GPU()                                                                \
  do {                                                                                  \
    if (::dp::cuda_device_count() == 0) {                                               \
      GTEST_SKIP() << "no GPU: cudaGetDeviceCount reports none visible (no driver, or " \
                      "CUDA_VISIBLE_DEVICES is empty); this test runs only on a GPU";   \
    }                                                                                   \
  } while (0)
