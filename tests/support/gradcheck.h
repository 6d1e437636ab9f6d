#pragma once
// Finite-difference gradient checks shared by the layer and model tests: central
// differences of a scalar loss over every element of a tensor (perturbed in place), against
// the gradient backward computed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/core/rng.h"
#include "runtime/core/tensor.h"
#include "runtime/nn/module.h"

namespace dp::test {

inline Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Philox rng(seed, 99);
  Tensor t = Tensor::zeros(shape);
  float* p = t.f32();
  for (size_t i = 0; i < t.numel(); ++i) p[i] = lo + (hi - lo) * rng.uniform();
  return t;
}

inline Tensor random_labels(int64_t batch, int classes, uint64_t seed) {
  Philox rng(seed, 5);
  std::vector<int32_t> v(static_cast<size_t>(batch));
  for (auto& l : v) l = static_cast<int32_t>(rng.below(static_cast<uint64_t>(classes)));
  return Tensor::from_vector({batch}, v);
}

// sum(y * g) over a float32 y, accumulated in double: the probe whose gradient is g.
inline double dot(const Tensor& y, const Tensor& g) {
  double s = 0;
  for (size_t i = 0; i < y.numel(); ++i) s += double(y.f32()[i]) * g.f32()[i];
  return s;
}

// L = sum(module(x) * g).
inline double probe_loss(Module& m, const Tensor& x, const Tensor& g) {
  return dot(m.forward(x), g);
}

// Central differences of loss() over every element of `var` (perturbed in place, restored),
// compared with `analytic`: |analytic - numeric| <= max(atol, rtol * |numeric|) everywhere.
// One failure per tensor, naming the count, the first and the worst element. Returns the
// largest |analytic - numeric| / max(atol, rtol * |numeric|) (<= 1 passes).
inline double check_fd(const std::function<double()>& loss, Tensor var, const Tensor& analytic,
                       float eps, double atol, double rtol, const std::string& what) {
  EXPECT_EQ(var.numel(), analytic.numel()) << what;
  if (var.numel() != analytic.numel()) return INFINITY;
  float* v = var.f32();
  size_t bad = 0, first = 0, worst_i = 0;
  double worst = 0, first_a = 0, first_n = 0;
  for (size_t i = 0; i < var.numel(); ++i) {
    const float saved = v[i];
    v[i] = saved + eps;
    const double up = loss();
    v[i] = saved - eps;
    const double down = loss();
    v[i] = saved;
    // The perturbation actually applied, after float rounding of saved +- eps.
    const double h = double(saved + eps) - double(saved - eps);
    const double numeric = (up - down) / h, a = analytic.f32()[i];
    const double ratio = std::fabs(a - numeric) / std::max(atol, rtol * std::fabs(numeric));
    if (!(ratio <= 1.0)) {
      if (bad++ == 0) first = i, first_a = a, first_n = numeric;
    }
    if (!(ratio <= worst)) worst = ratio, worst_i = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << var.numel()
                     << " elements differ from central differences; first at " << first
                     << ": analytic " << first_a << ", numeric " << first_n << "; worst at "
                     << worst_i << " (" << worst << " x the tolerance)";
  return worst;
}

// The same for L = sum(m(x) * g) with tolerance tol * max(1, |numeric|).
inline double check_fd(Module& m, const Tensor& x, const Tensor& g, Tensor var,
                       const Tensor& analytic, float eps, double tol, const std::string& what) {
  return check_fd([&] { return probe_loss(m, x, g); }, std::move(var), analytic, eps, tol, tol,
                  what);
}

}  // namespace dp::test
