#include "runtime/comm/mpi_runtime.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>

#include <mpi.h>
#include "runtime/comm/comm_faults.h"
#include "runtime/core/error.h"

namespace dp {

MpiRuntime::MpiRuntime(int* argc, char*** argv, std::chrono::milliseconds init_timeout)
    : finalize_timeout_(init_timeout) {
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
  if (finalized) return;
  const auto guard = phase_deadline(std::to_string(info_.rank), "MPI finalisation",
                                    finalize_timeout_, finalize_knob_);
  MPI_Finalize();
}

void MpiRuntime::set_finalize_timeout(std::chrono::milliseconds timeout, std::string knob) {
  DP_CHECK(timeout.count() > 0, "a finalisation deadline must be positive, got {} ms",
           timeout.count());
  finalize_timeout_ = timeout;
  finalize_knob_ = std::move(knob);
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

namespace {

using Clock = std::chrono::steady_clock;

// Polls `reqs` until all complete (true) or `deadline` passes (false; the unfinished ones stay
// active: the caller aborts the job). Polled, not MPI_Waitall: a blocking wait would wait
// forever for a rank that never arrives.
bool wait_until(std::vector<MPI_Request>& reqs, Clock::time_point deadline) {
  for (;;) {
    bool all = true;
    for (MPI_Request& r : reqs) {
      int done = 0;
      MPI_Test(&r, &done, MPI_STATUS_IGNORE);  // a finished request becomes MPI_REQUEST_NULL
      all = all && done;
    }
    if (all) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

Clock::time_point deadline_after(double seconds) {
  if (seconds <= 0) return Clock::time_point::max();
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

constexpr int kReportTag = 0x6470;  // the reports of agree_all_ok, on MPI_COMM_WORLD
// How much longer than rank 0 the others wait for its verdict: rank 0 may have arrived a little
// later, and only it can name the ranks that never reported.
constexpr double kVerdictGraceS = 2;

}  // namespace

Agreement agree_all_ok(bool ok, double timeout_s) {
  // Each rank sends rank 0 its report (ok ? INT_MAX : its rank) in a message of its own, so
  // that at the deadline rank 0 knows whom it has not heard from; rank 0 broadcasts the
  // lowest failing rank, or INT_MAX if none.
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int mine = ok ? INT_MAX : rank;
  int lowest = mine;
  Agreement a;
  if (rank == 0) {
    const Clock::time_point deadline = deadline_after(timeout_s);
    std::vector<int> reports(size_t(size), INT_MAX);
    std::vector<MPI_Request> recvs(size_t(size), MPI_REQUEST_NULL);
    for (int r = 1; r < size; ++r) {
      MPI_Irecv(&reports[size_t(r)], 1, MPI_INT, r, kReportTag, MPI_COMM_WORLD, &recvs[size_t(r)]);
    }
    if (!wait_until(recvs, deadline)) {
      for (int r = 1; r < size; ++r) {
        if (recvs[size_t(r)] != MPI_REQUEST_NULL) a.silent.push_back(r);
      }
      a.timed_out = true;  // the requests are abandoned: the caller aborts the job
      a.all_ok = false;
      return a;
    }
    for (int r : reports) lowest = std::min(lowest, r);
    std::vector<MPI_Request> bcast(1);
    MPI_Ibcast(&lowest, 1, MPI_INT, 0, MPI_COMM_WORLD, &bcast[0]);
    wait_until(bcast, Clock::time_point::max());  // every rank has arrived: it completes
  } else {
    const Clock::time_point deadline =
        deadline_after(timeout_s > 0 ? timeout_s + kVerdictGraceS : 0);
    std::vector<MPI_Request> reqs(2);
    MPI_Isend(&mine, 1, MPI_INT, 0, kReportTag, MPI_COMM_WORLD, &reqs[0]);
    MPI_Ibcast(&lowest, 1, MPI_INT, 0, MPI_COMM_WORLD, &reqs[1]);
    if (!wait_until(reqs, deadline)) {
      a.silent.push_back(0);
      a.timed_out = true;
      a.all_ok = false;
      return a;
    }
  }
  a.all_ok = lowest == INT_MAX;
  a.first_failed_rank = a.all_ok ? -1 : lowest;
  return a;
}

std::string rank_list(const std::vector<int>& ranks) {
  constexpr size_t kShown = 8;  // thousands of ranks would drown the message
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size() && i < kShown; ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(ranks[i]);
  }
  if (ranks.size() > kShown) out += " and " + std::to_string(ranks.size() - kShown) + " more";
  return out;
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
  out.reserve(size_t(n));
  for (int i = 0; i < n; ++i)
    out.push_back(all.substr(size_t(offsets[size_t(i)]), size_t(lens[size_t(i)])));
  return out;
}

}  // namespace dp
