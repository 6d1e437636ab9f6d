// The deadline of MPI initialisation (runtime/comm/init_watchdog.h), without MPI: the
// watchdog's timing, and the environment it reads. The real thing, a rank stalled before
// MPI_Init under mpirun, is tests/e2e/test_init_timeout.sh.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "runtime/comm/init_watchdog.h"
#include "runtime/core/error.h"

using namespace dp;
using namespace std::chrono_literals;

namespace {

// Sets (or, with nullptr, unsets) an environment variable for one test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    value ? setenv(name, value, 1) : unsetenv(name);
  }
  ~ScopedEnv() { had_ ? setenv(name_, old_.c_str(), 1) : unsetenv(name_); }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

}  // namespace

TEST(InitWatchdog, ExpiresAtTheDeadlineWhenTheCallHangs) {
  std::atomic<bool> expired{false};
  const auto t0 = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration when{};
  {
    InitWatchdog w(60ms, [&] {
      when = std::chrono::steady_clock::now() - t0;
      expired = true;
    });
    // No check of `expired` at some earlier time: a thread descheduled past the deadline would
    // see it fire on time and fail (seen under load); `when` below tells early from on time.
    while (!expired && std::chrono::steady_clock::now() - t0 < 10s) {
      std::this_thread::sleep_for(1ms);
    }
  }
  ASSERT_TRUE(expired) << "never expired: a stuck MPI_Init would hang the job";
  EXPECT_GE(when, 60ms);
}

TEST(InitWatchdog, ACallThatReturnsInTimeDisarmsIt) {
  std::atomic<bool> expired{false};
  bool disarmed_in_time = false;
  {
    const auto t0 = std::chrono::steady_clock::now();
    InitWatchdog w(50ms, [&] { expired = true; });
    w.disarm();
    // A thread descheduled for the whole 50 ms before disarm() proves nothing either way.
    disarmed_in_time = std::chrono::steady_clock::now() - t0 < 50ms;
    std::this_thread::sleep_for(100ms);
  }
  if (!disarmed_in_time) GTEST_SKIP() << "descheduled past the deadline before disarm()";
  EXPECT_FALSE(expired);
  InitWatchdog quick(10min, [] {});  // the destructor returns at once, not after 10 minutes
}

TEST(InitWatchdog, ADeadlineIsPositive) {
  EXPECT_THROW(InitWatchdog(0ms, [] {}), Error);
}

TEST(InitWatchdog, TheDeadlineComesFromDprunInitTimeout) {
  {
    ScopedEnv env("DPRUN_INIT_TIMEOUT", nullptr);
    EXPECT_EQ(mpi_init_timeout_from_env(), 300s);
  }
  {
    ScopedEnv env("DPRUN_INIT_TIMEOUT", "2.5");
    EXPECT_EQ(mpi_init_timeout_from_env(), 2500ms);
  }
  for (const char* bad : {"0", "-3", "soon", "5s"}) {
    ScopedEnv env("DPRUN_INIT_TIMEOUT", bad);
    try {
      mpi_init_timeout_from_env();
      ADD_FAILURE() << "accepted DPRUN_INIT_TIMEOUT=" << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("positive number of seconds"), std::string::npos)
          << e.what();
    }
  }
}

TEST(InitWatchdog, TheRankComesFromTheLauncher) {
  ScopedEnv a("OMPI_COMM_WORLD_RANK", nullptr), b("PMIX_RANK", nullptr), c("PMI_RANK", nullptr),
      d("SLURM_PROCID", nullptr);
  EXPECT_EQ(launcher_rank(), "?");
  ScopedEnv slurm("SLURM_PROCID", "5");
  EXPECT_EQ(launcher_rank(), "5");
  ScopedEnv ompi("OMPI_COMM_WORLD_RANK", "3");
  EXPECT_EQ(launcher_rank(), "3");
}

TEST(InitWatchdogDeathTest, APhaseDeadlineNamesTheRankAndThePhaseAndExits) {
  EXPECT_EXIT(
      {
        const auto guard = phase_deadline("3", "MPI finalisation", 50ms, "--timeout");
        std::this_thread::sleep_for(10s);  // the stuck call
      },
      ::testing::ExitedWithCode(1),
      "\\[rank 3\\] MPI finalisation did not complete within 5.05 s \\(--timeout 0.05 s plus 5 s "
      "for the phase's own work\\)");
}
