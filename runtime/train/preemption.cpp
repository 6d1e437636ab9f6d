#include "runtime/train/preemption.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>

namespace dp {

namespace {

std::atomic<int> g_signal{0};
std::atomic<int> g_count{0};
bool g_installed = false;
constexpr int kSignals[] = {SIGTERM, SIGINT, SIGUSR1};

// The handler's messages, formatted before any signal can come: snprintf is not
// async-signal-safe (it may take locks or allocate), write(2) is.
struct Messages {
  char first[192];
  char again[96];
  size_t first_n = 0, again_n = 0;
};
Messages g_messages[3];

size_t slot(int sig) {
  return sig == SIGTERM ? 0 : sig == SIGINT ? 1 : 2;
}

void format_messages(int rank) {
  for (int sig : kSignals) {
    Messages& m = g_messages[slot(sig)];
    const int a = std::snprintf(m.first, sizeof m.first,
                                "dprun: [rank %d] got %s: stopping after the current step with a "
                                "checkpoint (send it again to exit at once)\n",
                                rank, signal_name(sig));
    const int b =
        std::snprintf(m.again, sizeof m.again, "dprun: [rank %d] got %s again: exiting now\n", rank,
                      signal_name(sig));
    m.first_n = a > 0 ? std::min(size_t(a), sizeof m.first - 1) : 0;
    m.again_n = b > 0 ? std::min(size_t(b), sizeof m.again - 1) : 0;
  }
}

// Only async-signal-safe calls here: write(2) of a preformatted message and _exit(2).
void on_signal(int sig) {
  const Messages& m = g_messages[slot(sig)];
  if (g_count.fetch_add(1) == 0) {
    g_signal.store(sig);
    (void)!::write(STDERR_FILENO, m.first, m.first_n);
    return;
  }
  (void)!::write(STDERR_FILENO, m.again, m.again_n);
  ::_exit(128 + sig);
}

}  // namespace

const char* signal_name(int sig) {
  switch (sig) {
    case SIGTERM:
      return "SIGTERM";
    case SIGINT:
      return "SIGINT";
    case SIGUSR1:
      return "SIGUSR1";
    default:
      return "a signal";
  }
}

void install_preemption_handlers(int rank) {
  format_messages(rank);
  if (g_installed) return;
  g_installed = true;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  // Interrupted system calls restart: the communication thread's socket calls and the
  // loader's reads never see EINTR because of a preemption notice.
  sa.sa_flags = SA_RESTART;
  for (int sig : kSignals) sigaction(sig, &sa, nullptr);
}

void uninstall_preemption_handlers() {
  if (!g_installed) return;
  g_installed = false;
  for (int sig : kSignals) std::signal(sig, SIG_DFL);
  if (const int sig = g_signal.load(); sig != 0) std::raise(sig);
}

int preemption_signal() {
  return g_signal.load();
}

void reset_preemption_for_test() {
  g_signal.store(0);
  g_count.store(0);
}

}  // namespace dp
