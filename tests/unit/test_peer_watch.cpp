// The survivors of a killed rank name it: which ranks of this host are gone (kill(pid, 0)),
// which live on other hosts and cannot be checked, and the watch that says so after a signal
// unless the ranks already agreed to stop (runtime/train/peer_watch.h).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <set>

#include "runtime/train/peer_watch.h"
#include "runtime/train/preemption.h"
#include "tests/support/temp_dir.h"

using namespace dp;

namespace {

// The pid of a process that has exited and been reaped: kill(pid, 0) says ESRCH.
int64_t dead_pid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  return child;
}

std::function<bool(int64_t)> alive_except(const std::set<int64_t>& dead) {
  return [dead](int64_t pid) { return dead.count(pid) == 0; };
}

}  // namespace

TEST(PeerCheck, NamesTheGoneRankOfThisHost) {
  const std::vector<PeerProcess> peers = {
      {"host0", 100, ""}, {"host0", 1234, ""}, {"host0", 102, ""}};
  const PeerVerdict v = check_peers(peers, 0, alive_except({1234}));
  EXPECT_EQ(v.gone, "rank 1 (pid 1234 on host0) is gone");
  EXPECT_EQ(v.unknown, "");
  EXPECT_EQ(v.text, v.gone);
  // From rank 2's side too; and two gone at once.
  EXPECT_EQ(check_peers(peers, 2, alive_except({1234})).gone, "rank 1 (pid 1234 on host0) is gone");
  EXPECT_EQ(check_peers(peers, 0, alive_except({1234, 102})).gone,
            "ranks 1 (pid 1234 on host0) and 2 (pid 102 on host0) are gone");
}

TEST(PeerCheck, CannotTellForOtherHosts) {
  // Rank 2's pid is "gone" here, but it lives on host1: a pid of this host says nothing.
  const std::vector<PeerProcess> peers = {
      {"host0", 100, ""}, {"host0", 101, ""}, {"host1", 102, ""}};
  const PeerVerdict v = check_peers(peers, 0, alive_except({102}));
  EXPECT_EQ(v.gone, "");
  EXPECT_EQ(v.unknown, "cannot tell whether rank 2 (pid 102 on host1) is alive: another host");
  EXPECT_EQ(v.text, "every other rank on host0 is alive; " + v.unknown);
  const PeerVerdict w = check_peers(peers, 0, alive_except({101}));
  EXPECT_EQ(w.text, "rank 1 (pid 101 on host0) is gone; " + v.unknown);
  // Alone on its host: only what it cannot tell.
  EXPECT_EQ(check_peers(peers, 2, alive_except({})).text,
            "cannot tell whether ranks 0 (pid 100 on host0) and 1 (pid 101 on host0) are alive: "
            "other hosts");
}

TEST(PeerCheck, CannotTellForOtherPidNamespacesOfThisHost) {
  // Containers that share the node's hostname but not its pids (Docker --net=host): rank 1's
  // pid means nothing here, and an ESRCH for it must not end the job.
  const std::vector<PeerProcess> peers = {{"node", 100, "pid:[1] boot a"},
                                          {"node", 100, "pid:[2] boot a"},
                                          {"node", 102, "pid:[1] boot a"}};
  const PeerVerdict v = check_peers(peers, 0, alive_except({100}));
  EXPECT_EQ(v.gone, "");
  EXPECT_EQ(v.unknown,
            "cannot tell whether rank 1 (pid 100 on node) is alive: another pid namespace on this "
            "host");
  EXPECT_EQ(v.text, "every other rank on node is alive; " + v.unknown);
  EXPECT_EQ(check_peers(peers, 0, alive_except({102})).gone, "rank 2 (pid 102 on node) is gone");
  // Another machine under the same hostname: its boot differs, so its pids are not ours either.
  const std::vector<PeerProcess> twins = {{"localhost", 7, "pid:[1] boot a"},
                                          {"localhost", 8, "pid:[1] boot b"}};
  EXPECT_EQ(check_peers(twins, 0, alive_except({8})).gone, "");
  // Both reasons at once.
  const std::vector<PeerProcess> mixed = {
      {"h0", 1, "s"}, {"h1", 2, "s"}, {"h0", 3, "t"}, {"h0", 4, "t"}};
  EXPECT_EQ(check_peers(mixed, 0, alive_except({2, 3, 4})).text,
            "cannot tell whether rank 1 (pid 2 on h1) is alive: another host; cannot tell whether "
            "ranks 2 (pid 3 on h0) and 3 (pid 4 on h0) are alive: other pid namespaces on this "
            "host");
}

