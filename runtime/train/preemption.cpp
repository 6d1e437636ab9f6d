#include "runtime/train/preemption.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <initializer_list>

namespace dp {

namespace {

std::atomic<int> g_signal{0};
std::atomic<int> g_count{0};
int g_rank = 0;
bool g_installed = false;

// Only async-signal-safe calls here: write(2) of a preformatted message and _exit(2).
void on_signal(int sig) {
  char msg[200];
  if (g_count.fetch_add(1) == 0) {
    g_signal.store(sig);
    const int n = std::snprintf(msg, sizeof msg,
                                "dprun: [rank %d] got %s: stopping after the current step with a "
                                "checkpoint (send it again to exit at once)\n",
                                g_rank, signal_name(sig));
    if (n > 0) (void)!::write(STDERR_FILENO, msg, static_cast<size_t>(n));
    return;
  }
  const int n = std::snprintf(msg, sizeof msg, "dprun: [rank %d] got %s again: exiting now\n",
                              g_rank, signal_name(sig));
  if (n > 0) (void)!::write(STDERR_FILENO, msg, static_cast<size_t>(n));
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
  g_rank = rank;
  if (g_installed) return;
  g_installed = true;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  // Interrupted system calls restart: the communication thread's socket calls and the
  // loader's reads never see EINTR because of a preemption notice.
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &sa, nullptr);
}

void uninstall_preemption_handlers() {
  if (!g_installed) return;
  g_installed = false;
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) std::signal(sig, SIG_DFL);
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
