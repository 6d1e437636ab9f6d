// cblas_sgemm at the exact GEMM shapes of an MLP training step, to tell how much of a
// step is compute and what samples/s the GEMMs alone allow (the compute-bound limit that
// the end-to-end number is compared against).
//
//   bench_sgemm --batch 64 --layers 784,256,128,10 --reps 200 [--json]
//   bench_sgemm --shapes step.json [--json]    (any model: dprun --gemm-profile step.json)
//
// With --shapes, each call takes the next of as many A, B and C buffers as the model's calls
// used (a per-image slice is new and cold on every call; a weight stays hot): that is the
// limit. The "hot" column times one set of operands over and over, the best case.
//
// Per Linear(in, out) at batch B: forward y = x W^T ([B,in] x [in,out]), weight gradient
// dW += dy^T x ([out,B] x [B,in]), input gradient dx = dy W ([B,out] x [out,in]; not for
// the first layer, whose input needs no gradient). Thread count: OPENBLAS_NUM_THREADS.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <cblas.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/core/rng.h"
#include "runtime/ops/cpu/blas_core.h"
#include "runtime/ops/cpu/gemm.h"

namespace {

struct Options {
  int batch = 64;
  std::vector<int> layers = {784, 256, 128, 10};
  int reps = 200;
  int warmup = 20;
  bool json = false;
  std::string shapes;  // a dprun --gemm-profile file: its GEMMs instead of an MLP's
};

struct GemmCase {
  std::string name;
  bool trans_a, trans_b;
  int m, n, k;
  float beta;
  double ms = 0;      // median per call, operands as the model passes them
  double hot_ms = 0;  // median per call, one set of operands (hot in cache)
  size_t calls = 1;   // per training step
  // How many buffers the model cycles through per operand (--gemm-profile's distinct_*):
  // a per-image slice is a new, cache-cold buffer on every call.
  size_t distinct_a = 1, distinct_b = 1, distinct_c = 1;
  double gflops() const { return 2.0 * m * n * k / (ms * 1e-3) / 1e9; }
};

int parse_int(const std::string& flag, const std::string& v) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  DP_CHECK(end && *end == '\0' && x > 0 && x < (1L << 30), "{}: '{}' is not a positive integer",
           flag, v);
  return static_cast<int>(x);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      DP_CHECK(i + 1 < argc, "{} needs a value", a);
      return argv[++i];
    };
    if (a == "--batch") {
      o.batch = parse_int(a, value());
    } else if (a == "--reps") {
      o.reps = parse_int(a, value());
    } else if (a == "--warmup") {
      o.warmup = parse_int(a, value());
    } else if (a == "--layers") {
      o.layers.clear();
      std::string s = value();
      size_t pos = 0;
      while (pos <= s.size()) {
        size_t comma = s.find(',', pos);
        if (comma == std::string::npos) comma = s.size();
        o.layers.push_back(parse_int("--layers", s.substr(pos, comma - pos)));
        pos = comma + 1;
      }
      DP_CHECK(o.layers.size() >= 2, "--layers needs at least two sizes (in,out), got '{}'", s);
    } else if (a == "--shapes") {
      o.shapes = value();
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_sgemm [--batch 64] [--layers 784,256,128,10] [--reps 200] "
          "[--warmup 20] [--json]\n"
          "       bench_sgemm --shapes FILE [--reps 200] [--warmup 20] [--json]   (FILE: a "
          "dprun --gemm-profile)\n");
      std::exit(0);
    } else {
      dp::fail("unknown option '{}' (try --help)", a);
    }
  }
  return o;
}

std::vector<float> random_buffer(size_t n, uint64_t seed) {
  dp::Philox rng(seed, 1);
  std::vector<float> v(n);
  for (float& x : v) x = 2.0f * rng.uniform() - 1.0f;
  return v;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// `copies` buffers of `n` floats back to back, fewer when they would pass 64 MB (several
// times the last-level cache: the ones beyond it add no more cold misses).
struct Operand {
  std::vector<float> data;
  size_t n, copies, next = 0;
  Operand(size_t n_, size_t copies_, uint64_t seed)
      : n(n_),
        copies(
            std::max<size_t>(1, std::min(copies_, (size_t(16) << 20) / std::max<size_t>(n_, 1)))) {
    data = random_buffer(n * copies, seed);
  }
  float* take() {
    float* p = data.data() + n * next;
    next = (next + 1) % copies;
    return p;
  }
};

// Median per-call time. Small GEMMs take microseconds, so each sample times a batch of
// calls long enough (~100 us) for the clock and loop overhead not to matter. With `cycle`,
// each call takes the next of the case's distinct operand buffers, as the model's calls do.
double time_gemm(const GemmCase& g, const Options& o, uint64_t seed, bool cycle) {
  const int lda = g.trans_a ? g.m : g.k, ldb = g.trans_b ? g.k : g.n, ldc = g.n;
  Operand a(size_t(g.m) * g.k, cycle ? g.distinct_a : 1, seed);
  Operand b(size_t(g.k) * g.n, cycle ? g.distinct_b : 1, seed + 1);
  Operand c(size_t(g.m) * g.n, cycle ? g.distinct_c : 1, seed + 2);
  auto call = [&] {
    dp::gemm(g.trans_a, g.trans_b, g.m, g.n, g.k, 1.0f, a.take(), lda, b.take(), ldb, g.beta,
             c.take(), ldc);
  };
  for (int i = 0; i < o.warmup; ++i) call();
  auto t0 = std::chrono::steady_clock::now();
  call();
  const double one = std::max(seconds_since(t0), 1e-9);
  const int inner = std::max(1, static_cast<int>(std::ceil(100e-6 / one)));
  std::vector<double> samples(static_cast<size_t>(o.reps));
  for (double& s : samples) {
    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < inner; ++i) call();
    s = seconds_since(t0) / inner;
  }
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
  return samples[samples.size() / 2] * 1e3;
}

}  // namespace

