#include "runtime/core/json_write.h"

#include <ostream>

#include "runtime/core/atomic_write.h"

namespace dp {

std::string json_text(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void write_json_atomically(const std::string& option, const std::string& path,
                           const nlohmann::json& j, int indent) {
  const std::string text = json_text(j, indent);
  write_file_atomically(option, path, [&](std::ostream& out) { out << text << '\n'; });
}

}  // namespace dp
