#include "runtime/ddp/replica_check.h"

#include <algorithm>

#include <fmt/format.h>

#include "runtime/comm/gather_strings.h"

namespace dp {

std::string replica_entry(const std::string& name, const Tensor& value) {
  return fmt::format("{} {}{}{}", name, dtype_name(value.dtype()), shape_str(value.shape()),
                     value.is_cuda() ? " on cuda" : "");
}

std::vector<std::string> parameter_signature(const std::vector<Parameter*>& params) {
  std::vector<std::string> sig;
  sig.reserve(params.size());
  for (const Parameter* p : params) sig.push_back(replica_entry(p->name, p->value));
  return sig;
}

std::string describe_replica_mismatch(const std::vector<std::vector<std::string>>& per_rank,
                                      const char* what) {
  const auto& ref = per_rank.at(0);
  for (size_t r = 1; r < per_rank.size(); ++r) {
    const auto& other = per_rank[r];
    size_t n = std::min(ref.size(), other.size());
    for (size_t i = 0; i < n; ++i) {
      if (ref[i] != other[i]) {
        return fmt::format(
            "model replicas differ: {} #{} is '{}' on rank 0 but '{}' on rank {} (every "
            "rank must build the same model from the same options)",
            what, i, ref[i], other[i], r);
      }
    }
    if (ref.size() != other.size()) {
      const auto& longer = ref.size() > other.size() ? ref : other;
      size_t longer_rank = ref.size() > other.size() ? 0 : r;
      return fmt::format(
          "model replicas differ: rank 0 has {} {}s, rank {} has {}; the first extra one "
          "is '{}' on rank {}",
          ref.size(), what, r, other.size(), longer[n], longer_rank);
    }
  }
  return "";
}

void verify_replicas_match(const std::vector<Parameter*>& params, ProcessGroup& pg,
                           std::chrono::milliseconds timeout) {
  auto per_rank = allgather_lines(pg, parameter_signature(params), timeout, "replica check");
  std::string mismatch = describe_replica_mismatch(per_rank);
  if (!mismatch.empty()) throw CollectiveError(mismatch);
}

}  // namespace dp
