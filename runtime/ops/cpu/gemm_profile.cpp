#include "runtime/ops/cpu/gemm_profile.h"

#include <atomic>
#include <fstream>
#include <mutex>

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"

namespace dp {

namespace {

std::atomic<bool> g_enabled{false};
std::mutex g_mu;
std::vector<GemmShape> g_shapes;

}  // namespace

void gemm_profile_start() {
  std::lock_guard<std::mutex> lk(g_mu);
  g_shapes.clear();
  g_enabled.store(true, std::memory_order_release);
}

std::vector<GemmShape> gemm_profile_stop() {
  g_enabled.store(false, std::memory_order_release);
  std::lock_guard<std::mutex> lk(g_mu);
  return std::move(g_shapes);
}

bool gemm_profile_enabled() {
  return g_enabled.load(std::memory_order_relaxed);
}

void gemm_profile_record(bool trans_a, bool trans_b, int m, int n, int k, float beta) {
  std::lock_guard<std::mutex> lk(g_mu);
  for (GemmShape& s : g_shapes) {
    if (s.trans_a == trans_a && s.trans_b == trans_b && s.m == m && s.n == n && s.k == k &&
        s.accumulate == (beta != 0.0f)) {
      ++s.calls;
      return;
    }
  }
  g_shapes.push_back({trans_a, trans_b, m, n, k, beta != 0.0f, 1});
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
                          {"calls", s.calls}});
  std::ofstream out(path);
  DP_CHECK(out.is_open(), "--gemm-profile {}: cannot open the file for writing", path);
  out << j.dump(1) << "\n";
  DP_CHECK(out.good(), "--gemm-profile {}: write failed", path);
}

}  // namespace dp
