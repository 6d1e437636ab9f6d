// The CNN layers' CPU speed against OpenBLAS sgemm at the same GEMM shapes: how much of a
// convolution's time is the GEMM itself (the compute-bound limit) and how much the im2col,
// col2im, bias and layout work around it. Also BatchNorm2d (alone and with the ReLU fused, as
// in the cnn) and MaxPool2d, which have no GEMM.
//
//   bench_cnn_layers [--batch 64] [--reps 20] [--warmup 2]
//
// Shapes: the default cnn model on 1x28x28 images (conv1 1->32 at 28x28, conv2 32->64 at
// 14x14, 3x3, padding 1) and a CIFAR-sized pair (3->32 at 32x32, 32->64 at 16x16). A Conv2d
// runs one GEMM per image: forward y_b [O, P] = W [O, K] col_b [K, P] (K = C*k*k, P = output
// positions), backward dW += dy_b col_b^T ([O, P] x [P, K]) and, unless it is the model's
// first layer, dcol_b = W^T dy_b ([K, O] x [O, P]). The sgemm columns time exactly those
// calls (B of each), and, for reference, the single batched GEMM of the same work. Threads:
// OPENBLAS_NUM_THREADS (1 per rank in training).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include <cblas.h>

#include "models/cnn.h"
#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "runtime/nn/batchnorm2d.h"
#include "runtime/nn/conv2d.h"
#include "runtime/nn/cross_entropy.h"
#include "runtime/nn/maxpool2d.h"
#include "runtime/ops/cpu/blas_core.h"
#include "runtime/ops/cpu/gemm.h"

namespace {

struct Options {
  int batch = 64;
  int reps = 20;
  int warmup = 2;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> int {
      DP_CHECK(i + 1 < argc, "{} needs a value", a);
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      DP_CHECK(end && *end == '\0' && v > 0 && v < (1L << 20), "{}: '{}' is not a positive integer",
               a, argv[i]);
      return static_cast<int>(v);
    };
    if (a == "--batch") {
      o.batch = value();
    } else if (a == "--reps") {
      o.reps = value();
    } else if (a == "--warmup") {
      o.warmup = value();
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: bench_cnn_layers [--batch 64] [--reps 20] [--warmup 2]\n");
      std::exit(0);
    } else {
      dp::fail("unknown option '{}' (try --help)", a);
    }
  }
  return o;
}

double ms_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The fastest of `reps` runs of each function, in milliseconds, the functions taking turns
// round by round: on a shared machine the minimum is the run nobody else disturbed, and
// taking turns exposes the layer and its sgemm baseline to the same background load.
std::vector<double> best_ms(const Options& o, const std::vector<std::function<void()>>& fs) {
  for (int i = 0; i < o.warmup; ++i)
    for (const auto& f : fs) f();
  std::vector<double> best(fs.size(), 1e300);
  for (int r = 0; r < o.reps; ++r)
    for (size_t j = 0; j < fs.size(); ++j) best[j] = std::min(best[j], ms_of(fs[j]));
  return best;
}

dp::Tensor random_tensor(const dp::Shape& shape, uint64_t seed) {
  dp::Philox rng(seed, 3);
  dp::Tensor t = dp::Tensor::zeros(shape);
  for (size_t i = 0; i < t.numel(); ++i) t.f32()[i] = 2.0f * rng.uniform() - 1.0f;
  return t;
}

struct ConvShape {
  std::string name;
  int in, out, size;  // square images
  bool first;         // the model's first layer: no dx
};

// One GEMM shape and which of its operands are per image (a slice of a batch-sized array,
// new for every call) rather than one per layer (the weight, its gradient, dcol's scratch).
struct Gemm {
  bool ta, tb;
  int m, n, k;
  float beta;
  bool a_per_image, b_per_image, c_per_image;
};

// `calls` GEMMs of each shape, on the operands the layer would use.
struct GemmRun {
  std::vector<Gemm> gemms;
  int calls;
  std::vector<std::vector<float>> a, b, c;