int main(int argc, char** argv) try {
  dp::use_best_openblas_core(argv);  // the same kernels dprun uses
  Options o = parse(argc, argv);
  std::vector<GemmCase> cases;
  if (!o.shapes.empty()) {
    std::ifstream in(o.shapes);
    DP_CHECK(in.is_open(), "--shapes {}: cannot open the file", o.shapes);
    const nlohmann::json j = nlohmann::json::parse(in);
    o.batch = j.at("samples").get<int>();
    o.layers.clear();
    for (const auto& g : j.at("gemms")) {
      GemmCase c{fmt::format("{}{} {}x{}x{}", g.at("trans_a").get<bool>() ? "T" : "N",
                             g.at("trans_b").get<bool>() ? "T" : "N", g.at("m").get<int>(),
                             g.at("n").get<int>(), g.at("k").get<int>()),
                 g.at("trans_a").get<bool>(),
                 g.at("trans_b").get<bool>(),
                 g.at("m").get<int>(),
                 g.at("n").get<int>(),
                 g.at("k").get<int>(),
                 g.at("accumulate").get<bool>() ? 1.0f : 0.0f};
      c.calls = g.at("calls").get<size_t>();
      // Profiles written before dprun counted the operands: one set, as timed then.
      c.distinct_a = g.value("distinct_a", size_t(1));
      c.distinct_b = g.value("distinct_b", size_t(1));
      c.distinct_c = g.value("distinct_c", size_t(1));
      cases.push_back(c);
    }
  }
  for (size_t l = 0; o.shapes.empty() && l + 1 < o.layers.size(); ++l) {
    const int in = o.layers[l], out = o.layers[l + 1], B = o.batch;
    const std::string fc = "fc" + std::to_string(l + 1);
    cases.push_back({fc + ".forward", false, true, B, out, in, 0.0f});
    cases.push_back({fc + ".grad_weight", true, false, out, in, B, 1.0f});
    if (l > 0) cases.push_back({fc + ".grad_input", false, false, B, in, out, 0.0f});
  }
  double total_ms = 0, hot_ms = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    GemmCase& g = cases[i];
    g.ms = time_gemm(g, o, 1000 + 10 * i, /*cycle=*/true);
    const bool one_set = g.distinct_a == 1 && g.distinct_b == 1 && g.distinct_c == 1;
    g.hot_ms = one_set ? g.ms : time_gemm(g, o, 1000 + 10 * i, /*cycle=*/false);
    total_ms += g.ms * double(g.calls);
    hot_ms += g.hot_ms * double(g.calls);
  }
  const double limit = o.batch / (total_ms * 1e-3);
  const int threads = openblas_get_num_threads();

  if (o.json) {
    nlohmann::json j;
    j["batch"] = o.batch;
    j["layers"] = o.layers;
    j["openblas_threads"] = threads;
    j["gemm_ms_per_step"] = total_ms;
    j["limit_samples_per_s"] = limit;
    j["hot_gemm_ms_per_step"] = hot_ms;
    j["hot_limit_samples_per_s"] = o.batch / (hot_ms * 1e-3);
    j["gemms"] = nlohmann::json::array();
    for (const GemmCase& g : cases)
      j["gemms"].push_back({{"name", g.name},
                            {"m", g.m},
                            {"n", g.n},
                            {"k", g.k},
                            {"trans_a", g.trans_a},
                            {"trans_b", g.trans_b},
                            {"calls", g.calls},
                            {"distinct", {g.distinct_a, g.distinct_b, g.distinct_c}},
                            {"ms", g.ms},
                            {"hot_ms", g.hot_ms},
                            {"gflops", g.gflops()}});
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("sgemm at %s shapes: batch %d, OpenBLAS threads %d (%s), median of %d reps\n",
                o.shapes.empty() ? "MLP" : o.shapes.c_str(), o.batch, threads,
                openblas_get_corename(), o.reps);
    std::printf("%-22s %6s %6s %6s %6s %11s %10s %9s %10s\n", "gemm", "m", "n", "k", "calls",
                "buffers", "ms", "GFLOP/s", "hot ms");
    for (const GemmCase& g : cases) {
      const std::string bufs = fmt::format("{}/{}/{}", g.distinct_a, g.distinct_b, g.distinct_c);
      std::printf("%-22s %6d %6d %6d %6zu %11s %10.4f %9.1f %10.4f\n", g.name.c_str(), g.m, g.n,
                  g.k, g.calls, bufs.c_str(), g.ms, g.gflops(), g.hot_ms);
    }
    std::printf("total GEMM per step: %.4f ms -> compute-bound limit %.0f samples/s\n", total_ms,
                limit);
    std::printf("  (on one hot set of operands per shape: %.4f ms, %.0f samples/s)\n", hot_ms,
                o.batch / (hot_ms * 1e-3));
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_sgemm: error: %s\n", e.what());
  return 2;
}
