#include "runtime/train/checkpoint.h"

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/core/json_write.h"
#include "runtime/train/checkpoint_dir.h"

namespace dp {

namespace {

using json = nlohmann::json;

struct NamedTensor {
  std::string section;
  Tensor* tensor;
};

std::vector<NamedTensor> tensors_of(const std::vector<Parameter*>& params,
                                    const std::vector<Buffer*>& buffers, Optimizer* optimizer) {
  std::vector<NamedTensor> out;
  out.reserve(params.size() + buffers.size());
  for (Parameter* p : params) out.push_back({"param/" + p->name, &p->value});
  for (Buffer* b : buffers) out.push_back({"buffer/" + b->name, &b->value});
  if (optimizer)
    for (auto& [name, t] : optimizer->state_tensors()) out.push_back({"optimizer/" + name, t});
  return out;
}

// JSON has no NaN or infinity (nlohmann writes null for both), but the epoch's loss sum is
// one after a step skipped under --on-nonfinite skip: such a checkpoint must still resume,
// with the same sum. Non-finite values are written as text.
json loss_sum_json(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
}

double loss_sum_of(const json& j, const std::string& path, const char* field) {
  if (j.is_number()) return j.get<double>();
  // null: a non-finite sum as dprun wrote it before the text form.
  if (j.is_null() || j == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (j == "inf") return std::numeric_limits<double>::infinity();
  if (j == "-inf") return -std::numeric_limits<double>::infinity();
  fail("checkpoint {}: section 'meta': {} {} is not a number, \"nan\", \"inf\" or \"-inf\"", path,
       field, j.dump());
}

}  // namespace

uint64_t write_checkpoint(const std::string& path, const CheckpointMeta& meta,
                          const std::vector<Parameter*>& params,
                          const std::vector<Buffer*>& buffers, Optimizer& optimizer) {
  const std::vector<NamedTensor> tensors = tensors_of(params, buffers, &optimizer);
  json list = json::array();
  for (const NamedTensor& t : tensors)
    list.push_back({{"section", t.section},
                    {"dtype", dtype_name(t.tensor->dtype())},
                    {"shape", t.tensor->shape()}});
  json settings = json::array();
  for (const auto& [k, v] : meta.settings) settings.push_back({k, v});
  const TrainingProgress& p = meta.progress;
  json m = {
      {"format", "dprun checkpoint"},
      {"dprun_version", meta.dprun_version},
      {"step", p.step},
      {"epoch", p.epoch},
      {"step_in_epoch", p.step_in_epoch},
      {"epoch_loss_sum", loss_sum_json(p.epoch_loss_sum)},
      {"last_eval_step", p.last_eval_step == UINT64_MAX ? json(nullptr) : json(p.last_eval_step)},
      {"skipped_steps", p.skipped_steps},
      {"last_epoch_loss", p.last_epoch_loss ? loss_sum_json(*p.last_epoch_loss) : json(nullptr)},
      {"outputs_pending", p.outputs_pending},
      {"wall_s", p.wall_s},
      {"epoch_skipped_steps", p.epoch_skipped_steps},
      {"world_size", meta.world_size},
      {"batch_size", meta.batch_size},
      {"grad_accum", meta.grad_accum},
      {"steps_per_epoch", meta.steps_per_epoch},
      {"seed", meta.seed},
      {"rng",
       "counter-based: Philox(seed, name) init, Philox(seed + epoch) shuffle, seed + step "
       "sampling; (seed, epoch, step) is the whole state"},
      {"model", meta.model},
      {"optimizer", meta.optimizer},
      {"optimizer_steps", optimizer.steps()},
      {"settings", settings},
      {"buckets", meta.buckets},
      {"buckets_auto_pending", meta.buckets_auto_pending},
      {"tensors", list},
  };
  CheckpointWriter w(path);
  w.add("meta", json_text(m, 1));
  for (const NamedTensor& t : tensors) {
    const Tensor host = t.tensor->to(Device::cpu());  // itself on the CPU
    w.add(t.section, host.raw(), host.nbytes());
  }
  w.commit();
  return w.bytes_written();
}

CheckpointMeta read_checkpoint_meta(const CheckpointReader& reader) {
  return parse_checkpoint_meta(reader.read_text("meta"), reader.path());
}

CheckpointMeta parse_checkpoint_meta(const std::string& text, const std::string& path) {
  CheckpointMeta meta;
  try {
    const json m = json::parse(text);
    TrainingProgress& p = meta.progress;
    p.step = m.at("step").get<uint64_t>();
    p.epoch = m.at("epoch").get<uint64_t>();
    p.step_in_epoch = m.at("step_in_epoch").get<uint64_t>();
    p.epoch_loss_sum = loss_sum_of(m.at("epoch_loss_sum"), path, "epoch_loss_sum");
    p.last_eval_step =
        m.at("last_eval_step").is_null() ? UINT64_MAX : m.at("last_eval_step").get<uint64_t>();
    p.skipped_steps = m.value("skipped_steps", uint64_t(0));  // absent before dprun recorded it
    p.epoch_skipped_steps = m.value("epoch_skipped_steps", uint64_t(0));  // likewise
    // Absent before dprun recorded them: no loss to report, nothing to make up.
    if (m.contains("last_epoch_loss") && !m.at("last_epoch_loss").is_null())
      p.last_epoch_loss = loss_sum_of(m.at("last_epoch_loss"), path, "last_epoch_loss");
    p.outputs_pending = m.value("outputs_pending", false);
    p.wall_s = m.value("wall_s", 0.0);
    meta.world_size = m.at("world_size").get<int>();
    meta.batch_size = m.at("batch_size").get<size_t>();
    meta.grad_accum = m.at("grad_accum").get<size_t>();
    meta.steps_per_epoch = m.at("steps_per_epoch").get<size_t>();
    meta.seed = m.at("seed").get<uint64_t>();
    meta.model = m.at("model").get<std::string>();
    meta.optimizer = m.at("optimizer").get<std::string>();
    meta.optimizer_steps = m.at("optimizer_steps").get<int64_t>();
    meta.dprun_version = m.at("dprun_version").get<std::string>();
    for (const json& kv : m.at("settings"))
      meta.settings.emplace_back(kv.at(0).get<std::string>(), kv.at(1).get<std::string>());
    meta.buckets = m.at("buckets").get<std::vector<std::vector<size_t>>>();
    meta.buckets_auto_pending = m.value("buckets_auto_pending", false);
  } catch (const json::exception& e) {
    fail("checkpoint {}: section 'meta' is not what this dprun writes: {}", path, e.what());
  }
  DP_CHECK(meta.world_size >= 1 && meta.batch_size >= 1 && meta.grad_accum >= 1,
           "checkpoint {}: section 'meta': world size {}, batch {}, accumulation {} are invalid",
           path, meta.world_size, meta.batch_size, meta.grad_accum);
  return meta;
}

void load_checkpoint_tensors(const CheckpointReader& reader, const std::vector<Parameter*>& params,
                             const std::vector<Buffer*>& buffers, Optimizer* optimizer) {
  int64_t optimizer_steps = 0;
  const json m = json::parse(reader.read_text("meta"), nullptr, /*allow_exceptions=*/false);
  if (optimizer) {
    const std::string kind = m.is_object() ? m.value("optimizer", "?") : "?";
    DP_CHECK(kind == optimizer->kind(),
             "checkpoint {}: it holds the state of optimizer {}, this run uses {} (--optimizer)",
             reader.path(), kind, optimizer->kind());
    optimizer_steps = m.value("optimizer_steps", int64_t(-1));
    DP_CHECK(optimizer_steps >= 0, "checkpoint {}: section 'meta' has no optimizer_steps",
             reader.path());
  }
  const std::vector<NamedTensor> tensors = tensors_of(params, buffers, optimizer);
  // The meta lists each tensor's dtype and shape: a [6,4] weight must not load into a [4,6]
  // one of the same bytes (a model whose code changed under the same options).
  std::map<std::string, std::string> listed;  // section -> "f32[6, 4]"
  if (m.is_object() && m.contains("tensors") && m["tensors"].is_array()) {
    for (const json& e : m["tensors"]) {
      if (!e.is_object() || !e.contains("section") || !e["section"].is_string()) continue;
      std::vector<int64_t> shape;
      for (const json& d : e.value("shape", json::array()))
        if (d.is_number_integer()) shape.push_back(d.get<int64_t>());
      const bool named = e.contains("dtype") && e["dtype"].is_string();
      listed[e["section"].get<std::string>()] = fmt::format(
          "{}[{}]", named ? e["dtype"].get<std::string>() : "?", fmt::join(shape, ", "));
    }
  }
  // Everything is checked before anything is overwritten.
  for (const NamedTensor& t : tensors) {
    if (auto it = listed.find(t.section); it != listed.end()) {
      const std::string here = dtype_name(t.tensor->dtype()) + shape_str(t.tensor->shape());
      DP_CHECK(it->second == here,
               "checkpoint {}: {} is {}, this model's is {} (another model, or changed model "
               "code?)",
               reader.path(), t.section, it->second, here);
    }
    DP_CHECK(reader.has(t.section),
             "checkpoint {}: has no {} (it was written for another model or model options; "
             "its parameters are listed in its 'meta' section)",
             reader.path(), t.section);
    DP_CHECK(reader.section(t.section).bytes == t.tensor->nbytes(),
             "checkpoint {}: {} has {} bytes, this model's {} has {} (another model size?)",
             reader.path(), t.section, reader.section(t.section).bytes, t.tensor->str(),
             t.tensor->nbytes());
  }
  // And nothing more: a checkpoint of a larger model that contains this one's names is
  // another model, not this one.
  auto count = [&](const char* prefix) {
    size_t n = 0;
    for (const CheckpointSection& s : reader.sections()) n += s.name.rfind(prefix, 0) == 0;
    return n;
  };
  const size_t model_tensors = count("param/") + count("buffer/");
  DP_CHECK(model_tensors == params.size() + buffers.size(),
           "checkpoint {}: holds {} parameters and buffers, this model has {}: it was written for "
           "another model",
           reader.path(), model_tensors, params.size() + buffers.size());
  for (const NamedTensor& t : tensors) {
    if (t.tensor->device().is_cuda()) {
      Tensor host = Tensor::zeros(t.tensor->shape(), t.tensor->dtype());
      reader.read(t.section, host.raw(), host.nbytes());
      t.tensor->copy_(host);
    } else {
      reader.read(t.section, t.tensor->raw(), t.tensor->nbytes());
    }
  }
  if (optimizer) optimizer->set_steps(optimizer_steps);
}

}  // namespace dp
