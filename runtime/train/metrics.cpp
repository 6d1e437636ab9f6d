#include "runtime/train/metrics.h"

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"

namespace dp {

nlohmann::json to_json(const StepMetrics& m) {
  return {{"type", "step"},
          {"step", m.step},
          {"epoch", m.epoch},
          {"loss", m.loss},
          {"lr", m.lr},
          {"samples_per_s", m.samples_per_s},
          {"step_ms", m.step_ms},
          {"data_ms", m.data_ms},
          {"forward_ms", m.forward_ms},
          {"backward_ms", m.backward_ms},
          {"optimizer_ms", m.optimizer_ms},
          {"comm_ms", m.comm_ms},
          {"exposed_comm_ms", m.exposed_comm_ms},
          {"overlap", m.overlap}};
}

JsonLog::JsonLog(const std::string& path) : out_(path, std::ios::trunc), path_(path) {
  DP_CHECK(out_.is_open(), "--log-json {}: cannot open the file for writing", path);
}

void JsonLog::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  DP_CHECK(out_.good(), "--log-json {}: write failed (disk full?)", path_);
}

}  // namespace dp
