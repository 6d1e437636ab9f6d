#include "runtime/perf/run_profile.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/ddp/bucket_assignment.h"

namespace dp {

using nlohmann::json;

namespace {

json fit_json(const AllReduceFit& f) {
  json samples = json::array();
  for (const AllReduceFit::Sample& s : f.samples)
    samples.push_back({{"bytes", s.bytes}, {"us", s.us}});
  return {{"world_size", f.world},
          {"alpha_us", f.alpha_us},
          {"us_per_byte", f.us_per_byte},
          {"samples", samples}};
}

AllReduceFit fit_from_json(const json& a) {
  AllReduceFit f;
  f.world = a.at("world_size").get<int>();
  f.alpha_us = a.at("alpha_us").get<double>();
  f.us_per_byte = a.at("us_per_byte").get<double>();
  for (const json& s : a.at("samples"))
    f.samples.push_back({s.at("bytes").get<double>(), s.at("us").get<double>()});
  DP_CHECK(f.world >= 1 && f.alpha_us >= 0 && f.us_per_byte > 0,
           "all-reduce fit: world {}, alpha {} us, {} us/byte", f.world, f.alpha_us, f.us_per_byte);
  return f;
}

// What predict divides by, scales by or indexes with: a bad value gave +inf% errors, a world of
// 0 ranks or a simulation of parameters that do not exist.
void check_fields(const RunProfile& p) {
  DP_CHECK(p.world_size >= 1, "world_size must be at least 1 (got {})", p.world_size);
  DP_CHECK(std::isfinite(p.wire_ratio) && p.wire_ratio > 0,
           "wire_ratio must be > 0 (bytes on the wire per gradient byte; got {})", p.wire_ratio);
  try {
    check_assignment(p.assignment, p.compute.params.size());
  } catch (const Error& e) {
    fail("buckets.assignment is not a partition of the {} parameters: {}", p.compute.params.size(),
         e.what());
  }
  if (p.measured.steps > 0)
    DP_CHECK(std::isfinite(p.measured.step_us) && p.measured.step_us > 0,
             "measured.step_us must be > 0 when measured.steps is {} (got {})", p.measured.steps,
             p.measured.step_us);
}

}  // namespace

BackwardProfile own_compute(const RunProfile& p) {
  BackwardProfile c = p.compute;
  for (size_t i = 0; i < c.params.size(); ++i) {
    const double ready = p.own_ready_us.empty() ? c.params[i].ready_us : p.own_ready_us.at(i);
    c.params[i].ready_us = std::min(ready, c.backward_us);
  }
  return c;
}

double link_burst_from_env() {
  const char* v = std::getenv("DPRUN_LINK_BURST");
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  errno = 0;
  const unsigned long long bytes = std::strtoull(v, &end, 10);
  DP_CHECK(*end == '\0' && errno == 0 && std::isdigit(static_cast<unsigned char>(*v)),
           "DPRUN_LINK_BURST='{}': expected the links' token bucket in bytes (dprun-netns sets "
           "it), e.g. 4000768",
           v);
  return double(bytes);
}

json to_json(const RunProfile& p) {
  DP_CHECK(p.own_ready_us.empty() || p.own_ready_us.size() == p.compute.params.size(),
           "profile: {} own ready times for {} parameters", p.own_ready_us.size(),
           p.compute.params.size());
  json params = json::array();
  for (size_t i = 0; i < p.compute.params.size(); ++i) {
    const ParamTiming& t = p.compute.params[i];
    json q = {{"name", t.name}, {"bytes", t.bytes}, {"ready_us", t.ready_us}};
    if (!p.own_ready_us.empty()) q["own_ready_us"] = p.own_ready_us[i];
    params.push_back(std::move(q));
  }
  return json{
      {"type", "dprun-profile"},
      {"version", RunProfile::kVersion},
      {"world_size", p.world_size},
      {"backend", p.backend},
      {"model", p.model},
      {"batch_size", p.batch_size},
      {"grad_accum", p.grad_accum},
      {"overlap", p.overlap},
      {"wire_ratio", p.wire_ratio},
      {"link_burst_bytes", p.link_burst_bytes},
      {"hosts", p.hosts},
      {"profiled_steps", {p.first_step, p.last_step}},
      {"compute",
       {{"pre_backward_us", p.compute.pre_backward_us},
        {"backward_us", p.compute.backward_us},
        {"post_backward_us", p.compute.post_backward_us},
        {"data_us", p.compute.data_us},
        {"forward_us", p.compute.forward_us},
        {"optimizer_us", p.compute.optimizer_us},
        {"params", params}}},
      {"allreduce_idle", fit_json(p.allreduce_idle)},
      {"allreduce_busy", fit_json(p.allreduce_busy)},
      {"buckets",
       {{"first_mb", p.first_bucket_mb},
        {"cap_mb", p.bucket_cap_mb},
        {"auto", p.auto_buckets},
        {"assignment", p.assignment},
        {"predicted_step_us", p.predicted_step_us},
        {"predicted_exposed_us", p.predicted_exposed_us}}},
      {"measured",
       {{"steps", p.measured.steps},
        {"step_us", p.measured.step_us},
        {"backward_us", p.measured.backward_us},
        {"comm_us", p.measured.comm_us},
        {"exposed_us", p.measured.exposed_us},
        {"other_wait_us", p.measured.other_wait_us}}},
  };
}

RunProfile run_profile_from_json(const json& j, const std::string& where) {
  try {
    DP_CHECK(j.value("type", "") == "dprun-profile",
             "not a dprun profile (written by dprun --profile-out)");
    const int version = j.at("version").get<int>();
    DP_CHECK(version == RunProfile::kVersion, "profile version {}, this dprun reads version {}",
             version, RunProfile::kVersion);
    RunProfile p;
    p.world_size = j.at("world_size").get<int>();
    p.backend = j.at("backend").get<std::string>();
    p.model = j.at("model").get<std::string>();
    p.batch_size = j.at("batch_size").get<size_t>();
    p.grad_accum = j.at("grad_accum").get<size_t>();
    p.overlap = j.at("overlap").get<bool>();
    p.wire_ratio = j.at("wire_ratio").get<double>();
    p.link_burst_bytes = j.value("link_burst_bytes", 0.0);  // profiles before it: line rate
    p.hosts = j.value("hosts", 0);
    DP_CHECK(p.link_burst_bytes >= 0, "link_burst_bytes {} is negative", p.link_burst_bytes);
    p.first_step = j.at("profiled_steps").at(0).get<uint64_t>();
    p.last_step = j.at("profiled_steps").at(1).get<uint64_t>();
    const json& c = j.at("compute");
    p.compute.pre_backward_us = c.at("pre_backward_us").get<double>();
    p.compute.backward_us = c.at("backward_us").get<double>();
    p.compute.post_backward_us = c.at("post_backward_us").get<double>();
    p.compute.data_us = c.at("data_us").get<double>();
    p.compute.forward_us = c.at("forward_us").get<double>();
    p.compute.optimizer_us = c.at("optimizer_us").get<double>();
    const json& params = c.at("params");
    for (const json& t : params) {
      p.compute.params.push_back({t.at("name").get<std::string>(), t.at("bytes").get<size_t>(),
                                  t.at("ready_us").get<double>()});
      // All or none: profiles before own_ready_us have none.
      if (t.contains("own_ready_us") || !p.own_ready_us.empty()) {
        const double own = t.at("own_ready_us").get<double>();
        DP_CHECK(std::isfinite(own) && own >= 0,
                 "compute.params[{}].own_ready_us must be finite and not negative (got {})",
                 p.compute.params.size() - 1, own);
        DP_CHECK(p.own_ready_us.size() + 1 == p.compute.params.size(),
                 "compute.params[{}] has own_ready_us, and an earlier parameter has none",
                 p.compute.params.size() - 1);
        p.own_ready_us.push_back(own);
      }
    }
    p.allreduce_idle = fit_from_json(j.at("allreduce_idle"));
    p.allreduce_busy = fit_from_json(j.at("allreduce_busy"));
    const json& b = j.at("buckets");
    p.first_bucket_mb = b.at("first_mb").get<double>();
    p.bucket_cap_mb = b.at("cap_mb").get<double>();
    p.auto_buckets = b.at("auto").get<bool>();
    p.assignment = b.at("assignment").get<std::vector<std::vector<size_t>>>();
    p.predicted_step_us = b.at("predicted_step_us").get<double>();
    p.predicted_exposed_us = b.at("predicted_exposed_us").get<double>();
    const json& m = j.at("measured");
    p.measured.steps = m.at("steps").get<uint64_t>();
    p.measured.step_us = m.at("step_us").get<double>();
    p.measured.backward_us = m.at("backward_us").get<double>();
    p.measured.comm_us = m.at("comm_us").get<double>();
    p.measured.exposed_us = m.at("exposed_us").get<double>();
    p.measured.other_wait_us = m.at("other_wait_us").get<double>();
    p.compute.validate();
    check_fields(p);
    return p;
  } catch (const json::exception& e) {
    fail("{}: malformed profile: {}", where, e.what());
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
}

void write_run_profile(const std::string& path, const RunProfile& p) {
  // Whole or not at all: a temporary file renamed over the target, removed on failure.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    DP_CHECK(out.is_open(), "--profile-out {}: cannot open {} for writing", path, tmp);
    out << to_json(p).dump(1) << '\n';
    out.flush();
    if (!out.good()) {
      out.close();
      std::remove(tmp.c_str());
      fail("--profile-out {}: write failed (disk full?)", path);
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail("--profile-out {}: cannot rename {} into place", path, tmp);
  }
}

RunProfile read_run_profile(const std::string& path) {
  std::ifstream in(path);
  DP_CHECK(in.is_open(), "{}: cannot open the profile", path);
  json j;
  try {
    in >> j;
  } catch (const json::exception& e) {
    fail("{}: not JSON: {}", path, e.what());
  }
  return run_profile_from_json(j, path);
}

}  // namespace dp
