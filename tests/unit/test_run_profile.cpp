// The --profile-out file as dprun predict reads it (runtime/perf/run_profile.h): fields it would
// divide by, index with or scale by are refused by name; the compute it extrapolates from is
// rank 0's own, without the profiled run's skew between ranks.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/core/error.h"
#include "runtime/perf/run_profile.h"
#include "runtime/perf/scaling.h"
#include "tests/support/sample_profile.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

namespace {

RunProfile skewed() {
  return dp::test::skewed_mlp_profile();
}

std::string refusal(const nlohmann::json& j) {
  return error_of([&] { run_profile_from_json(j, "run.json"); });
}

}  // namespace

TEST(RunProfile, OwnReadyTimesRoundTrip) {
  const RunProfile p = run_profile_from_json(to_json(skewed()), "run.json");
  EXPECT_EQ(p.own_ready_us, skewed().own_ready_us);
  EXPECT_DOUBLE_EQ(p.compute.params[0].ready_us, 808);  // what the run's buckets waited for
  // Profiles written before own_ready_us: none.
  nlohmann::json j = to_json(skewed());
  for (nlohmann::json& q : j["compute"]["params"]) q.erase("own_ready_us");
  EXPECT_TRUE(run_profile_from_json(j, "run.json").own_ready_us.empty());
  // Some parameters with, some without: refused.
  j["compute"]["params"][3]["own_ready_us"] = 5.0;
  EXPECT_MENTIONS(refusal(j), "own_ready_us");
  j = to_json(skewed());
  j["compute"]["params"][1]["own_ready_us"] = -1.0;
  EXPECT_MENTIONS(refusal(j), "compute.params[1].own_ready_us must be finite and not negative");
}

TEST(RunProfile, ExtrapolationTakesTheRanksOwnCompute) {
  const RunProfile p = skewed();
  const BackwardProfile own = own_compute(p);
  EXPECT_DOUBLE_EQ(own.params[0].ready_us, 370);
  EXPECT_DOUBLE_EQ(own.params[4].ready_us, 10);
  EXPECT_DOUBLE_EQ(own.backward_us, p.compute.backward_us);
  // Without own times: the slowest rank's, never after this rank's backward ended.
  RunProfile old = p;
  old.own_ready_us.clear();
  const BackwardProfile clamped = own_compute(old);
  EXPECT_DOUBLE_EQ(clamped.params[0].ready_us, 378);
  EXPECT_DOUBLE_EQ(clamped.params[2].ready_us, 92);
}

TEST(RunProfile, OneGpuKeepsAllOfItsComputeWhateverThePeersDidWhenProfiled) {
  RunProfile old = skewed();
  old.own_ready_us.clear();
  for (const RunProfile& p : {skewed(), old}) {
    for (const Cluster& c :
         {h100_nvlink_ib(), emulated_link(2, 50), cluster_from_fit(p.allreduce_idle)}) {
      const ScalingRow one = predict_at(own_compute(p), c, 1);
      EXPECT_DOUBLE_EQ(one.efficiency, 1.0) << c.name;
      EXPECT_DOUBLE_EQ(one.chosen.prediction.exposed_us, 0) << c.name;
      EXPECT_DOUBLE_EQ(one.fixed.prediction.exposed_us, 0) << c.name;
    }
  }
  // The skew is not carried to more GPUs either: on a link that costs nothing, none is exposed.
  Cluster free_link = h100_nvlink_ib();
  free_link.intra = free_link.inter = Link{0, 1e15};
  EXPECT_DOUBLE_EQ(predict_at(own_compute(skewed()), free_link, 64).chosen.prediction.exposed_us,
                   0);
}

