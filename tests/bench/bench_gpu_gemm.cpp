// cuBLASLt through dp::cuda::gemm at the GEMM shapes of an MLP training step (the GPU twin
// of bench_sgemm), in fp32 and bf16, next to a large square GEMM as the "what cuBLAS can
// reach on this GPU" reference. Small MLP GEMMs are launch- and latency-bound: the table says
// how far from peak they are, which is what decides whether to fuse or batch them.
//
//   bench_gpu_gemm [--batches 64,256,1024,4096] [--layers 784,256,128,10] [--square 8192]
//                  [--reps 50] [--warmup 10]
//
// Per Linear(in, out) at batch B: forward y = x W^T (+bias, ReLU but the last), weight
// gradient dW += dy^T x (beta = 1; in bf16 it accumulates into fp32 gradients: bf16 -> f32),
// input gradient dx = dy W (not for the first layer). Times are CUDA-event medians over
// `reps` samples of back-to-back calls on one stream (what a training step sees); TFLOP/s
// counts 2mnk per GEMM. Without a GPU (or without CUDA) it says so and exits 0.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "runtime/core/device.h"
#include "runtime/core/error.h"

#ifdef DPRUN_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "runtime/core/cuda/cuda_check.h"
#include "runtime/core/rng.h"
#include "runtime/ops/cuda/elementwise.h"
#include "runtime/ops/cuda/gemm.h"
#endif

namespace {

struct Options {
  std::vector<int> batches = {64, 256, 1024, 4096};
  std::vector<int> layers = {784, 256, 128, 10};
  int square = 8192;
  int reps = 50;
  int warmup = 10;
};

int parse_int(const std::string& flag, const std::string& v, long lo) {
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  DP_CHECK(end && *end == '\0' && x >= lo && x < (1L << 30), "{}: '{}' is not an integer >= {}",
           flag, v, lo);
  return static_cast<int>(x);
}

std::vector<int> parse_list(const std::string& flag, const std::string& s) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) comma = s.size();
    out.push_back(parse_int(flag, s.substr(pos, comma - pos), 1));
    pos = comma + 1;
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      DP_CHECK(i + 1 < argc, "{} needs a value", a);
      return argv[++i];
    };
    if (a == "--batches") {
      o.batches = parse_list(a, value());
    } else if (a == "--layers") {
      o.layers = parse_list(a, value());
      DP_CHECK(o.layers.size() >= 2, "--layers needs at least two sizes (in,out)");
    } else if (a == "--square") {
      o.square = parse_int(a, value(), 0);  // 0: skip the square reference
    } else if (a == "--reps") {
      o.reps = parse_int(a, value(), 1);
    } else if (a == "--warmup") {
      o.warmup = parse_int(a, value(), 0);
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_gpu_gemm [--batches 64,256,1024,4096] [--layers 784,256,128,10] "
          "[--square 8192] [--reps 50] [--warmup 10]\n");
      std::exit(0);
    } else {
      dp::fail("unknown option '{}' (try --help)", a);
    }
  }
  return o;
}

#ifdef DPRUN_HAVE_CUDA

using dp::cuda::Epilogue;
using dp::cuda::GemmDtype;

struct GemmCase {
  std::string name;
  bool trans_a, trans_b;
  int m, n, k;
  float beta;
  Epilogue epi;
};

struct Timing {
  double us = 0;  // median per call
  double tflops(const GemmCase& g) const { return 2.0 * g.m * g.n * g.k / (us * 1e-6) / 1e12; }
};

