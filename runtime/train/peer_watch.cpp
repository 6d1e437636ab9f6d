#include "runtime/train/peer_watch.h"
#include "runtime/core/boot_id.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

#include "runtime/train/preemption.h"

namespace dp {

namespace {

std::string named(const std::vector<PeerProcess>& peers, int r) {
  return fmt::format("{} (pid {} on {})", r, peers[size_t(r)].pid, peers[size_t(r)].host);
}

// "rank 1 (pid 7 on a)", "ranks 1 (...) and 2 (...)", "ranks 1 (...), 2 (...) and 3 (...)";
// the first four and a count beyond that (a large job's other hosts).
std::string list(const std::vector<PeerProcess>& peers, const std::vector<int>& ranks) {
  constexpr size_t kNamed = 4;
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  const size_t shown = std::min(ranks.size(), kNamed);
  for (size_t i = 0; i < shown; ++i) {
    if (i > 0) out += i + 1 == ranks.size() ? " and " : ", ";
    out += named(peers, ranks[i]);
  }
  if (ranks.size() > shown) out += fmt::format(" and {} more", ranks.size() - shown);
  return out;
}

}  // namespace

bool process_exists(int64_t pid) {
  return pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH);
}

std::string this_pid_space() {
  char ns[64] = {};
  const ssize_t n = ::readlink("/proc/self/ns/pid", ns, sizeof(ns) - 1);
  const std::string boot = boot_id();
  if (n <= 0 || boot.empty()) return "";
  return std::string(ns, size_t(n)) + " boot " + boot;
}

PeerVerdict check_peers(const std::vector<PeerProcess>& peers, int self,
                        const std::function<bool(int64_t)>& exists) {
  std::vector<int> gone, other_host, other_ns;
  const PeerProcess& me = peers.at(size_t(self));
  for (int r = 0; r < int(peers.size()); ++r) {
    if (r == self) continue;
    const PeerProcess& p = peers[size_t(r)];
    if (p.host != me.host)
      other_host.push_back(r);
    else if (p.pid_space != me.pid_space)  // its pid names another process here, or none
      other_ns.push_back(r);
    else if (!exists(p.pid))
      gone.push_back(r);
  }
  PeerVerdict v;
  if (!gone.empty()) v.gone = list(peers, gone) + (gone.size() == 1 ? " is gone" : " are gone");
  auto cannot_tell = [&](const std::vector<int>& ranks, const char* one, const char* many) {
    return fmt::format("cannot tell whether {} {} alive: {}", list(peers, ranks),
                       ranks.size() == 1 ? "is" : "are", ranks.size() == 1 ? one : many);
  };
  if (!other_host.empty()) v.unknown = cannot_tell(other_host, "another host", "other hosts");
  if (!other_ns.empty()) {
    v.unknown += (v.unknown.empty() ? "" : "; ") + cannot_tell(other_ns,
                                                               "another pid namespace on this host",
                                                               "other pid namespaces on this host");
  }
  const size_t unknown = other_host.size() + other_ns.size();
  if (!v.gone.empty())
    v.text = v.unknown.empty() ? v.gone : v.gone + "; " + v.unknown;
  else if (1 + unknown < peers.size())
    v.text = fmt::format("every other rank on {} is alive{}", me.host,
                         v.unknown.empty() ? "" : "; " + v.unknown);
  else
    v.text = v.unknown;
  return v;
}

PeerWatch::PeerWatch(std::vector<PeerProcess> peers, int self,
                     std::function<void(const PeerVerdict&)> on_gone)
    : peers_(std::move(peers)), self_(self), on_gone_(std::move(on_gone)) {
  thread_ = std::thread([this] { run(); });
}

PeerWatch::~PeerWatch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void PeerWatch::run() {
  std::unique_lock<std::mutex> lock(mu_);
  // Every 50 ms: well inside the second mpirun leaves the survivors after its SIGTERM, and
  // nothing but a flag read until a signal has come.
  int polls_since_signal = 0;
  while (!cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stop_; })) {
    if (agreed_ || preemption_signal() == 0) continue;
    const PeerVerdict v = check_peers(peers_, self_);
    // Half a second after the signal without an agreement, ranks on other hosts may be what
    // the step waits for: say once what this rank cannot know, while it still can (mpirun's
    // SIGKILL comes a second after its SIGTERM). A note: a long step may simply not be over.
    if (v.gone.empty() && ++polls_since_signal == 10 && !v.unknown.empty())
      std::fprintf(stderr,
                   "dprun: [rank %d] waiting for the other ranks at the end of the step; %s\n",
                   self_, v.text.c_str());
    if (v.gone.empty()) continue;
    std::lock_guard<std::mutex> writing(write_lock_);
    if (agreed_) continue;
    on_gone_(v);
    return;
  }
}

}  // namespace dp
