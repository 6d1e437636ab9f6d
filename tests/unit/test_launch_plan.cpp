// dprun launch's plan: one rank per GPU or per core, hostfiles, Slurm, binding that fits.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/launch/launch_plan.h"

using namespace dp;

namespace {

std::string cmd(const LaunchPlan& p) {
  return shell_join(p.argv);
}

LaunchRequest request(std::vector<std::string> dprun_args = {"--epochs", "1"}) {
  LaunchRequest r;
  r.dprun = "/opt/dprun";
  r.dprun_args = std::move(dprun_args);
  return r;
}

TEST(LaunchPlan, OneRankPerGpu) {
  LaunchFacts f;
  f.gpus = 8;
  f.cores = 96;
  const LaunchPlan p = plan_launch(request(), f);
  EXPECT_EQ(p.np, 8);
  EXPECT_EQ(cmd(p), "mpirun -np 8 --map-by slot --bind-to numa /opt/dprun --epochs 1");
  EXPECT_NE(p.why.find("8 GPU(s)"), std::string::npos) << p.why;
}

TEST(LaunchPlan, OneRankPerCoreWithoutGpus) {
  LaunchFacts f;
  f.cores = 2;
  f.root = true;
  const LaunchPlan p = plan_launch(request(), f);
  EXPECT_EQ(cmd(p),
            "mpirun --allow-run-as-root -np 2 --map-by core --bind-to core -x "
            "OPENBLAS_NUM_THREADS=1 /opt/dprun --epochs 1");
  LaunchRequest r = request();
  r.np = "4";
  const LaunchPlan over = plan_launch(r, f);
  EXPECT_EQ(over.np, 4);
  EXPECT_NE(cmd(over).find("-np 4 --oversubscribe --bind-to none"), std::string::npos) << cmd(over);
  r.np = "-1";
  EXPECT_THROW(plan_launch(r, f), Error);
  r.np = "two";
  EXPECT_THROW(plan_launch(r, f), Error);
}

TEST(LaunchPlan, HostfileSlotsAndDefaults) {
  const auto hosts =
      parse_hostfile("# cluster\nnode1 slots=4\nnode2\n\nnode3 slots=2 max_slots=8\n", "h");
  ASSERT_EQ(hosts.size(), 3u);
  EXPECT_EQ(hosts[0].slots, 4);
  EXPECT_EQ(hosts[1].slots, 0);
  LaunchRequest r = request();
  r.hosts = hosts;
  r.hostfile = "h";
  LaunchFacts f;
  f.gpus = 8;
  const LaunchPlan p = plan_launch(r, f);
  EXPECT_EQ(p.np, 4 + 8 + 2);  // a host without slots= has as many as this one has GPUs
  EXPECT_NE(cmd(p).find("--host node1:4,node2:8,node3:2 -np 14"), std::string::npos) << cmd(p);
}

TEST(LaunchPlan, HostfileErrorsNameFileAndLine) {
  try {
    parse_hostfile("a slots=2\nb slots=x\n", "hosts.txt");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hosts.txt:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_hostfile("a\na\n", "h"), Error);
  EXPECT_THROW(parse_hostfile("a cpus=3\n", "h"), Error);
  EXPECT_THROW(parse_hostfile("# nothing\n", "h"), Error);
}

TEST(LaunchPlan, SlurmUsesTheAllocation) {
  LaunchRequest r = request();
  r.slurm = true;
  LaunchFacts f;
  EXPECT_THROW(plan_launch(r, f), Error);  // not inside an allocation
  f.in_slurm = true;
  f.slurm_ntasks = 16;
  f.slurm_nnodes = 2;
  f.gpus = 8;
  const LaunchPlan p = plan_launch(r, f);
  EXPECT_EQ(p.np, 16);
  EXPECT_EQ(cmd(p), "srun --mpi=pmix --ntasks=16 /opt/dprun --epochs 1");
}

TEST(LaunchPlan, ShellJoinQuotes) {
  EXPECT_EQ(shell_join({"a", "b c", "it's", ""}), "a 'b c' 'it'\\''s' ''");
}

}  // namespace
