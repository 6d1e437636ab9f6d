#pragma once
// Pixel statistics for normalising uint8 images: x = (p / 255 - mean) / std. Always
// normalise test data with the TRAIN split's statistics (for Fashion-MNIST about
// 0.286 / 0.353), so that both splits go through the same function.
#include <array>
#include <cstddef>
#include <cstdint>

namespace dp {

struct Normalization {
  double mean = 0.0;
  double std = 1.0;
};

// Mean and population standard deviation of `n` uint8 pixels, in units of pixel / 255.
Normalization compute_normalization(const uint8_t* pixels, size_t n);

// The same from a histogram of pixel values (hist[v] = how many pixels equal v): lets a
// reader count strided pixels (one channel of interleaved records) in one pass. Counting
// stays exact where summing floats over tens of millions of pixels would drift.
using PixelHistogram = std::array<uint64_t, 256>;
Normalization normalization_from_histogram(const PixelHistogram& hist);

}  // namespace dp
