#pragma once
// Records the shapes of the CPU GEMMs a stretch of code issues (every one goes through
// dp::gemm), so that a benchmark can time OpenBLAS alone at exactly the shapes of a model's
// training step: the compute-bound limit its end-to-end throughput is compared against.
// Off by default; when off, dp::gemm pays one relaxed atomic load.
#include <cstddef>
#include <string>
#include <vector>

namespace dp {

struct GemmShape {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  bool accumulate = false;  // beta != 0
  size_t calls = 0;
  // How many different buffers the calls passed as A, B and C. A model's per-image GEMMs
  // read a new slice of a batch-sized array on every call (cold in cache), while a layer's
  // weight or scratch is the same buffer each time: sgemm timed on one hot set of operands
  // would overstate what the model's shapes allow.
  size_t distinct_a = 0, distinct_b = 0, distinct_c = 0;
};

// Starts recording (clearing what was recorded). Recording is process-wide.
void gemm_profile_start();
// Stops and returns the distinct shapes with their call counts, in first-call order.
std::vector<GemmShape> gemm_profile_stop();
// Called by dp::gemm.
void gemm_profile_record(bool trans_a, bool trans_b, int m, int n, int k, float beta,
                         const float* a, const float* b, const float* c);
bool gemm_profile_enabled();

// {"samples": S, "gemms": [{"trans_a", "trans_b", "m", "n", "k", "accumulate", "calls",
// "distinct_a", "distinct_b", "distinct_c"}]}
// to `path` (the --gemm-profile file, read by bench_sgemm --shapes).
void write_gemm_profile(const std::string& path, const std::vector<GemmShape>& shapes,
                        size_t samples);

}  // namespace dp
