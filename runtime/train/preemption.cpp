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
// Two sets: a new text is written into the one the handler is not reading, then published.
Messages g_messages[2][3];
std::atomic<int> g_active{0};

size_t slot(int sig) {
  return sig == SIGTERM ? 0 : sig == SIGINT ? 1 : 2;
}

int g_rank = 0;
// Whether a stop writes a checkpoint: unknown (-1) until the options are read, and a message
// must not promise one that --checkpoint-dir may not ask for.
int g_checkpoint = -1;
std::atomic<bool> g_quiet{false};

void format_messages(int rank) {
  const int next = 1 - g_active.load();
  for (int sig : kSignals) {
    Messages& m = g_messages[next][slot(sig)];
    const int a = std::snprintf(
        m.first, sizeof m.first, "dprun: [rank %d] got %s: stopping after the current step %s\n",
        rank, signal_name(sig),
        g_checkpoint > 0    ? "with a checkpoint (send it again to exit at once)"
        : g_checkpoint == 0 ? "(this run writes no checkpoint: nothing is saved; send it again "
                              "to exit at once)"
                            : "(with a checkpoint if --checkpoint-dir is set; send it again to "
                              "exit at once)");
    const int b =
        std::snprintf(m.again, sizeof m.again, "dprun: [rank %d] got %s again: exiting now\n", rank,
                      signal_name(sig));
    m.first_n = a > 0 ? std::min(size_t(a), sizeof m.first - 1) : 0;
    m.again_n = b > 0 ? std::min(size_t(b), sizeof m.again - 1) : 0;
  }
  g_active.store(next);
}

// Only async-signal-safe calls here: write(2) of a preformatted message and _exit(2).
void on_signal(int sig) {
  const Messages& m = g_messages[g_active.load()][slot(sig)];
  const bool quiet = g_quiet.load();
  if (g_count.fetch_add(1) == 0) {
    g_signal.store(sig);
    if (!quiet) (void)!::write(STDERR_FILENO, m.first, m.first_n);
    return;
  }
  if (!quiet) (void)!::write(STDERR_FILENO, m.again, m.again_n);
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

void set_preemption_checkpointing(bool checkpoint) {
  g_checkpoint = checkpoint ? 1 : 0;
  format_messages(g_rank);
}

void quiet_preemption_messages() {
  g_quiet.store(true);
}

void install_preemption_handlers(int rank) {
  g_rank = rank;
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
