#include "runtime/nn/init.h"

#include <cmath>

#include "runtime/core/rng.h"

namespace dp {

uint64_t stable_name_hash(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

void uniform_init(Tensor& t, float lo, float hi, uint64_t seed, const std::string& name) {
  DP_CHECK(lo <= hi, "{}: uniform_init with lo={} > hi={}", name, lo, hi);
  Philox rng(seed, stable_name_hash(name));
  float* p = t.f32();
  const float width = hi - lo;
  for (size_t i = 0; i < t.numel(); ++i) {
    float v = lo + width * rng.uniform();
    // lo + width*u can round up to hi; keep the interval half-open as documented.
    p[i] = v < hi ? v : std::nextafter(hi, lo);
  }
}

void init_linear(Parameter& weight, Parameter& bias, size_t fan_in, uint64_t seed) {
  DP_CHECK(fan_in > 0, "{}: cannot initialise a layer with 0 input features", weight.name);
  const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
  uniform_init(weight.value, -bound, bound, seed, weight.name);
  uniform_init(bias.value, -bound, bound, seed, bias.name);
}

}  // namespace dp
