#include "runtime/data/normalization.h"

#include <cmath>

#include "runtime/core/error.h"

namespace dp {

Normalization normalization_from_histogram(const PixelHistogram& hist) {
  // The sum of pixel values is a sum of whole numbers, exact below 2^53: so the mean of a
  // constant v is exactly v / 255, and its deviations below exactly 0.
  double sum = 0;
  uint64_t n = 0;
  for (int v = 0; v < 256; ++v) {
    sum += static_cast<double>(hist[v]) * v;
    n += hist[v];
  }
  DP_CHECK(n > 0, "compute_normalization: no pixels");
  Normalization norm;
  norm.mean = sum / static_cast<double>(n) / 255.0;
  // Squared deviations from the mean, not E[x^2] - mean^2: the difference of two nearly equal
  // sums leaves a rounding residue (std ~1e-8 for some counts of constant images), which
  // passed the loaders' std > 0 check and scaled every input to 0.
  double sq_dev = 0;
  for (int v = 0; v < 256; ++v) {
    const double d = v / 255.0 - norm.mean;
    sq_dev += static_cast<double>(hist[v]) * d * d;
  }
  norm.std = std::sqrt(sq_dev / static_cast<double>(n));
  return norm;
}

Normalization compute_normalization(const uint8_t* pixels, size_t n) {
  DP_CHECK(n > 0, "compute_normalization: no pixels");
  PixelHistogram hist{};
  for (size_t i = 0; i < n; ++i) ++hist[pixels[i]];
  return normalization_from_histogram(hist);
}

}  // namespace dp
