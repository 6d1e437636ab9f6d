// Pixel statistics (runtime/data/normalization.h): a constant image set must come out with a
// std of exactly 0, so that the loaders refuse it instead of scaling every input to 0.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "runtime/data/idx.h"
#include "runtime/data/normalization.h"

using namespace dp;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMnistPixels = 28 * 28;

// Two passes in double straight over the pixels: the reference the histogram must match.
Normalization direct(const std::vector<uint8_t>& px) {
  double sum = 0;
  for (uint8_t p : px) sum += p / 255.0;
  const double mean = sum / double(px.size());
  double sq = 0;
  for (uint8_t p : px) sq += (p / 255.0 - mean) * (p / 255.0 - mean);
  return {mean, std::sqrt(sq / double(px.size()))};
}

}  // namespace

TEST(Normalization, ConstantPixelsHaveZeroStd) {
  // E[x^2] - mean^2 left ~7e-9 for 1004 images of 128 (and for about a third of all counts).
  for (int v : {0, 1, 128, 200, 255})
    for (uint64_t images : {1ull, 3ull, 999ull, 1000ull, 1004ull, 1007ull, 1013ull, 1021ull,
                            60000ull, 50000ull * 1024 / kMnistPixels}) {
      PixelHistogram h{};
      h[size_t(v)] = images * kMnistPixels;
      const Normalization n = normalization_from_histogram(h);
      EXPECT_EQ(n.std, 0.0) << "pixel " << v << ", " << images << " images";
      EXPECT_EQ(n.mean, v / 255.0) << "pixel " << v << ", " << images << " images";
    }
}

TEST(Normalization, MatchesADirectComputation) {
  for (size_t n : {1u, 2u, 7u, 784u, 100000u}) {
    std::vector<uint8_t> px(n);
    Philox rng(n);
    for (uint8_t& p : px) p = uint8_t(rng.below(256));
    const Normalization want = direct(px), got = compute_normalization(px.data(), n);
    EXPECT_NEAR(got.mean, want.mean, 1e-12) << n << " pixels";
    EXPECT_NEAR(got.std, want.std, 1e-12) << n << " pixels";
  }
  // Two values only: mean 0.5 (in units of 255), std exactly half their distance.
  PixelHistogram h{};
  h[0] = 3;
  h[255] = 3;
  const Normalization two = normalization_from_histogram(h);
  EXPECT_DOUBLE_EQ(two.mean, 0.5);
  EXPECT_DOUBLE_EQ(two.std, 0.5);
}

TEST(Normalization, IdxLoaderRefusesConstantImages) {
  char tmpl[] = "/tmp/dprun_norm_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  for (uint32_t images : {1000u, 1004u}) {
    write_idx_ubyte(dir + "/train-images-idx3-ubyte", {images, 28, 28},
                    std::vector<uint8_t>(images * kMnistPixels, 128), false);
    write_idx_ubyte(dir + "/train-labels-idx1-ubyte", {images}, std::vector<uint8_t>(images, 1),
                    false);
    std::string msg = "<no dp::Error thrown>";
    try {
      IdxDataset::load(dir, "train");
    } catch (const Error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find("are all pixels equal?"), std::string::npos) << images << " images: " << msg;
  }
  fs::remove_all(dir);
}
