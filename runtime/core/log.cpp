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
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fwrite(line.data(), 1, line.size(), f);
  std::fputc('\n', f);
  std::fflush(f);
}

}  // namespace dp::log
