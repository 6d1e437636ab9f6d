// --gemm-profile: the shapes of a step's GEMMs and how many buffers each operand cycles
// through (bench_sgemm --shapes times sgemm with as many, so that per-image slices are as
// cold in cache as in the model).
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "runtime/core/atomic_write.h"
#include "runtime/core/tensor.h"
#include "runtime/nn/conv2d.h"
#include "runtime/ops/cpu/gemm.h"
#include "runtime/ops/cpu/gemm_profile.h"
#include "tests/support/file_size_limit.h"
#include "tests/support/temp_dir.h"

namespace dp {
namespace {

TEST(GemmProfile, CountsCallsAndDistinctOperandsPerShape) {
  std::vector<float> w(4 * 3, 0.5f), x(3 * 2 * 5, 1.0f), y(4 * 2 * 5, 0.0f), acc(4 * 4, 0.0f);
  gemm_profile_start();
  for (int i = 0; i < 5; ++i)  // one weight, a new input and output slice per call
    gemm(false, false, 4, 2, 3, 1.0f, w.data(), 3, x.data() + 6 * i, 2, 0.0f, y.data() + 8 * i, 2);
  for (int i = 0; i < 3; ++i)  // another shape, accumulating into one buffer
    gemm(false, true, 4, 4, 2, 1.0f, y.data(), 2, y.data() + 8, 2, 1.0f, acc.data(), 4);
  const std::vector<GemmShape> shapes = gemm_profile_stop();
  ASSERT_EQ(shapes.size(), 2u);
  EXPECT_EQ(shapes[0].calls, 5u);
  EXPECT_FALSE(shapes[0].accumulate);
  EXPECT_EQ(shapes[0].distinct_a, 1u);
  EXPECT_EQ(shapes[0].distinct_b, 5u);
  EXPECT_EQ(shapes[0].distinct_c, 5u);
  EXPECT_EQ(shapes[1].calls, 3u);
  EXPECT_TRUE(shapes[1].accumulate);
  EXPECT_TRUE(shapes[1].trans_b);
  EXPECT_EQ(shapes[1].distinct_a + shapes[1].distinct_b + shapes[1].distinct_c, 3u);

  // Stopped: nothing more is recorded, and a new start forgets the old step.
  gemm(false, false, 4, 2, 3, 1.0f, w.data(), 3, x.data(), 2, 0.0f, y.data(), 2);
  gemm_profile_start();
  EXPECT_TRUE(gemm_profile_stop().empty());
}

// The cnn's convolution unfolds one image at a time into one scratch buffer: its forward
// GEMMs share the weight and the scratch and write a new output slice per image.
TEST(GemmProfile, Conv2dForwardWritesOneOutputSlicePerImage) {
  Conv2d conv("c", 2, 4, 3, 1, 1, 1, /*bias=*/false);
  Tensor x = Tensor::zeros({3, 2, 5, 5});
  gemm_profile_start();
  conv.forward(x);
  const std::vector<GemmShape> shapes = gemm_profile_stop();
  ASSERT_EQ(shapes.size(), 1u);
  EXPECT_EQ(shapes[0].m, 4);
  EXPECT_EQ(shapes[0].n, 25);
  EXPECT_EQ(shapes[0].k, 18);
  EXPECT_EQ(shapes[0].calls, 3u);
  EXPECT_EQ(shapes[0].distinct_a, 1u);
  EXPECT_EQ(shapes[0].distinct_b, 1u);
  EXPECT_EQ(shapes[0].distinct_c, 3u);
}

class GemmProfileFile : public test::TempDirTest {};

// A full disk: the file was 0 bytes and the run ended well (the tail of the data sat in the
// stream's buffer, whose flush nobody checked), or a truncated file replaced an earlier one.
TEST_F(GemmProfileFile, AFailedWriteIsAnErrorAndKeepsTheEarlierFile) {
  const std::vector<GemmShape> shapes = {{false, true, 64, 32, 16, false, 3, 1, 2, 3}};
  const std::string file = path("g.json");
  write_gemm_profile(file, shapes, 8);
  const std::vector<uint8_t> before = read_bytes(file);
  ASSERT_GT(before.size(), 64u);
  std::string e;
  {
    test::FileSizeLimit full(64);
    e = test::error_of([&] { write_gemm_profile(file, shapes, 16); });
  }
  EXPECT_MENTIONS(e, "--gemm-profile " + file + ": writing " + staging_path(file) + " failed");
  EXPECT_EQ(read_bytes(file), before);
  EXPECT_FALSE(std::filesystem::exists(staging_path(file)));
  // A device is refused by name, not written through (it swallowed the profile) nor replaced.
  EXPECT_MENTIONS(test::error_of([&] { write_gemm_profile("/dev/full", shapes, 8); }),
                  "--gemm-profile /dev/full: /dev/full exists and is not a regular file");
}

}  // namespace
}  // namespace dp
