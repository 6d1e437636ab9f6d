#include "runtime/comm/mpi_runtime.h"

#include <chrono>
#include <thread>

#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>

#include <mpi.h>
#include "runtime/comm/comm_faults.h"
#include "runtime/core/error.h"

namespace dp {

MpiRuntime::MpiRuntime(int* argc, char*** argv, std::chrono::milliseconds init_timeout) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  DP_CHECK(!initialized, "MPI initialised twice");
  InitStall::from_env().maybe_stall(launcher_rank());  // a test hook: a rank that starts late
  {
    InitWatchdog watchdog(init_timeout, [init_timeout] { expire_mpi_init(init_timeout); });
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level_);
  }
  if (thread_level_ < MPI_THREAD_SERIALIZED) {
    MPI_Finalize();
    fail(
        "this MPI library offers thread level {}; dprun needs at least MPI_THREAD_SERIALIZED "
        "(its communication thread makes the collective calls)",
        thread_level_);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &info_.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &info_.size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, info_.rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &info_.local_rank);
  MPI_Comm_size(local, &info_.local_size);
  MPI_Comm_free(&local);
  char host[HOST_NAME_MAX + 1] = {};
  gethostname(host, sizeof(host) - 1);
  info_.hostname = host;
}

MpiRuntime::~MpiRuntime() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void abort_job(int exit_code) {
  std::fflush(stdout);
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);
}

Agreement agree_all_ok(bool ok, double timeout_s) {
  // MIN over (ok ? INT_MAX : rank) gives the lowest failing rank, or INT_MAX if none.
  int mine = ok ? INT_MAX : 0;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (!ok) mine = rank;
  int lowest = INT_MAX;
  Agreement a;
  if (timeout_s <= 0) {
    MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  } else {
    // Non-blocking, polled against a deadline: a blocking all-reduce would wait forever for
    // a rank that never arrives.
    MPI_Request req;
    MPI_Iallreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req);
    const auto deadline = std::chrono::steady_clock::now() +
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(timeout_s));
    for (int done = 0;;) {
      MPI_Test(&req, &done, MPI_STATUS_IGNORE);
      if (done) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        a.timed_out = true;  // the request is abandoned: the caller aborts the job
        a.all_ok = false;
        return a;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  a.all_ok = lowest == INT_MAX;
  a.first_failed_rank = a.all_ok ? -1 : lowest;
  return a;
}

std::vector<std::string> node_allgather(const std::string& mine) {
  MPI_Comm node;
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  int n = 1;
  MPI_Comm_size(node, &n);
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(static_cast<size_t>(n)), offsets(static_cast<size_t>(n));
  MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, node);
  int total = 0;
  for (int i = 0; i < n; ++i) {
    offsets[size_t(i)] = total;
    total += lens[size_t(i)];
  }
  std::string all(size_t(total), '\0');
  MPI_Allgatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), offsets.data(), MPI_CHAR,
                 node);
  MPI_Comm_free(&node);
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i)
    out.push_back(all.substr(size_t(offsets[size_t(i)]), size_t(lens[size_t(i)])));
  return out;
}

}  // namespace dp
