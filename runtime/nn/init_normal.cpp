#include "runtime/nn/init_normal.h"

#include "runtime/core/rng.h"
#include "runtime/nn/init.h"

namespace dp {

void normal_init(Tensor& t, float std, uint64_t seed, const std::string& name) {
  DP_CHECK(std >= 0.0f, "{}: normal_init with a negative standard deviation {}", name, std);
  Philox rng(seed, stable_name_hash(name));
  float* p = t.f32();
  for (size_t i = 0; i < t.numel(); ++i) p[i] = std * rng.normal();
}

}  // namespace dp
