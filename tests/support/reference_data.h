#pragma once
// PyTorch reference vectors (tests/data/*.json, computed in float64; format in
// /work/shared/testdata/README.md): loading a case and comparing float32 results.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/core/tensor.h"

namespace dp::test {

inline nlohmann::json load_reference(const std::string& file) {
  const std::string path = std::string(DPRUN_TEST_DATA) + "/" + file;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open reference file " + path);
  return nlohmann::json::parse(in);
}

// A {"shape", "data"} entry as a float32 tensor.
inline Tensor reference_tensor(const nlohmann::json& t) {
  Shape shape = t.at("shape").get<Shape>();
  std::vector<double> d = t.at("data").get<std::vector<double>>();
  return Tensor::from_vector(shape, std::vector<float>(d.begin(), d.end()));
}

// float32 (or bfloat16, widened) against a float64 reference. Two measures, both must hold:
//  - elementwise: max |got - want| / max(1, |want|) <= tol (the project's max_rel_diff);
//  - scaled: max |got - want| / max |want| <= scaled_tol, which still bites when the whole
//    tensor is small (gradients of 1e-3 would pass any 1e-5 absolute test).
// Returns the scaled error (for reports).
inline double expect_reference(const Tensor& got, const nlohmann::json& want,
                               const std::string& what, double tol = 1e-5,
                               double scaled_tol = 1e-4) {
  const Tensor ref = reference_tensor(want);
  EXPECT_EQ(got.shape(), ref.shape()) << what;
  if (got.shape() != ref.shape()) return INFINITY;
  const std::vector<float> g = got.to_vector(), w = ref.to_vector();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    diff = std::max(diff, std::fabs(double(g[i]) - double(w[i])));
    scale = std::max(scale, std::fabs(double(w[i])));
  }
  const double scaled = scale > 0 ? diff / scale : diff;
  EXPECT_LE(max_rel_diff(Tensor::from_vector(got.shape(), g), ref), tol) << what;
  EXPECT_LE(scaled, scaled_tol) << what << " (max |error| " << diff << " against max |value| "
                                << scale << ")";
  return scaled;
}

}  // namespace dp::test