  GemmRun(std::vector<Gemm> g, int n) : gemms(std::move(g)), calls(n) {
    for (const Gemm& x : gemms) {
      a.emplace_back(size_t(x.m) * x.k * size_t(x.a_per_image ? calls : 1), 0.5f);
      b.emplace_back(size_t(x.k) * x.n * size_t(x.b_per_image ? calls : 1), 0.25f);
      c.emplace_back(size_t(x.m) * x.n * size_t(x.c_per_image ? calls : 1), 0.0f);
    }
  }
  void operator()() {
    for (size_t j = 0; j < gemms.size(); ++j) {
      const Gemm& g = gemms[j];
      for (int i = 0; i < calls; ++i) {
        const size_t ia = g.a_per_image ? size_t(i) : 0, ib = g.b_per_image ? size_t(i) : 0;
        const size_t ic = g.c_per_image ? size_t(i) : 0;
        dp::gemm(g.ta, g.tb, g.m, g.n, g.k, 1.0f, a[j].data() + ia * g.m * g.k, g.ta ? g.m : g.k,
                 b[j].data() + ib * g.k * g.n, g.tb ? g.k : g.n, g.beta,
                 c[j].data() + ic * g.m * g.n, g.n);
      }
    }
  }
};

double gflop(const std::vector<Gemm>& gemms, int calls) {
  double f = 0;
  for (const Gemm& g : gemms) f += 2.0 * g.m * g.n * g.k * calls;
  return f / 1e9;
}

}  // namespace

