#include "runtime/comm/setting_agreement.h"

#include <fmt/format.h>

#include "runtime/core/error.h"

namespace dp {

void agree_settings(MPI_Comm comm, const std::vector<AgreedSetting>& settings) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  // Per setting, MPI_MINLOC of (value, rank) and of (-value, rank): the smallest and the
  // largest value, each with the lowest rank that holds it, in one call whose size does not
  // depend on what any rank holds.
  struct Pair {
    int value;
    int rank;
  };
  std::vector<Pair> mine, agreed(2 * settings.size());
  for (const AgreedSetting& s : settings) {
    mine.push_back({s.value, rank});
    mine.push_back({-s.value, rank});
  }
  const int rc =
      MPI_Allreduce(mine.data(), agreed.data(), int(mine.size()), MPI_2INT, MPI_MINLOC, comm);
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    MPI_Error_string(rc, text, &len);
    fail("comparing the ranks' start-up settings failed: {} (MPI error code {})",
         std::string(text, size_t(len)), rc);
  }
  for (size_t i = 0; i < settings.size(); ++i) {
    const Pair lo = agreed[2 * i], hi = {-agreed[2 * i + 1].value, agreed[2 * i + 1].rank};
    if (lo.value == hi.value) continue;
    const Pair& first = lo.rank < hi.rank ? lo : hi;
    const Pair& second = lo.rank < hi.rank ? hi : lo;
    throw CollectiveError(fmt::format(
        "the ranks were started with different settings: {} is '{}' on rank {} but '{}' on "
        "rank {}; every rank must run with the same options",
        settings[i].name, settings[i].text(first.value), first.rank, settings[i].text(second.value),
        second.rank));
  }
}

}  // namespace dp