// A device buffer filled with uniform [-1, 1) values (a 1 Mi-element random block, repeated:
// the values matter for power draw, not for the timing of the arithmetic).
class Buffer {
 public:
  Buffer(size_t elems, size_t elem_bytes, bool bf16, cudaStream_t s) {
    DP_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(elems, 1) * elem_bytes));
    static const std::vector<float> block = [] {
      dp::Philox rng(7, 1);
      std::vector<float> v(size_t{1} << 20);
      for (float& x : v) x = 2.0f * rng.uniform() - 1.0f;
      return v;
    }();
    float* staging = nullptr;
    DP_CUDA_CHECK(cudaMalloc(&staging, block.size() * sizeof(float)));
    DP_CUDA_CHECK(cudaMemcpyAsync(staging, block.data(), block.size() * sizeof(float),
                                  cudaMemcpyHostToDevice, s));
    for (size_t off = 0; off < elems; off += block.size()) {
      const size_t n = std::min(block.size(), elems - off);
      if (bf16)
        dp::cuda::f32_to_bf16(n, staging, static_cast<__nv_bfloat16*>(p_) + off, s);
      else
        DP_CUDA_CHECK(cudaMemcpyAsync(static_cast<float*>(p_) + off, staging, n * sizeof(float),
                                      cudaMemcpyDeviceToDevice, s));
    }
    DP_CUDA_CHECK(cudaStreamSynchronize(s));
    DP_CUDA_CHECK(cudaFree(staging));
  }
  ~Buffer() { cudaFree(p_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* get() { return p_; }

 private:
  void* p_ = nullptr;
};

Timing time_gemm(dp::cuda::CublasLt& ctx, const GemmCase& g, GemmDtype dtype, const Options& o,
                 cudaStream_t s) {
  const bool ab_bf16 = dtype != GemmDtype::f32, c_bf16 = dtype == GemmDtype::bf16;
  const size_t ab_bytes = ab_bf16 ? 2 : 4, c_bytes = c_bf16 ? 2 : 4;
  const int lda = g.trans_a ? g.m : g.k, ldb = g.trans_b ? g.k : g.n, ldc = g.n;
  Buffer a(size_t(g.m) * g.k, ab_bytes, ab_bf16, s), b(size_t(g.k) * g.n, ab_bytes, ab_bf16, s);
  Buffer c(size_t(g.m) * g.n, c_bytes, c_bf16, s), bias(size_t(g.n), c_bytes, c_bf16, s);
  // beta = 1 accumulates into C on every call; the values drift, the time does not.
  auto call = [&] {
    dp::cuda::gemm(ctx, g.trans_a, g.trans_b, g.m, g.n, g.k, 1.0f, a.get(), lda, b.get(), ldb,
                   g.beta, c.get(), ldc, dtype, g.epi, bias.get(), s);
  };
  cudaEvent_t start, stop;
  DP_CUDA_CHECK(cudaEventCreate(&start));
  DP_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < std::max(o.warmup, 1); ++i) call();  // the first call builds the plan
  DP_CUDA_CHECK(cudaStreamSynchronize(s));
  // Enough calls per sample for ~200 us of GPU time: event resolution is ~0.5 us.
  DP_CUDA_CHECK(cudaEventRecord(start, s));
  call();
  DP_CUDA_CHECK(cudaEventRecord(stop, s));
  DP_CUDA_CHECK(cudaEventSynchronize(stop));
  float one_ms = 0;
  DP_CUDA_CHECK(cudaEventElapsedTime(&one_ms, start, stop));
  const int inner = std::clamp(static_cast<int>(0.2 / std::max(one_ms, 1e-4f)), 1, 1000);
  std::vector<double> samples;
  for (int r = 0; r < o.reps; ++r) {
    DP_CUDA_CHECK(cudaEventRecord(start, s));
    for (int i = 0; i < inner; ++i) call();
    DP_CUDA_CHECK(cudaEventRecord(stop, s));
    DP_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    DP_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    samples.push_back(ms * 1e3 / inner);
  }
  DP_CUDA_CHECK(cudaEventDestroy(start));
  DP_CUDA_CHECK(cudaEventDestroy(stop));
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
  return {samples[samples.size() / 2]};
}

std::vector<GemmCase> mlp_cases(const std::vector<int>& layers, int B) {
  std::vector<GemmCase> cases;
  for (size_t l = 0; l + 1 < layers.size(); ++l) {
    const int in = layers[l], out = layers[l + 1];
    const std::string fc = "fc" + std::to_string(l + 1);
    const bool last = l + 2 == layers.size();
    cases.push_back({fc + ".forward", false, true, B, out, in, 0.0f,
                     last ? Epilogue::bias : Epilogue::relu_bias});
    cases.push_back({fc + ".grad_weight", true, false, out, in, B, 1.0f, Epilogue::none});
    if (l > 0)
      cases.push_back({fc + ".grad_input", false, false, B, in, out, 0.0f, Epilogue::none});
  }
  return cases;
}