TEST(RunProfile, FieldsPredictWouldMisuseAreRefusedByName) {
  nlohmann::json j = to_json(skewed());
  j["wire_ratio"] = 0.0;
  EXPECT_MENTIONS(refusal(j), "run.json: wire_ratio must be > 0");
  j["wire_ratio"] = -0.5;
  EXPECT_MENTIONS(refusal(j), "run.json: wire_ratio must be > 0");
  j = to_json(skewed());
  j["world_size"] = 0;
  EXPECT_MENTIONS(refusal(j), "run.json: world_size must be at least 1 (got 0)");
  j = to_json(skewed());
  j["buckets"]["assignment"] = {{5, 4, 3}, {2}, {1}};  // misses fc1.weight
  EXPECT_MENTIONS(refusal(j),
                  "run.json: buckets.assignment is not a partition of the 6 parameters");
  j["buckets"]["assignment"] = {{5, 4, 3}, {2}, {1}, {0}, {0}};
  EXPECT_MENTIONS(refusal(j), "buckets.assignment");
  j["buckets"]["assignment"] = {{5, 4, 3}, {2}, {1}, {0, 6}};
  EXPECT_MENTIONS(refusal(j), "buckets.assignment");
  j["buckets"]["assignment"] = {{5, 4, 3, 2, 1, 0}, nlohmann::json::array()};
  EXPECT_MENTIONS(refusal(j), "buckets.assignment");
  j = to_json(skewed());
  j["measured"]["step_us"] = 0.0;
  EXPECT_MENTIONS(refusal(j), "run.json: measured.step_us must be > 0 when measured.steps is 7");
  // No measured steps: nothing to divide by, and nothing to check.
  j["measured"]["steps"] = 0;
  EXPECT_NO_THROW(run_profile_from_json(j, "run.json"));
}

TEST(RunProfile, CountsAreWholeNumbersInRangeAndErrorsNameTheField) {
  // get<int>() of 1e30 was undefined behaviour (a double out of int's range; UBSan stops there),
  // -8 became 2^64 - 8 parameter bytes and 2.5 ranks became 2, all without a word; a string
  // where a number belongs was "type must be number, but is string", without the field.
  struct Bad {
    const char* pointer;
    nlohmann::json value;
    const char* field;
  };
  const std::vector<Bad> bad = {
      {"/world_size", 1e30, "world_size"},
      {"/world_size", 2.5, "world_size"},
      {"/version", 1.5, "version"},
      {"/hosts", 1e30, "hosts"},
      {"/batch_size", -1, "batch_size"},
      {"/profiled_steps/1", 1e30, "profiled_steps[1]"},
      {"/compute/params/2/bytes", -8, "compute.params[2].bytes"},
      {"/allreduce_busy/world_size", 4e9, "allreduce_busy.world_size"},
      {"/buckets/assignment/0/1", 4.5, "buckets.assignment[0][1]"},
      {"/measured/steps", -7, "measured.steps"},
  };
  for (const Bad& b : bad) {
    nlohmann::json j = to_json(skewed());
    j[nlohmann::json::json_pointer(b.pointer)] = b.value;
    EXPECT_MENTIONS(refusal(j), std::string("run.json: ") + b.field + " must be a whole number")
        << b.pointer << " = " << b.value;
  }
  nlohmann::json j = to_json(skewed());
  j["wire_ratio"] = "fast";
  EXPECT_MENTIONS(refusal(j), "run.json: wire_ratio must be a number (got string)");
  j = to_json(skewed());
  j["buckets"]["assignment"][0] = 3;
  EXPECT_MENTIONS(refusal(j), "run.json: buckets.assignment[0] must be an array (got 3)");
  j = to_json(skewed());
  j["compute"].erase("backward_us");
  EXPECT_MENTIONS(refusal(j), "run.json: compute.backward_us is missing");
}

TEST(RunProfile, ADirectoryIsRefusedWithItsPath) {
  // It opened as a stream, and the first read threw the C++ library's "basic_filebuf::underflow
  // error reading the file: Is a directory", which names no file.
  const std::string msg = error_of([] { read_run_profile("/tmp"); });
  EXPECT_MENTIONS(msg, "/tmp: is a directory, not a profile");
}
