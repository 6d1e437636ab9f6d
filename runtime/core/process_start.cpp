#include "runtime/core/process_start.h"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace dp {

namespace {

double boot_time() {
  std::ifstream in("/proc/stat");
  std::string key;
  double value = 0;
  while (in >> key) {
    if (key == "btime") return in >> value ? value : -1;
    in.ignore(1 << 20, '\n');
  }
  return -1;
}

}  // namespace

double process_start_time(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // "PID (COMM) STATE ...": COMM may hold blanks and parentheses, so fields count from the
  // last ')'. The start time is field 22, in clock ticks after boot.
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i)
    if (!(rest >> field)) return -1;
  const long ticks_per_s = ::sysconf(_SC_CLK_TCK);
  const double boot = boot_time();
  if (ticks_per_s <= 0 || boot < 0 || field.find_first_not_of("0123456789") != std::string::npos)
    return -1;
  return boot + std::stod(field) / double(ticks_per_s);
}

}  // namespace dp
