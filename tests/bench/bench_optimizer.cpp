// The optimizer step per parameter (one loop / kernel launch per tensor) against the fused
// step over the parameter arena (one pass over one block), on the parameters of a real GPT,
// side by side in one process: the same model, two optimizers of the same kind, alternated
// step for step so that both see the same machine state. Also zero_grad and the gradient
// norm, which the arena turns into one memset and one pass.
//
//   bench_optimizer [--preset gpt2-small|gpt2-medium|gpt-mini|gpt-tiny] [--steps 10]
//                   [--device cpu|cuda]
//
// Thread count: none (the optimizer loops are single-threaded). Reports the median of
// --steps timed calls of each path after one warm-up call, in milliseconds, the two paths
// alternating call for call.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "models/gpt.h"
#include "runtime/core/device.h"
#include "runtime/core/error.h"
#include "runtime/core/units.h"
#include "runtime/nn/parameter_arena.h"
#include "runtime/optim/adamw.h"
#include "runtime/optim/clip_grad.h"
#include "runtime/optim/sgd.h"

namespace {

using namespace dp;

double now_ms() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Medians of a() and b() timed alternately, call for call, after one warm-up call each: on a
// loaded machine both then see the same load. `sync` waits for the device.
std::pair<double, double> paired_ms(int steps, const std::function<void()>& a,
                                    const std::function<void()>& b,
                                    const std::function<void()>& sync) {
  a();
  b();
  sync();
  std::vector<double> ta, tb;
  for (int i = 0; i < steps; ++i) {
    for (int k = 0; k < 2; ++k) {
      const double t0 = now_ms();
      (k == 0 ? a : b)();
      sync();
      (k == 0 ? ta : tb).push_back(now_ms() - t0);
    }
  }
  return {median(ta), median(tb)};
}

}  // namespace

int main(int argc, char** argv) try {
  std::string preset = "gpt2-small", device_name = "cpu";
  int steps = 10;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf(
          "usage: bench_optimizer [--preset gpt2-small|gpt2-medium|gpt-mini|gpt-tiny] "
          "[--steps 10] [--device cpu|cuda]\n");
      return 0;
    }
    DP_CHECK(i + 1 < argc, "{} needs a value", a);
    if (a == "--preset")
      preset = argv[++i];
    else if (a == "--steps")
      steps = std::stoi(argv[++i]);
    else if (a == "--device")
      device_name = argv[++i];
    else
      fail("unknown option {} (see the comment at the top of bench_optimizer.cpp)", a);
  }
  // models/gpt.cpp's presets.
  const std::map<std::string, GptConfig> presets = {
      {"gpt2-small", {12, 12, 768, 1024, 50257}},
      {"gpt2-medium", {24, 16, 1024, 1024, 50257}},
      {"gpt-mini", {6, 6, 192, 256, 257}},
      {"gpt-tiny", {2, 2, 64, 64, 257}},
  };
  auto it = presets.find(preset);
  DP_CHECK(it != presets.end(), "unknown preset {}", preset);
  const Device device = device_name == "cuda" ? Device::cuda(0) : Device::cpu();
  DP_CHECK(!device.is_cuda() || cuda_device_count() > 0, "--device cuda: no GPU");
  const auto sync = [&] {
    if (device.is_cuda()) cuda_sync(0);
  };

  GptModel model(it->second, 1);
  model.to(device);
  ParameterArena arena(model.parameters());
  const std::vector<Parameter*> params = model.parameters();
  // Gradients of a plausible size, so that the updates do real floating-point work.
  {
    std::vector<float> g(arena.numel());
    for (size_t i = 0; i < g.size(); ++i) g[i] = 1e-3f * float(int(i % 2001) - 1000) / 1000.0f;
    for (size_t i = 0; i < params.size(); ++i)
      std::fill(g.begin() + long(arena.offset(i) + params[i]->value.numel()),
                g.begin() + long(i + 1 < params.size() ? arena.offset(i + 1) : g.size()), 0.0f);
    arena.grads().copy_(Tensor::from_vector({int64_t(g.size())}, g));
  }
  fmt::print(
      "bench_optimizer: GPT {} on {}: {} parameter tensors, {:.1f}M parameters "
      "({:.1f} MB), arena {} elements ({} of padding)\n",
      preset, device.str(), params.size(), arena.used() / 1e6,
      bytes_to_mb(double(arena.used()) * 4), arena.numel(), arena.numel() - arena.used());

  struct Pair {
    const char* name;
    std::unique_ptr<Optimizer> per_param, fused;
  };
  std::vector<Pair> pairs;
  pairs.push_back({"sgd (momentum 0.9, wd 0.01)",
                   std::make_unique<SGD>(params, 0.9f, 0.0f, 0.01f, false),
                   std::make_unique<SGD>(params, 0.9f, 0.0f, 0.01f, false, &arena)});
  pairs.push_back({"adamw (wd 0.1)", std::make_unique<AdamW>(params, 0.9f, 0.95f, 1e-8f, 0.1f),
                   std::make_unique<AdamW>(params, 0.9f, 0.95f, 1e-8f, 0.1f, &arena)});
  fmt::print("{:<30} {:>14} {:>14} {:>8}\n", "ms per call (median)", "per-parameter", "fused/arena",
             "speedup");
  for (Pair& p : pairs) {
    DP_CHECK(p.fused->fused() && !p.per_param->fused(), "internal: the paths are not as named");
    const auto [a, b] = paired_ms(
        steps, [&] { p.per_param->step(1e-4f); }, [&] { p.fused->step(1e-4f); }, sync);
    fmt::print("{:<30} {:>14.3f} {:>14.3f} {:>7.2f}x\n", p.name, a, b, a / b);
  }
  const Tensor saved = arena.grads().clone();
  const auto [na, nb] = paired_ms(
      steps, [&] { (void)grad_norm(params); }, [&] { (void)grad_norm(params, &arena); }, sync);
  fmt::print("{:<30} {:>14.3f} {:>14.3f} {:>7.2f}x\n", "grad norm", na, nb, na / nb);
  const auto [za, zb] = paired_ms(
      steps,
      [&] {
        for (Parameter* q : params) q->grad.zero_();
      },
      [&] { arena.grads().zero_(); }, sync);
  fmt::print("{:<30} {:>14.3f} {:>14.3f} {:>7.2f}x\n", "zero_grad", za, zb, za / zb);
  arena.grads().copy_(saved);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_optimizer: error: %s\n", e.what());
  return 1;
}