int main(int argc, char** argv) try {
  dp::use_best_openblas_core(argv);  // the same kernels dprun uses
  const Options o = parse(argc, argv);
  const int B = o.batch;
  std::printf("CNN layers vs OpenBLAS sgemm: batch %d, OpenBLAS threads %d (%s), best of %d\n", B,
              openblas_get_num_threads(), openblas_get_corename(), o.reps);
  std::printf("%-14s %-9s %9s %12s %8s %14s %8s\n", "layer", "pass", "layer ms", "sgemm ms",
              "of sgemm", "batched sgemm", "GFLOP/s");
  const std::vector<ConvShape> shapes = {{"mnist.conv1", 1, 32, 28, true},
                                         {"mnist.conv2", 32, 64, 14, false},
                                         {"cifar.conv1", 3, 32, 32, true},
                                         {"cifar.conv2", 32, 64, 16, false}};
  double conv_total = 0, gemm_total = 0;
  for (const ConvShape& s : shapes) {
    dp::Conv2d conv(s.name, size_t(s.in), size_t(s.out), 3, 1, 1, 1, /*bias=*/false);
    conv.set_needs_input_grad(!s.first);
    const dp::Tensor x = random_tensor({B, s.in, s.size, s.size}, 1);
    const dp::Tensor dy = random_tensor({B, s.out, s.size, s.size}, 2);
    const int K = s.in * 9, P = s.size * s.size, O = s.out;
    // forward y_b = W col_b; dW += dy_b col_b^T; dcol = W^T dy_b (dcol reused per image).
    const std::vector<Gemm> gf = {{false, false, O, P, K, 0.0f, false, true, true}};
    std::vector<Gemm> gb = {{false, true, O, K, P, 1.0f, true, true, false}};
    if (!s.first) gb.push_back({true, false, K, P, O, 0.0f, false, true, false});
    std::vector<Gemm> gf_batched = {{false, false, O, B * P, K, 0.0f, false, false, false}};
    std::vector<Gemm> gb_batched = {{false, true, O, K, B * P, 1.0f, false, false, false}};
    if (!s.first) gb_batched.push_back({true, false, K, B * P, O, 0.0f, false, false, false});
    GemmRun run_gf(gf, B), run_gb(gb, B), run_gfb(gf_batched, 1), run_gbb(gb_batched, 1);
    const std::vector<double> t =
        best_ms(o, {[&] { conv.forward(x); }, [&] { conv.backward(dy); }, std::ref(run_gf),
                    std::ref(run_gb), std::ref(run_gfb), std::ref(run_gbb)});
    const double fwd = t[0], bwd = t[1], gf_ms = t[2], gb_ms = t[3], gfb = t[4], gbb = t[5];
    std::printf("%-14s %-9s %9.3f %12.3f %7.0f%% %14.3f %8.1f\n", s.name.c_str(), "forward", fwd,
                gf_ms, 100 * gf_ms / fwd, gfb, gflop(gf, B) / (fwd * 1e-3));
    std::printf("%-14s %-9s %9.3f %12.3f %7.0f%% %14.3f %8.1f\n", s.name.c_str(),
                s.first ? "backward*" : "backward", bwd, gb_ms, 100 * gb_ms / bwd, gbb,
                gflop(gb, B) / (bwd * 1e-3));
    conv_total += fwd + bwd;
    gemm_total += gf_ms + gb_ms;
  }
  std::printf("all convolutions: %.3f ms, their GEMMs alone %.3f ms: %.0f%% of sgemm speed\n",
              conv_total, gemm_total, 100 * gemm_total / conv_total);
  std::printf("(* the model's first layer: no input gradient)\n\n");

  // The whole default cnn (1x28x28, conv 32-64, fc 128, 10 classes): forward, loss and
  // backward of one batch against the sgemm calls of all its GEMMs, convolutions and Linears.
  {
    auto model = dp::make_cnn({1, 28, 28}, 10, dp::CnnConfig{}, 1);
    dp::SoftmaxCrossEntropy loss;
    const dp::Tensor x = random_tensor({B, 784}, 6);
    std::vector<int32_t> labels(static_cast<size_t>(B));
    for (int i = 0; i < B; ++i) labels[size_t(i)] = i % 10;
    const dp::Tensor y = dp::Tensor::from_vector({B}, labels);
    GemmRun c1f({{false, false, 32, 784, 9, 0.0f, false, true, true}}, B);
    GemmRun c1b({{false, true, 32, 9, 784, 1.0f, true, true, false}}, B);
    GemmRun c2f({{false, false, 64, 196, 288, 0.0f, false, true, true}}, B);
    GemmRun c2b({{false, true, 64, 288, 196, 1.0f, true, true, false},
                 {true, false, 288, 196, 64, 0.0f, false, true, false}},
                B);
    // Linear(in, out) at batch B: y = x W^T, dW += dy^T x, dx = dy W.
    GemmRun fc({{false, true, B, 128, 3136, 0.0f, false, false, false},
                {true, false, 128, 3136, B, 1.0f, false, false, false},
                {false, false, B, 3136, 128, 0.0f, false, false, false},
                {false, true, B, 10, 128, 0.0f, false, false, false},
                {true, false, 10, 128, B, 1.0f, false, false, false},
                {false, false, B, 128, 10, 0.0f, false, false, false}},
               1);
    const std::vector<double> t = best_ms(o, {[&] {
                                                loss.forward(model->forward(x), y);
                                                model->backward(loss.backward());
                                              },
                                              [&] {
                                                c1f();
                                                c1b();
                                                c2f();
                                                c2b();
                                                fc();
                                              }});
    std::printf(
        "cnn step (forward + backward, batch %d): %.3f ms, its GEMMs alone %.3f ms: "
        "%.0f%% of sgemm speed, %.0f samples/s\n\n",
        B, t[0], t[1], 100 * t[1] / t[0], B / (t[0] * 1e-3));
  }

  std::printf("%-14s %-9s %9s\n", "layer", "pass", "layer ms");
  for (const ConvShape& s : shapes) {
    if (s.first) continue;
    const dp::Tensor x = random_tensor({B, s.out, s.size, s.size}, 3);
    dp::BatchNorm2d bn("bn", size_t(s.out));
    // The cnn's blocks: BatchNorm2d with the ReLU fused.
    dp::BatchNorm2d bn_relu("bn_relu", size_t(s.out), 1e-5f, 0.1f, /*relu=*/true);
    dp::MaxPool2d pool("pool", 2);
    const dp::Tensor dy = random_tensor(x.shape(), 4);
    const dp::Tensor dp_ = random_tensor({B, s.out, s.size / 2, s.size / 2}, 5);
    const std::string n = s.name.substr(0, s.name.find('.'));
    bn.forward(x);
    bn_relu.forward(x);
    pool.forward(x);
    const std::vector<double> t =
        best_ms(o, {[&] { bn.forward(x); }, [&] { bn.backward(dy); }, [&] { pool.forward(x); },
                    [&] { pool.backward(dp_); }, [&] { bn_relu.forward(x); },
                    [&] { bn_relu.backward(dy); }});
    std::printf("%-14s %-9s %9.3f\n", (n + ".bn").c_str(), "forward", t[0]);
    std::printf("%-14s %-9s %9.3f\n", (n + ".bn").c_str(), "backward", t[1]);
    std::printf("%-14s %-9s %9.3f\n", (n + ".bn_relu").c_str(), "forward", t[4]);
    std::printf("%-14s %-9s %9.3f\n", (n + ".bn_relu").c_str(), "backward", t[5]);
    std::printf("%-14s %-9s %9.3f\n", (n + ".pool").c_str(), "forward", t[2]);
    std::printf("%-14s %-9s %9.3f\n", (n + ".pool").c_str(), "backward", t[3]);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_cnn_layers: error: %s\n", e.what());
  return 2;
}
