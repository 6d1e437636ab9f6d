#pragma once
// Finite-difference gradient checks for layers (GoogleTest): the probe loss
// L = sum(module(x) * g), accumulated in double, differentiated by central differences
// element by element and compared with the layer's analytic gradient.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "runtime/core/rng.h"
#include "runtime/core/tensor.h"
#include "runtime/nn/module.h"

namespace dp::test {

// A float32 tensor of U[lo, hi) values from Philox(seed).
inline Tensor random_tensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Philox rng(seed, 99);
  Tensor t = Tensor::zeros(shape);
  float* p = t.f32();
  for (size_t i = 0; i < t.numel(); ++i) p[i] = lo + (hi - lo) * rng.uniform();
  return t;
}

// L = sum(module(x) * g), accumulated in double (module output float32).
inline double probe_loss(Module& m, const Tensor& x, const Tensor& g) {
  const Tensor& y = m.forward(x);
  double s = 0;
  for (size_t i = 0; i < y.numel(); ++i) s += double(y.f32()[i]) * g.f32()[i];
  return s;
}

// Central differences of probe_loss over every element of `var` (perturbed in place: the
// input, or a parameter's value), compared with `analytic`:
// |analytic - numeric| <= tol * max(1, |numeric|).
//
// Choosing eps and tol: the numeric derivative carries the float32 rounding of the forward
// (about 1e-7 of each output, summed over the outputs) divided by 2 * eps, plus a truncation
// error of order eps^2 times the third derivative. A layer linear in `var` (a convolution in
// its input, weight or bias) has no truncation error, so a large eps keeps the rounding part
// small; a smooth non-linear layer (BatchNorm) needs a compromise and a looser tol.
inline void check_fd(Module& m, const Tensor& x, const Tensor& g, Tensor var,
                     const Tensor& analytic, float eps, double tol, const std::string& what) {
  ASSERT_EQ(var.numel(), analytic.numel()) << what;
  float* v = var.f32();
  for (size_t i = 0; i < var.numel(); ++i) {
    const float saved = v[i];
    v[i] = saved + eps;
    const double up = probe_loss(m, x, g);
    v[i] = saved - eps;
    const double down = probe_loss(m, x, g);
    v[i] = saved;
    // The perturbation actually applied, after float rounding of saved +- eps.
    const double h = (double(saved + eps) - double(saved - eps));
    const double numeric = (up - down) / h;
    EXPECT_NEAR(analytic.f32()[i], numeric, tol * std::max(1.0, std::fabs(numeric)))
        << what << " element " << i;
  }
}

}  // namespace dp::test