// In bf16 the weight gradient accumulates into fp32 master gradients.
GemmDtype bf16_dtype_for(const GemmCase& g) {
  return g.beta == 1.0f ? GemmDtype::bf16_f32 : GemmDtype::bf16;
}

int run(const Options& o) {
  const int gpus = dp::cuda_device_count();
  if (gpus == 0) {
    std::printf(
        "bench_gpu_gemm: no GPU: cuda_device_count() == 0 (no driver, or "
        "CUDA_VISIBLE_DEVICES empty); nothing to measure\n");
    return 0;
  }
  DP_CUDA_CHECK(cudaSetDevice(0));
  const dp::GpuInfo info = dp::cuda_device_info(0);
  cudaStream_t s;
  DP_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  dp::cuda::CublasLt ctx;
  std::printf(
      "cuBLASLt GEMM on %s (%.1f GiB), fp32 = CUBLAS_COMPUTE_32F (no TF32), bf16 with "
      "fp32 accumulation; median of %d samples\n",
      info.name.c_str(), double(info.total_memory) / (1 << 30), o.reps);

  for (int B : o.batches) {
    std::printf("\nbatch %d\n%-18s %6s %6s %6s | %9s %8s | %9s %8s\n", B, "gemm", "m", "n", "k",
                "f32 us", "TFLOP/s", "bf16 us", "TFLOP/s");
    double total_f32 = 0, total_bf16 = 0, flops = 0;
    for (const GemmCase& g : mlp_cases(o.layers, B)) {
      const Timing f = time_gemm(ctx, g, GemmDtype::f32, o, s);
      const Timing h = time_gemm(ctx, g, bf16_dtype_for(g), o, s);
      total_f32 += f.us;
      total_bf16 += h.us;
      flops += 2.0 * g.m * g.n * g.k;
      std::printf("%-18s %6d %6d %6d | %9.2f %8.2f | %9.2f %8.2f\n", g.name.c_str(), g.m, g.n, g.k,
                  f.us, f.tflops(g), h.us, h.tflops(g));
    }
    std::printf(
        "%-18s %20s | %9.2f %8.2f | %9.2f %8.2f   (GEMM-bound limit: %.0f / %.0f "
        "samples/s)\n",
        "step total", "", total_f32, flops / (total_f32 * 1e-6) / 1e12, total_bf16,
        flops / (total_bf16 * 1e-6) / 1e12, B / (total_f32 * 1e-6), B / (total_bf16 * 1e-6));
  }

  if (o.square > 0) {
    const int n = o.square;
    const GemmCase sq{"square", false, false, n, n, n, 0.0f, Epilogue::none};
    std::printf("\ncuBLAS reference: %d^3 (%.0f GFLOP per call)\n", n, 2.0 * n * n * n / 1e9);
    const Timing f = time_gemm(ctx, sq, GemmDtype::f32, o, s);
    std::printf("  f32 : %10.1f us  %8.2f TFLOP/s\n", f.us, f.tflops(sq));
    const Timing h = time_gemm(ctx, sq, GemmDtype::bf16, o, s);
    std::printf("  bf16: %10.1f us  %8.2f TFLOP/s\n", h.us, h.tflops(sq));
  }
  std::printf("\nplans cached: %zu, epilogues run unfused: %zu\n", ctx.cached_plans(),
              ctx.unfused_epilogue_plans());
  DP_CUDA_CHECK(cudaStreamDestroy(s));
  return 0;
}

#else

int run(const Options&) {
  std::printf("bench_gpu_gemm: this dprun was built without CUDA; nothing to measure\n");
  return 0;
}

#endif

}  // namespace

int main(int argc, char** argv) try {
  return run(parse(argc, argv));
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_gpu_gemm: error: %s\n", e.what());
  return 2;
}
