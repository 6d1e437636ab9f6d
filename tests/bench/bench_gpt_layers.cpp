// A GPT training step's forward + backward on the CPU against OpenBLAS sgemm at the same
// model's GEMM shapes: the fraction of the GEMM-bound FLOP rate the whole model reaches, and
// where the rest of the time goes (the non-GEMM layers timed alone at the model's shapes).
//
//   bench_gpt_layers [--batch 8] [--seq 128] [--layers 4] [--heads 4] [--embed 128]
//                    [--vocab 257] [--reps 20] [--bf16]
//
// The GEMMs of one step, N = batch * seq tokens, C wide, per block: c_attn (C -> 3C), c_proj
// (C -> C), c_fc (C -> 4C), mlp.c_proj (4C -> C), each forward, weight gradient and input
// gradient; per (batch, head) the attention's q k^T and att v and their four backward
// products at full [T, T] size (the model skips the masked triangle in panels where T is
// long enough, so it can beat this count); the tied head (C -> V) three times. The loss is
// left out of both sides. Thread count: OPENBLAS_NUM_THREADS (1 is what a rank gets).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <cblas.h>

#include "models/gpt.h"
#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "runtime/nn/gelu.h"
#include "runtime/nn/layernorm.h"
#include "runtime/ops/attention_ops.h"
#include "runtime/ops/cpu/gemm.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int batch = 8, seq = 128, layers = 4, heads = 4, embed = 128, vocab = 257, reps = 20;
  bool bf16 = false;
};

int parse_int(const std::string& flag, const char* v) {
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  DP_CHECK(end && *end == '\0' && x > 0 && x < (1L << 30), "{}: '{}' is not a positive integer",
           flag, v);
  return static_cast<int>(x);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--bf16") {
      o.bf16 = true;
      continue;
    }
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_gpt_layers [--batch 8] [--seq 128] [--layers 4] [--heads 4] "
          "[--embed 128] [--vocab 257] [--reps 20] [--bf16]\n");
      std::exit(0);
    }
    DP_CHECK(i + 1 < argc, "{} needs a value (try --help)", a);
    const int v = parse_int(a, argv[++i]);
    if (a == "--batch")
      o.batch = v;
    else if (a == "--seq")
      o.seq = v;
    else if (a == "--layers")
      o.layers = v;
    else if (a == "--heads")
      o.heads = v;
    else if (a == "--embed")
      o.embed = v;
    else if (a == "--vocab")
      o.vocab = v;
    else if (a == "--reps")
      o.reps = v;
    else
      dp::fail("unknown option '{}' (try --help)", a);
  }
  DP_CHECK(o.embed % o.heads == 0, "--embed {} must be divisible by --heads {}", o.embed, o.heads);
  return o;
}

