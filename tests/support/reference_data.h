#pragma once
// PyTorch's reference vectors (tests/data/*.json, computed in float64; the format is in
// /work/shared/testdata/README.md), read for the layer tests (GoogleTest).
#include <gtest/gtest.h>

#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/core/tensor.h"

namespace dp::test {

// The case in DPRUN_TEST_DATA/file.
inline nlohmann::json load_case(const std::string& file) {
  const std::string path = std::string(DPRUN_TEST_DATA) + "/" + file;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open reference file " + path);
  return nlohmann::json::parse(in);
}

// A {"shape", "data"} object as a float32 tensor.
inline Tensor tensor_of(const nlohmann::json& t) {
  Shape shape = t.at("shape").get<Shape>();
  std::vector<double> d = t.at("data").get<std::vector<double>>();
  return Tensor::from_vector(shape, std::vector<float>(d.begin(), d.end()));
}

// float32 against float64 references: |got - want| <= 1e-5 * max(1, |want|).
inline void expect_matches(const Tensor& got, const nlohmann::json& want, const std::string& what) {
  Tensor ref = tensor_of(want);
  ASSERT_EQ(got.shape(), ref.shape()) << what;
  EXPECT_LE(max_rel_diff(got, ref), 1e-5) << what;
}

}  // namespace dp::test