TEST(PeerCheck, ThisPidSpaceNamesTheNamespaceAndTheBoot) {
  const std::string s = this_pid_space();
  EXPECT_EQ(s.rfind("pid:[", 0), 0u) << s;
  EXPECT_NE(s.find(" boot "), std::string::npos) << s;
  EXPECT_EQ(s, this_pid_space());
}

TEST(PeerCheck, ALargeJobsOtherHostsAreCounted) {
  std::vector<PeerProcess> peers = {{"h0", 1, ""}};
  for (int r = 1; r <= 6; ++r) peers.push_back({"h" + std::to_string(r), 10 + r, ""});
  EXPECT_EQ(check_peers(peers, 0, alive_except({})).unknown,
            "cannot tell whether ranks 1 (pid 11 on h1), 2 (pid 12 on h2), 3 (pid 13 on h3), 4 "
            "(pid 14 on h4) and 2 more are alive: other hosts");
}

TEST(PeerCheck, KillZeroTellsAGoneProcess) {
  EXPECT_TRUE(process_exists(getpid()));
  EXPECT_TRUE(process_exists(1));  // not ours, but there (EPERM would count as alive too)
  EXPECT_FALSE(process_exists(dead_pid()));
}

class PeerWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reset_preemption_for_test();
    install_preemption_handlers(0);
  }
  void TearDown() override {
    reset_preemption_for_test();  // or uninstalling would re-raise the signal
    uninstall_preemption_handlers();
  }
  // Runs a watch over this process (rank 0) and a gone rank 1 on this host, with `before`
  // done first; returns the verdict it reported within `wait`, or "" if none.
  std::string watch(const std::function<void(PeerWatch&)>& before, std::chrono::milliseconds wait) {
    const int64_t gone = dead_pid();
    std::mutex mu;
    std::condition_variable cv;
    std::string reported;
    PeerWatch w({{"here", getpid(), ""}, {"here", gone, ""}}, 0, [&](const PeerVerdict& v) {
      std::lock_guard<std::mutex> lock(mu);
      reported = v.gone;
      reported_at_ = std::chrono::steady_clock::now();
      cv.notify_all();
    });
    before(w);
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, wait, [&] { return !reported.empty(); });
    return reported;
  }
  std::chrono::steady_clock::time_point reported_at_;  // when the watch reported
};

TEST_F(PeerWatchTest, AfterASignalItNamesTheGoneRank) {
  const std::string v = watch([](PeerWatch&) { std::raise(SIGUSR1); }, std::chrono::seconds(5));
  EXPECT_MENTIONS(v, "rank 1 (pid ");
  EXPECT_MENTIONS(v, " on here) is gone");
}

TEST_F(PeerWatchTest, WithoutASignalItSaysNothing) {
  // A peer that exited without a signal (a finished run, a crash the launcher reports) is
  // not the watch's business.
  EXPECT_EQ(watch([](PeerWatch&) {}, std::chrono::milliseconds(300)), "");
}

TEST_F(PeerWatchTest, OnceTheRanksAgreedToStopItSaysNothing) {
  // Every rank reached the stopping step: a peer that exits now has finished its part.
  EXPECT_EQ(watch(
                [](PeerWatch& w) {
                  w.agreed();
                  std::raise(SIGUSR1);
                },
                std::chrono::milliseconds(300)),
            "");
}

TEST_F(PeerWatchTest, ACheckpointBeingWrittenIsFinishedFirst) {
  std::chrono::steady_clock::time_point released;
  const std::string v = watch(
      [&](PeerWatch& w) {
        std::lock_guard<std::mutex> writing(w.write_lock());
        std::raise(SIGUSR1);
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        released = std::chrono::steady_clock::now();
      },
      std::chrono::seconds(5));
  EXPECT_MENTIONS(v, "is gone");
  EXPECT_GE(reported_at_, released);
}
