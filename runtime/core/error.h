#pragma once
// One error path for the whole runtime: code throws dp::Error with a message a user can
// act on; launcher/main prints it as "dprun: error: [rank R] ..." and ends the job.
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace dp {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// An error every rank raises identically at the same point of the program (a replica
// mismatch found by comparing all ranks' signatures, an agreed configuration error). The
// job can then end cleanly on every rank, each printing its message, instead of aborting.
class CollectiveError : public Error {
 public:
  explicit CollectiveError(const std::string& what) : Error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace dp

// DP_CHECK(cond, "format {}", args...): throws dp::Error when cond is false.
#define DP_CHECK(cond, ...)    \
  do {                         \
    if (!(cond)) {             \
      ::dp::fail(__VA_ARGS__); \
    }                          \
  } while (0)
