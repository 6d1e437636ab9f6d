#include "runtime/core/same_file.h"

#include <filesystem>
#include <system_error>

namespace dp {

namespace fs = std::filesystem;

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) {
    const bool eq = fs::equivalent(a, b, ec);
    if (!ec) return eq;
  }
  auto canonical = [](const std::string& p) {
    std::error_code e;
    fs::path c = fs::weakly_canonical(fs::absolute(p, e), e);
    return e ? fs::absolute(p).lexically_normal() : c;
  };
  return canonical(a) == canonical(b);
}

}  // namespace dp
