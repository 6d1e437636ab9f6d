// The OpenBLAS core dprun asks for when the library fell back to generic kernels.
#include <gtest/gtest.h>

#include <cstring>

#include "runtime/ops/cpu/blas_core.h"

namespace dp {
namespace {

std::string pick(const char* current, bool avx512, bool avx2, bool user_set = false) {
  const char* c = better_openblas_core(current, avx512, avx2, user_set);
  return c ? c : "-";
}

TEST(BlasCore, GenericFallbackOnAvx512GetsSkylakeX) {
  EXPECT_EQ(pick("Prescott", true, true), "SkylakeX");
  EXPECT_EQ(pick("Core2", true, true), "SkylakeX");
  EXPECT_EQ(pick("Haswell", true, true), "SkylakeX");  // AVX2 kernels on AVX-512 hardware
}

TEST(BlasCore, GenericFallbackOnAvx2GetsHaswell) {
  EXPECT_EQ(pick("Prescott", false, true), "Haswell");
  EXPECT_EQ(pick("Sandybridge", false, true), "Haswell");
}

TEST(BlasCore, LeavesGoodChoicesAndTheUserAlone) {
  EXPECT_EQ(pick("SkylakeX", true, true), "-");
  EXPECT_EQ(pick("SapphireRapids", true, true), "-");
  EXPECT_EQ(pick("Zen", false, true), "-");
  EXPECT_EQ(pick("Prescott", false, false), "-");  // nothing better on this CPU
  EXPECT_EQ(pick("Prescott", true, true, /*user_set=*/true), "-");
}

}  // namespace
}  // namespace dp
