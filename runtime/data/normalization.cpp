#include "runtime/data/normalization.h"

#include <algorithm>
#include <cmath>

#include "runtime/core/error.h"

namespace dp {

Normalization normalization_from_histogram(const PixelHistogram& hist) {
  double sum = 0, sum_sq = 0;
  uint64_t n = 0;
  for (int v = 0; v < 256; ++v) {
    double x = v / 255.0, c = static_cast<double>(hist[v]);
    sum += c * x;
    sum_sq += c * x * x;
    n += hist[v];
  }
  DP_CHECK(n > 0, "compute_normalization: no pixels");
  Normalization norm;
  norm.mean = sum / static_cast<double>(n);
  norm.std = std::sqrt(std::max(0.0, sum_sq / static_cast<double>(n) - norm.mean * norm.mean));
  return norm;
}

Normalization compute_normalization(const uint8_t* pixels, size_t n) {
  DP_CHECK(n > 0, "compute_normalization: no pixels");
  PixelHistogram hist{};
  for (size_t i = 0; i < n; ++i) ++hist[pixels[i]];
  return normalization_from_histogram(hist);
}

}  // namespace dp
