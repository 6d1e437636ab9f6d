// The CPU causal attention kernel (runtime/ops/cpu/attention.h) against a double-precision
// reference with a max-shifted softmax, on scores q.k/sqrt(d) near +200 and -200: there
// exp() of an unshifted score is out of float range (and exp_clamped's clamp at +-80 makes
// every probability of a row equal), so only a kernel that subtracts the row maximum first
// gets the probabilities, the output and the gradients right.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/core/rng.h"
#include "runtime/ops/cpu/attention.h"

using namespace dp;

namespace {

constexpr size_t kBatch = 2, kSeq = 9, kHeads = 2, kDim = 4, kChannels = kHeads * kDim;
constexpr size_t kLd = 3 * kChannels;

double uniform(Philox& rng, double lo, double hi) {
  return lo + (hi - lo) * rng.uniform();
}

// qkv [B, T, 3C] with q.k/sqrt(d) = +-200 plus a spread of a few units within each row:
// component 0 of q is +-20 (the sign picks the head's side), of k 20, so that it alone
// contributes +-400 / sqrt(4); the other components are random in [-1.5, 1.5].
std::vector<float> large_score_qkv(uint64_t seed) {
  Philox rng(seed, 3);
  std::vector<float> qkv(kBatch * kSeq * kLd);
  for (size_t b = 0; b < kBatch; ++b)
    for (size_t t = 0; t < kSeq; ++t)
      for (size_t h = 0; h < kHeads; ++h)
        for (size_t c = 0; c < kDim; ++c) {
          float* row = qkv.data() + (b * kSeq + t) * kLd + h * kDim + c;
          const bool big = c == 0;
          row[0] = big ? (h == 0 ? 20.0f : -20.0f) : float(uniform(rng, -1.5, 1.5));
          row[kChannels] = big ? 20.0f : float(uniform(rng, -1.5, 1.5));
          row[2 * kChannels] = float(uniform(rng, -1.0, 1.0));
        }
  return qkv;
}

struct Reference {
  std::vector<double> att, y, dqkv;
  double min_score = INFINITY, max_score = -INFINITY;
};

// Forward and backward of causal softmax(q k^T / sqrt(d)) v in double, per (batch, head).
Reference reference(const std::vector<float>& qkv, const std::vector<float>& dy) {
  Reference r;
  r.att.assign(kBatch * kHeads * kSeq * kSeq, 0.0);
  r.y.assign(kBatch * kSeq * kChannels, 0.0);
  r.dqkv.assign(qkv.size(), 0.0);
  const double scale = 1.0 / std::sqrt(double(kDim));
  auto q = [&](size_t b, size_t t, size_t h, size_t c) {
    return double(qkv[(b * kSeq + t) * kLd + h * kDim + c]);
  };
  auto k = [&](size_t b, size_t t, size_t h, size_t c) { return q(b, t, h, c + kChannels); };
  auto v = [&](size_t b, size_t t, size_t h, size_t c) { return q(b, t, h, c + 2 * kChannels); };
  for (size_t b = 0; b < kBatch; ++b)
    for (size_t h = 0; h < kHeads; ++h) {
      double* p = r.att.data() + (b * kHeads + h) * kSeq * kSeq;
      for (size_t t = 0; t < kSeq; ++t) {
        std::vector<double> s(t + 1);
        for (size_t j = 0; j <= t; ++j) {
          for (size_t c = 0; c < kDim; ++c) s[j] += q(b, t, h, c) * k(b, j, h, c);
          s[j] *= scale;
          r.min_score = std::min(r.min_score, s[j]);
          r.max_score = std::max(r.max_score, s[j]);
        }
        const double mx = *std::max_element(s.begin(), s.end());
        double sum = 0;
        for (size_t j = 0; j <= t; ++j) sum += p[t * kSeq + j] = std::exp(s[j] - mx);
        for (size_t j = 0; j <= t; ++j) p[t * kSeq + j] /= sum;
        for (size_t c = 0; c < kDim; ++c) {
          double acc = 0;
          for (size_t j = 0; j <= t; ++j) acc += p[t * kSeq + j] * v(b, j, h, c);
          r.y[(b * kSeq + t) * kChannels + h * kDim + c] = acc;
        }
      }
      // datt = dy v^T, dscore = p (datt - sum p datt), dq = scale dscore k,
      // dk = scale dscore^T q, dv = att^T dy.
      for (size_t t = 0; t < kSeq; ++t) {
        const float* g = dy.data() + (b * kSeq + t) * kChannels + h * kDim;
        std::vector<double> da(t + 1);
        double dot = 0;
        for (size_t j = 0; j <= t; ++j) {
          for (size_t c = 0; c < kDim; ++c) da[j] += double(g[c]) * v(b, j, h, c);
          dot += p[t * kSeq + j] * da[j];
        }
        double* dq = r.dqkv.data() + (b * kSeq + t) * kLd + h * kDim;
        for (size_t j = 0; j <= t; ++j) {
          const double ds = p[t * kSeq + j] * (da[j] - dot) * scale;
          double* dk = r.dqkv.data() + (b * kSeq + j) * kLd + kChannels + h * kDim;
          double* dv = dk + kChannels;
          for (size_t c = 0; c < kDim; ++c) {
            dq[c] += ds * k(b, j, h, c);
            dk[c] += ds * q(b, t, h, c);
            dv[c] += p[t * kSeq + j] * double(g[c]);
          }
        }
      }
    }
  return r;
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want, double atol,
                  double rtol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= atol + rtol * std::fabs(want[i])) && bad++ == 0) first = i;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size() << " differ, first at " << first
                     << ": " << got[first] << " vs " << want[first];
}

}  // namespace

TEST(AttentionCpu, LargeScoresMatchAStableSoftmaxInDouble) {
  const std::vector<float> qkv = large_score_qkv(11);
  std::vector<float> dy(kBatch * kSeq * kChannels);
  Philox rng(12, 3);
  for (float& g : dy) g = float(uniform(rng, -1.0, 1.0));
  const Reference ref = reference(qkv, dy);
  // The case this test is about: scores far outside exp()'s float range, both signs.
  ASSERT_GT(ref.max_score, 190.0);
  ASSERT_LT(ref.min_score, -190.0);

  const AttentionShape shape{kBatch, kSeq, kChannels, kHeads};
  std::vector<float> att(kBatch * kHeads * kSeq * kSeq), y(kBatch * kSeq * kChannels);
  std::vector<float> scores(kSeq * kSeq), dqkv(qkv.size());
  AttentionScratch scratch;
  scratch.scores = scores.data();
  attention_forward(shape, qkv.data(), att.data(), y.data(), scratch);
  // The scores carry float32 rounding of about 1e-5 each (ulp of 200), which moves a
  // probability by that much relative; the tolerances allow 10x that.
  expect_close(att, ref.att, 1e-5, 2e-4, "att");
  expect_close(y, ref.y, 1e-5, 2e-4, "y");
  attention_backward(shape, qkv.data(), att.data(), dy.data(), dqkv.data(), scratch);
  // dq and dk are d(score)/d(q) = k/sqrt(d) ~ 10 times dscore: a larger absolute tolerance.
  expect_close(dqkv, ref.dqkv, 2e-4, 2e-3, "dqkv");
}
