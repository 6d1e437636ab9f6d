#include "launcher/config_origin.h"

#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace dp {

namespace {

bool option_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

}  // namespace

std::string with_config_origin(const std::string& message, const ConfigOrigins& origins) {
  if (origins.empty() || message.rfind("--config ", 0) == 0) return message;
  // Every "--name" token, in order of appearance, that the file set (each once): the first
  // one is the option the check is about, later ones its partners ("--min-lr must be in
  // [0, --lr]"), whose origin matters just as much.
  std::vector<std::string> found;
  std::string subject;  // the message's first option, from the file or not
  for (size_t pos = message.find("--"); pos != std::string::npos;
       pos = message.find("--", pos + 2)) {
    if (pos > 0 && option_char(message[pos - 1])) continue;  // inside a word or a path
    size_t end = pos + 2;
    while (end < message.size() && option_char(message[end])) ++end;
    std::string name = message.substr(pos + 2, end - pos - 2);
    while (!name.empty() && name.back() == '-') name.pop_back();  // "--lr--" is not an option
    if (subject.empty()) subject = name;
    if (origins.count(name) == 0) continue;
    bool seen = false;
    for (const auto& f : found) seen = seen || f == name;
    if (!seen) found.push_back(name);
  }
  if (found.empty()) return message;
  // "(from FILE:LINE)" alone reads as the origin of the option the message is about: only
  // when that one came from the file (not for a partner, as in "--warmup-steps 5 is longer
  // than ... or --lr-schedule constant" with only --lr-schedule from the file).
  if (found.size() == 1 && found[0] == subject) {
    return fmt::format("{} (from {})", message, origins.at(found[0]));
  }
  std::vector<std::string> parts;
  parts.reserve(found.size());
  for (const auto& name : found)
    parts.push_back(fmt::format("--{} from {}", name, origins.at(name)));
  return fmt::format("{} ({})", message, fmt::join(parts, ", "));
}

}  // namespace dp
