#include "runtime/perf/run_profile.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ios>
#include <system_error>

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/core/json_field.h"
#include "runtime/core/json_write.h"
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

AllReduceFit fit_from_json(const json& j, const std::string& name) {
  const json& a = json_member(j, "", name);
  AllReduceFit f;
  f.world = json_field<int>(a, name, "world_size");
  f.alpha_us = json_field<double>(a, name, "alpha_us");
  f.us_per_byte = json_field<double>(a, name, "us_per_byte");
  const std::string samples = name + ".samples";
  for (const json& s : json_array(json_member(a, name, "samples"), samples)) {
    const std::string sample = fmt::format("{}[{}]", samples, f.samples.size());
    f.samples.push_back(
        {json_field<double>(s, sample, "bytes"), json_field<double>(s, sample, "us")});
  }
  DP_CHECK(f.world >= 1 && f.alpha_us >= 0 && f.us_per_byte > 0,
           "{} (all-reduce fit): world {}, alpha {} us, {} us/byte", name, f.world, f.alpha_us,
           f.us_per_byte);
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
    DP_CHECK(j.is_object() && j.contains("type") && j["type"] == "dprun-profile",
             "not a dprun profile (written by dprun --profile-out)");
    const int version = json_field<int>(j, "", "version");
    DP_CHECK(version == RunProfile::kVersion, "profile version {}, this dprun reads version {}",
             version, RunProfile::kVersion);
    RunProfile p;
    p.world_size = json_field<int>(j, "", "world_size");
    p.backend = json_field<std::string>(j, "", "backend");
    p.model = json_field<std::string>(j, "", "model");
    p.batch_size = json_field<size_t>(j, "", "batch_size");
    p.grad_accum = json_field<size_t>(j, "", "grad_accum");
    p.overlap = json_field<bool>(j, "", "overlap");
    p.wire_ratio = json_field<double>(j, "", "wire_ratio");
    // Profiles before them: line rate, hosts not recorded.
    if (j.contains("link_burst_bytes"))
      p.link_burst_bytes = json_field<double>(j, "", "link_burst_bytes");
    if (j.contains("hosts")) p.hosts = json_field<int>(j, "", "hosts");
    DP_CHECK(p.link_burst_bytes >= 0, "link_burst_bytes {} is negative", p.link_burst_bytes);
    const json& steps = json_array(json_member(j, "", "profiled_steps"), "profiled_steps");
    DP_CHECK(steps.size() == 2, "profiled_steps must be [first, last] (got {} numbers)",
             steps.size());
    p.first_step = json_as<uint64_t>(steps[0], "profiled_steps[0]");
    p.last_step = json_as<uint64_t>(steps[1], "profiled_steps[1]");
    const json& c = json_member(j, "", "compute");
    p.compute.pre_backward_us = json_field<double>(c, "compute", "pre_backward_us");
    p.compute.backward_us = json_field<double>(c, "compute", "backward_us");
    p.compute.post_backward_us = json_field<double>(c, "compute", "post_backward_us");
    p.compute.data_us = json_field<double>(c, "compute", "data_us");
    p.compute.forward_us = json_field<double>(c, "compute", "forward_us");
    p.compute.optimizer_us = json_field<double>(c, "compute", "optimizer_us");
    for (const json& t : json_array(json_member(c, "compute", "params"), "compute.params")) {
      const std::string param = fmt::format("compute.params[{}]", p.compute.params.size());
      p.compute.params.push_back({json_field<std::string>(t, param, "name"),
                                  json_field<size_t>(t, param, "bytes"),
                                  json_field<double>(t, param, "ready_us")});
      // All or none: profiles before own_ready_us have none.
      if (t.contains("own_ready_us") || !p.own_ready_us.empty()) {
        const double own = json_field<double>(t, param, "own_ready_us");
        DP_CHECK(std::isfinite(own) && own >= 0,
                 "{}.own_ready_us must be finite and not negative (got {})", param, own);
        DP_CHECK(p.own_ready_us.size() + 1 == p.compute.params.size(),
                 "{} has own_ready_us, and an earlier parameter has none", param);
        p.own_ready_us.push_back(own);
      }
    }
    p.allreduce_idle = fit_from_json(j, "allreduce_idle");
    p.allreduce_busy = fit_from_json(j, "allreduce_busy");
    const json& b = json_member(j, "", "buckets");
    p.first_bucket_mb = json_field<double>(b, "buckets", "first_mb");
    p.bucket_cap_mb = json_field<double>(b, "buckets", "cap_mb");
    p.auto_buckets = json_field<bool>(b, "buckets", "auto");
    for (const json& bucket :
         json_array(json_member(b, "buckets", "assignment"), "buckets.assignment")) {
      const std::string name = fmt::format("buckets.assignment[{}]", p.assignment.size());
      std::vector<size_t>& indices = p.assignment.emplace_back();
      for (const json& i : json_array(bucket, name))
        indices.push_back(json_as<size_t>(i, fmt::format("{}[{}]", name, indices.size())));
    }
    p.predicted_step_us = json_field<double>(b, "buckets", "predicted_step_us");
    p.predicted_exposed_us = json_field<double>(b, "buckets", "predicted_exposed_us");
    const json& m = json_member(j, "", "measured");
    p.measured.steps = json_field<uint64_t>(m, "measured", "steps");
    p.measured.step_us = json_field<double>(m, "measured", "step_us");
    p.measured.backward_us = json_field<double>(m, "measured", "backward_us");
    p.measured.comm_us = json_field<double>(m, "measured", "comm_us");
    p.measured.exposed_us = json_field<double>(m, "measured", "exposed_us");
    p.measured.other_wait_us = json_field<double>(m, "measured", "other_wait_us");
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
  const json j = to_json(p);
  write_json_atomically("--profile-out", path, j, 1);
}

RunProfile read_run_profile(const std::string& path) {
  // A directory opens as a stream, and its first read throws the C++ library's message
  // ("basic_filebuf::underflow ... Is a directory"), which names no file.
  std::error_code ec;
  DP_CHECK(!std::filesystem::is_directory(path, ec), "{}: is a directory, not a profile", path);
  std::ifstream in(path);
  DP_CHECK(in.is_open(), "{}: cannot open the profile", path);
  json j;
  try {
    in >> j;
  } catch (const json::exception& e) {
    fail("{}: not JSON: {}", path, e.what());
  } catch (const std::ios_base::failure& e) {
    fail("{}: cannot read the profile: {}", path, e.what());
  }
  return run_profile_from_json(j, path);
}

}  // namespace dp
