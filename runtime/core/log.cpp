#include "runtime/core/log.h"

#include <atomic>
#include <mutex>

namespace dp::log {
namespace {
std::atomic<int> g_rank{0};
std::atomic<bool> g_verbose{false};
std::mutex g_mutex;
}  // namespace

void set_rank(int rank, int /*world_size*/) {
  g_rank = rank;
}
int rank() {
  return g_rank;
}
void set_verbose(bool verbose) {
  g_verbose = verbose;
}
bool verbose() {
  return g_verbose;
}

void write_line(std::FILE* f, const std::string& line) {
  // Whole lines under one lock: the comm thread and the main thread may both log.
  // One write of the line with its end: stderr is unbuffered, and a line end written apart
  // let mpirun's forwarding of another rank's output land between the two.
  const std::string whole = line + '\n';
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fwrite(whole.data(), 1, whole.size(), f);
  std::fflush(f);
}

}  // namespace dp::log
