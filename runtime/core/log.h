#pragma once
// Logging that names the rank: every line a rank prints starts with "[rank R]", so the
// interleaved output of mpirun stays readable. rank0() prints only on rank 0, unprefixed,
// for the header, progress lines and the summary.
#include <cstdio>
#include <string>

#include <fmt/format.h>

namespace dp::log {

void set_rank(int rank, int world_size);
int rank();
void set_verbose(bool verbose);
bool verbose();

void write_line(std::FILE* f, const std::string& line);

template <typename... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  write_line(stdout,
             fmt::format("[rank {}] ", rank()) + fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  write_line(stderr, fmt::format("dprun: warning: [rank {}] ", rank()) +
                         fmt::format(f, std::forward<Args>(args)...));
}

template <typename... Args>
void debug(fmt::format_string<Args...> f, Args&&... args) {
  if (verbose()) info(f, std::forward<Args>(args)...);
}

template <typename... Args>
void rank0(fmt::format_string<Args...> f, Args&&... args) {
  if (rank() == 0) write_line(stdout, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace dp::log
