#include "runtime/comm/mpi_fingerprint.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "runtime/comm/work.h"
#include "runtime/core/error.h"

namespace dp {
namespace {

struct WireRecord {
  uint64_t hash = 0;
  uint64_t path_hash = 0;
  char what[240] = {};
  char how[64] = {};
};

std::string mpi_text(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return fmt::format("{} (MPI error code {})", std::string(text, size_t(len)), rc);
}

// Completes `req` (polling until `timeout`). A request abandoned at the deadline leaves the
// communicator unusable, which the timeout's error then says.
void complete(MPI_Request& req, const Fingerprint& fp, std::chrono::milliseconds timeout,
              const char* call) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int rc = MPI_SUCCESS;
  for (int done = 0, spins = 0;;) {
    rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || done) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      throw CollectiveTimeout(fmt::format(
          "collective {}: not every rank reached its desync check ({}) within {} s: a rank is "
          "behind, stuck or dead (see the other ranks' messages); this communicator is now "
          "unusable",
          fp.text(), call, double(timeout.count()) / 1000.0));
    }
    // Spin briefly (the others are usually microseconds away), then back off.
    if (++spins > 100) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  DP_CHECK(rc == MPI_SUCCESS, "collective {}: the desync check's {} failed: {}", fp.text(), call,
           mpi_text(rc));
}

// Blocking where no deadline is asked for: the blocking collectives are the fast ones (Open
// MPI's non-blocking collectives take a slower, generic path).
void allreduce_max(uint64_t* in, uint64_t* out, MPI_Comm comm, const Fingerprint& fp,
                   std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) {
    const int rc = MPI_Allreduce(in, out, 2, MPI_UINT64_T, MPI_MAX, comm);
    DP_CHECK(rc == MPI_SUCCESS, "collective {}: the desync check's MPI_Allreduce failed: {}",
             fp.text(), mpi_text(rc));
    return;
  }
  MPI_Request req = MPI_REQUEST_NULL;
  const int rc = MPI_Iallreduce(in, out, 2, MPI_UINT64_T, MPI_MAX, comm, &req);
  DP_CHECK(rc == MPI_SUCCESS, "collective {}: the desync check's MPI_Iallreduce failed: {}",
           fp.text(), mpi_text(rc));
  complete(req, fp, timeout, "MPI_Allreduce");
}

void allgather_records(const WireRecord& mine, std::vector<WireRecord>& all, MPI_Comm comm,
                       const Fingerprint& fp, std::chrono::milliseconds timeout) {
  const int n = int(sizeof(WireRecord));
  if (timeout.count() <= 0) {
    const int rc = MPI_Allgather(&mine, n, MPI_BYTE, all.data(), n, MPI_BYTE, comm);
    DP_CHECK(rc == MPI_SUCCESS, "collective {}: the desync check's MPI_Allgather failed: {}",
             fp.text(), mpi_text(rc));
    return;
  }
  MPI_Request req = MPI_REQUEST_NULL;
  const int rc = MPI_Iallgather(&mine, n, MPI_BYTE, all.data(), n, MPI_BYTE, comm, &req);
  DP_CHECK(rc == MPI_SUCCESS, "collective {}: the desync check's MPI_Iallgather failed: {}",
           fp.text(), mpi_text(rc));
  complete(req, fp, timeout, "MPI_Allgather");
}

}  // namespace

void check_fingerprints(MPI_Comm comm, const Fingerprint& fp, std::chrono::milliseconds timeout) {
  int size = 1;
  MPI_Comm_size(comm, &size);
  if (size == 1) return;
  uint64_t mine[2] = {fp.hash, ~fp.hash}, most[2] = {0, 0};
  allreduce_max(mine, most, comm, fp, timeout);
  if (most[0] == ~most[1]) return;  // the largest hash is also the smallest: all equal
  name_mismatch(comm, fp, timeout);
}

void name_mismatch(MPI_Comm comm, const Fingerprint& fp, std::chrono::milliseconds timeout,
                   uint64_t path_hash, const std::string& how) {
  int size = 1;
  MPI_Comm_size(comm, &size);
  WireRecord record;
  record.hash = fp.hash;
  record.path_hash = path_hash;
  const size_t cap = sizeof(record.what), how_cap = sizeof(record.how);
  const std::string d = fp.text();
  std::memcpy(record.what, d.data(), std::min(d.size(), cap - 1));
  std::memcpy(record.how, how.data(), std::min(how.size(), how_cap - 1));
  std::vector<WireRecord> all(static_cast<size_t>(size));
  allgather_records(record, all, comm, fp, timeout);
  auto text = [&](const WireRecord& r) { return std::string(r.what, strnlen(r.what, cap)); };
  for (size_t q = 1; q < all.size(); ++q) {
    if (all[q].hash != all[0].hash) {
      throw CollectiveError(fingerprint_mismatch(0, text(all[0]), int(q), text(all[q])));
    }
  }
  for (size_t q = 1; q < all.size(); ++q) {
    if (all[q].path_hash != all[0].path_hash) {
      throw CollectiveError(fmt::format(
          "ranks agree on collective {} but not on how its data moves: rank 0 sends {}, rank {} "
          "{}. The process group's options (e.g. the size of all-reduces carried by the desync "
          "check) must be the same on every rank; this process group refuses every later "
          "collective",
          text(all[0]), std::string(all[0].how, strnlen(all[0].how, how_cap)), q,
          std::string(all[q].how, strnlen(all[q].how, how_cap))));
    }
  }
  fail("collective {}: the desync check saw different fingerprints but every rank sent the same",
       fp.text());
}

}  // namespace dp
