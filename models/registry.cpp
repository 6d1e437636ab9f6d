#include "models/registry.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "runtime/core/error.h"

namespace dp {

ModelArgs::ModelArgs(const std::vector<ModelOption>& spec, ModelOptionValues given,
                     ModelOptionValues preset, DataShape data, uint64_t seed)
    : spec_(spec),
      given_(std::move(given)),
      preset_(std::move(preset)),
      data_(std::move(data)),
      seed_(seed) {}

const ModelOption& ModelArgs::find(const std::string& name) const {
  for (const ModelOption& o : spec_)
    if (o.name == name) return o;
  fail("internal: the model reads an option it does not declare: --{}", name);
}

std::string ModelArgs::get_string(const std::string& name) const {
  const ModelOption& o = find(name);
  if (auto it = given_.find(name); it != given_.end()) return it->second;
  if (auto it = preset_.find(name); it != preset_.end()) return it->second;
  return o.default_value;
}

bool ModelArgs::from_preset(const std::string& name) const {
  find(name);
  return given_.count(name) == 0 && preset_.count(name) > 0;
}

int64_t ModelArgs::get_int(const std::string& name, int64_t min) const {
  const std::string v = get_string(name);
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  DP_CHECK(!v.empty() && end != nullptr && *end == '\0' && errno == 0 && x >= min,
           "--{}: expected an integer >= {}, got '{}'", name, min, v);
  return x;
}

double ModelArgs::get_float(const std::string& name) const {
  const std::string v = get_string(name);
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  DP_CHECK(!v.empty() && end != nullptr && *end == '\0' && std::isfinite(x),
           "--{}: expected a number, got '{}'", name, v);
  return x;
}

std::vector<size_t> ModelArgs::get_sizes(const std::string& name) const {
  const std::string v = get_string(name);
  std::vector<size_t> out;
  size_t start = 0;
  while (start <= v.size()) {
    const size_t comma = std::min(v.find(',', start), v.size());
    const std::string item = v.substr(start, comma - start);
    char* end = nullptr;
    errno = 0;
    const long long x = std::strtoll(item.c_str(), &end, 10);
    DP_CHECK(!item.empty() && end != nullptr && *end == '\0' && errno == 0 && x > 0,
             "--{}: expected positive integers separated by commas, got '{}'", name, v);
    out.push_back(static_cast<size_t>(x));
    start = comma + 1;
  }
  return out;
}

const std::vector<ModelEntry>& model_registry() {
  static const std::vector<ModelEntry> entries = [] {
    std::vector<ModelEntry> e;
    e.push_back(mlp_model_entry());
    e.push_back(cnn_model_entry());
    e.push_back(gpt_model_entry());
    return e;
  }();
  return entries;
}

const ModelEntry& find_model(const std::string& name) {
  std::vector<std::string> names;
  for (const ModelEntry& e : model_registry()) {
    if (e.name == name) return e;
    names.push_back(e.name);
  }
  fail("--model {}: unknown model (available: {})", name, fmt::join(names, ", "));
}

std::vector<ModelOption> all_model_options() {
  std::vector<ModelOption> out;
  for (const ModelEntry& e : model_registry()) {
    for (const ModelOption& o : e.options) {
      bool seen = false;
      for (const ModelOption& have : out) seen = seen || have.name == o.name;
      if (!seen) out.push_back(o);
    }
  }
  return out;
}

ModelArgs make_model_args(const ModelEntry& entry, const ModelOptionValues& given,
                          const DataShape& data, uint64_t seed) {
  for (const auto& [name, value] : given) {
    bool known = false;
    for (const ModelOption& o : entry.options) known = known || o.name == name;
    DP_CHECK(known, "--{} is not an option of --model {} (its options: {})", name, entry.name, [&] {
      std::vector<std::string> n;
      for (const ModelOption& o : entry.options) n.push_back("--" + o.name);
      return fmt::format("{}", fmt::join(n, " "));
    }());
  }
  ModelOptionValues preset;
  if (auto it = given.find("preset"); it != given.end() && !it->second.empty()) {
    auto p = entry.presets.find(it->second);
    DP_CHECK(p != entry.presets.end(), "--preset {}: no such preset of --model {} (available: {})",
             it->second, entry.name, [&] {
               std::vector<std::string> n;
               for (const auto& [k, v] : entry.presets) n.push_back(k);
               return fmt::format("{}", fmt::join(n, ", "));
             }());
    preset = p->second;
  }
  return ModelArgs(entry.options, given, preset, data, seed);
}

}  // namespace dp
