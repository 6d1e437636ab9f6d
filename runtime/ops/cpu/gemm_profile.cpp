#include "runtime/ops/cpu/gemm_profile.h"

#include <atomic>
#include <mutex>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "runtime/core/json_write.h"

namespace dp {

namespace {

std::atomic<bool> g_enabled{false};
std::mutex g_mu;
std::vector<GemmShape> g_shapes;
// Per shape (same index as g_shapes): the buffers seen as A, B and C.
struct Operands {
  std::unordered_set<const float*> a, b, c;
};
std::vector<Operands> g_operands;

}  // namespace

void gemm_profile_start() {
  std::lock_guard<std::mutex> lk(g_mu);
  g_shapes.clear();
  g_operands.clear();
  g_enabled.store(true, std::memory_order_release);
}

std::vector<GemmShape> gemm_profile_stop() {
  g_enabled.store(false, std::memory_order_release);
  std::lock_guard<std::mutex> lk(g_mu);
  for (size_t i = 0; i < g_shapes.size(); ++i) {
    g_shapes[i].distinct_a = g_operands[i].a.size();
    g_shapes[i].distinct_b = g_operands[i].b.size();
    g_shapes[i].distinct_c = g_operands[i].c.size();
  }
  g_operands.clear();
  return std::move(g_shapes);
}

bool gemm_profile_enabled() {
  return g_enabled.load(std::memory_order_relaxed);
}

void gemm_profile_record(bool trans_a, bool trans_b, int m, int n, int k, float beta,
                         const float* a, const float* b, const float* c) {
  std::lock_guard<std::mutex> lk(g_mu);
  size_t i = 0;
  while (i < g_shapes.size()) {
    const GemmShape& s = g_shapes[i];
    if (s.trans_a == trans_a && s.trans_b == trans_b && s.m == m && s.n == n && s.k == k &&
        s.accumulate == (beta != 0.0f))
      break;
    ++i;
  }
  if (i == g_shapes.size()) {
    g_shapes.push_back({trans_a, trans_b, m, n, k, beta != 0.0f, 0});
    g_operands.emplace_back();
  }
  ++g_shapes[i].calls;
  g_operands[i].a.insert(a);
  g_operands[i].b.insert(b);
  g_operands[i].c.insert(c);
}

void write_gemm_profile(const std::string& path, const std::vector<GemmShape>& shapes,
                        size_t samples) {
  nlohmann::json j;
  j["samples"] = samples;
  j["gemms"] = nlohmann::json::array();
  for (const GemmShape& s : shapes)
    j["gemms"].push_back({{"trans_a", s.trans_a},
                          {"trans_b", s.trans_b},
                          {"m", s.m},
                          {"n", s.n},
                          {"k", s.k},
                          {"accumulate", s.accumulate},
                          {"calls", s.calls},
                          {"distinct_a", s.distinct_a},
                          {"distinct_b", s.distinct_b},
                          {"distinct_c", s.distinct_c}});
  write_json_atomically("--gemm-profile", path, j, 1);
}

}  // namespace dp