// The fastest of `reps` runs of f() after two warm-up runs: on a machine shared with other
// work (builds, other ranks) the minimum is the time the code itself needs, where a median
// would measure the neighbours too.
double best_s(int reps, const std::function<void()>& f) {
  f();
  f();
  double best = INFINITY;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

dp::Tensor random_tensor(const dp::Shape& shape, uint64_t seed) {
  dp::Philox rng(seed, 3);
  dp::Tensor t = dp::Tensor::zeros(shape);
  for (size_t i = 0; i < t.numel(); ++i) t.f32()[i] = 2.0f * rng.uniform() - 1.0f;
  return t;
}

struct Gemm {
  const char* name;
  bool ta, tb;
  int m, n, k;
  float beta;
  int count;  // calls per step
};

// Seconds per step that sgemm needs for all of `g`'s calls.
double time_gemm(const Gemm& g, int reps) {
  const int lda = g.ta ? g.m : g.k, ldb = g.tb ? g.k : g.n;
  std::vector<float> a(size_t(g.m) * g.k, 0.5f), b(size_t(g.k) * g.n, 0.25f),
      c(size_t(g.m) * g.n, 0.0f);
  // Enough calls per sample for the clock not to matter.
  const int inner = std::max(1, static_cast<int>(2e6 / (2.0 * g.m * g.n * g.k)));
  const double s = best_s(reps, [&] {
    for (int i = 0; i < inner; ++i)
      dp::gemm(g.ta, g.tb, g.m, g.n, g.k, 1.0f, a.data(), lda, b.data(), ldb, g.beta, c.data(),
               g.n);
  });
  return s / inner * g.count;
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse(argc, argv);
  const int N = o.batch * o.seq, C = o.embed, T = o.seq, d = C / o.heads, V = o.vocab;
  const int L = o.layers, BH = o.batch * o.heads;
  const std::vector<Gemm> gemms = {
      {"c_attn fwd", false, true, N, 3 * C, C, 0, L},
      {"c_attn dW", true, false, 3 * C, C, N, 1, L},
      {"c_attn dx", false, false, N, C, 3 * C, 0, L},
      {"attn.c_proj fwd", false, true, N, C, C, 0, L},
      {"attn.c_proj dW", true, false, C, C, N, 1, L},
      {"attn.c_proj dx", false, false, N, C, C, 0, L},
      {"c_fc fwd", false, true, N, 4 * C, C, 0, L},
      {"c_fc dW", true, false, 4 * C, C, N, 1, L},
      {"c_fc dx", false, false, N, C, 4 * C, 0, L},
      {"mlp.c_proj fwd", false, true, N, C, 4 * C, 0, L},
      {"mlp.c_proj dW", true, false, C, 4 * C, N, 1, L},
      {"mlp.c_proj dx", false, false, N, 4 * C, C, 0, L},
      {"q k^T", false, true, T, T, d, 0, L * BH},
      {"att v", false, false, T, d, T, 0, L * BH},
      {"d att", false, true, T, T, d, 0, L * BH},
      {"d v", true, false, T, d, T, 0, L * BH},
      {"d q", false, false, T, d, T, 0, L * BH},
      {"d k", true, false, T, d, T, 0, L * BH},
      {"head fwd", false, true, N, V, C, 0, 1},
      {"head dW", true, false, V, C, N, 1, 1},
      {"head dx", false, false, N, C, V, 0, 1},
  };
  double gemm_s = 0, flops = 0;
  std::printf(
      "GPT %d layers, %d heads, %d wide, vocab %d; batch %d x seq %d; %s; OpenBLAS %s, "
      "%d thread(s); best of %d\n\n",
      L, o.heads, C, V, o.batch, T, o.bf16 ? "bf16 compute" : "float32", openblas_get_corename(),
      openblas_get_num_threads(), o.reps);
  std::printf("%-16s %6s %6s %6s %6s %10s %9s\n", "sgemm", "m", "n", "k", "calls", "ms/step",
              "GFLOP/s");
  for (const Gemm& g : gemms) {
    const double s = time_gemm(g, o.reps);
    const double f = 2.0 * g.m * g.n * g.k * g.count;
    gemm_s += s;
    flops += f;
    std::printf("%-16s %6d %6d %6d %6d %10.3f %9.1f\n", g.name, g.m, g.n, g.k, g.count, s * 1e3,
                f / s / 1e9);
  }

  dp::GptConfig cfg;
  cfg.layers = size_t(L), cfg.heads = size_t(o.heads), cfg.embed = size_t(C);
  cfg.context = size_t(T), cfg.vocab = size_t(V);
  dp::GptModel gpt(cfg, 1);
  if (o.bf16) gpt.set_compute_dtype(dp::DType::bf16);
  std::vector<int32_t> tok(static_cast<size_t>(N));
  dp::Philox rng(7, 1);
  for (int32_t& t : tok) t = int32_t(rng.below(uint64_t(V)));
  const dp::Tensor tokens = dp::Tensor::from_vector({o.batch, T}, tok);
  const dp::Tensor dlogits = random_tensor({N, V}, 8);
  const double fwd_s = best_s(o.reps, [&] { gpt.forward(tokens); });
  const double step_s = best_s(o.reps, [&] {
    gpt.forward(tokens);
    gpt.backward(dlogits);
  });

  // The layers other than Linear, alone at the model's shapes, per step.
  const dp::DType dt = o.bf16 ? dp::DType::bf16 : dp::DType::f32;
  dp::LayerNorm ln("ln", size_t(C));
  dp::GELU gelu("gelu");
  ln.set_compute_dtype(dt);
  gelu.set_compute_dtype(dt);
  const dp::Tensor x = random_tensor({o.batch, T, C}, 9),
                   h = random_tensor({o.batch, T, 4 * C}, 10);
  const double ln_s = best_s(o.reps,
                             [&] {
                               ln.forward(x);
                               ln.backward(x);
                             }) *
                      (2 * L + 1);
  const double gelu_s = best_s(o.reps,
                               [&] {
                                 gelu.forward(h);
                                 gelu.backward(h);
                               }) *
                        L;
  // The attention core: q k^T, softmax, att v and back, without the projections.
  const dp::Tensor qkv = random_tensor({o.batch, T, 3 * C}, 11);
  dp::Tensor att = dp::Tensor::zeros({o.batch, o.heads, T, T}),
             y = dp::Tensor::zeros({o.batch, T, C});
  dp::Tensor dqkv = dp::Tensor::zeros(qkv.shape());
  dp::ops::AttentionWorkspace ws;
  const double core_s = best_s(o.reps,
                               [&] {
                                 dp::ops::causal_attention_forward(qkv, o.heads, att, y, ws);
                                 dp::ops::causal_attention_backward(qkv, att, x, o.heads, dqkv, ws);
                               }) *
                        L;
  double core_gemm_s = 0;
  for (const Gemm& g : gemms)
    if (g.count == L * BH) core_gemm_s += time_gemm(g, o.reps);

  std::printf("\nsgemm at these shapes: %.2f ms per step (%.1f GFLOP/s)\n", gemm_s * 1e3,
              flops / gemm_s / 1e9);
  std::printf(
      "gpt forward + backward: %.2f ms per step (forward %.2f ms), %.1f GFLOP/s counted "
      "at the shapes above\n",
      step_s * 1e3, fwd_s * 1e3, flops / step_s / 1e9);
  std::printf("fraction of the sgemm FLOP rate: %.0f%%\n\n", 100.0 * gemm_s / step_s);
  std::printf("alone at the model's shapes, per step (float32 unless --bf16):\n");
  std::printf("  layernorm x%d        %8.2f ms\n", 2 * L + 1, ln_s * 1e3);
  std::printf("  gelu x%d             %8.2f ms\n", L, gelu_s * 1e3);
  std::printf("  attention core x%d   %8.2f ms (its GEMMs at full [T, T] size in sgemm: %.2f ms)\n",
              L, core_s * 1e3, core_gemm_s * 1e3);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_gpt_layers: error: %s\n", e.what());
  return 2;
}
