// dprun launch's plan: one rank per GPU or per core, hostfiles, Slurm, binding that fits.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "runtime/core/error.h"
#include "runtime/launch/launch_plan.h"
#include "tests/support/temp_dir.h"

using namespace dp;
using dp::test::error_of;

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
  // Unbound by mpirun: --bind-to numa gave rank i NUMA node i mod N, not its GPU's; each rank
  // binds itself to its GPU's CPUs (test_gpu_affinity.cpp).
  EXPECT_EQ(cmd(p), "mpirun -np 8 --map-by slot --bind-to none /opt/dprun --epochs 1");
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
  // Fewer ranks than cores: unbound, or they and every job beside them share the first cores.
  r.np = "1";
  EXPECT_NE(cmd(plan_launch(r, f)).find("-np 1 --bind-to none -x"), std::string::npos)
      << cmd(plan_launch(r, f));
  // A launcher under taskset: unbound, the ranks keep its mask (--bind-to core would not).
  LaunchFacts masked = f;
  masked.mask_narrowed = true;
  EXPECT_NE(cmd(plan_launch(request(), masked)).find("-np 2 --bind-to none -x"), std::string::npos);
  EXPECT_NE(plan_launch(request(), masked).why.find("keep this process's CPU mask"),
            std::string::npos);
  r.np = "-1";
  EXPECT_THROW(plan_launch(r, f), Error);
  r.np = "two";
  EXPECT_THROW(plan_launch(r, f), Error);
  // The message names the range, the upper end too: "-np 99999999999" is refused for its size.
  r.np = "99999999999";
  EXPECT_MENTIONS(error_of([&] { plan_launch(r, f); }),
                  "dprun launch -np: expected a whole number from 1 to 9999999, got '99999999999'");
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

TEST(LaunchPlan, HostfileMaxSlots) {
  auto hosts = parse_hostfile("a max_slots=2\nb slots=1 max_slots=3\nc\n", "h");
  EXPECT_EQ(hosts[0].max_slots, 2);
  EXPECT_EQ(hosts[1].max_slots, 3);
  EXPECT_EQ(hosts[2].max_slots, 0);
  EXPECT_MENTIONS(error_of([] { parse_hostfile("a\nb slots=4 max_slots=2\n", "hf"); }),
                  "hf:2: slots=4 is more than max_slots=2");
  LaunchRequest r = request();
  r.hosts = hosts;
  r.hostfile = "h";
  LaunchFacts f;
  f.cores = 4;
  // A host without slots= gets this one's count, up to its max_slots.
  LaunchPlan p = plan_launch(r, f);
  EXPECT_EQ(p.np, 2 + 1 + 4);
  EXPECT_NE(cmd(p).find("--host a:2,b:1,c:4 -np 7 --map-by core --bind-to core"), std::string::npos)
      << cmd(p);
  // More ranks than slots: the extra ones go one at a time where max_slots leaves room, so
  // mpirun's --oversubscribe (blind to max_slots) is not needed.
  r.np = "11";
  p = plan_launch(r, f);
  EXPECT_NE(cmd(p).find("--host a:2,b:3,c:6 -np 11 --map-by slot --bind-to none"),
            std::string::npos)
      << cmd(p);
  EXPECT_EQ(cmd(p).find("--oversubscribe"), std::string::npos) << cmd(p);
  // Every host with a max: no more ranks than they add up to.
  r.hosts = parse_hostfile("a max_slots=2\nb slots=1 max_slots=3\n", "h");
  r.np = "5";
  EXPECT_NE(cmd(plan_launch(r, f)).find("--host a:2,b:3 -np 5"), std::string::npos);
  r.np = "6";
  EXPECT_MENTIONS(error_of([&] { plan_launch(r, f); }),
                  "-np 6: more ranks than the hosts of h take (max_slots: 5 in all)");
  // No max anywhere: oversubscribed as before.
  r.hosts = parse_hostfile("a slots=1\n", "h");
  r.np = "3";
  EXPECT_NE(cmd(plan_launch(r, f)).find("--host a:1 -np 3 --oversubscribe --bind-to none"),
            std::string::npos);
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
  // --host's "host:N" is not hostfile syntax (Open MPI's --hostfile refuses it too).
  EXPECT_MENTIONS(error_of([] { parse_hostfile("a slots=1\nlocalhost:2\n", "hosts.txt"); }),
                  "--hosts hosts.txt:2: 'localhost:2': a hostfile names its slots as 'localhost "
                  "slots=2'");
  EXPECT_THROW(parse_hostfile("node7: slots=2\n", "h"), Error);
}

TEST(LaunchPlan, SlurmUsesTheAllocation) {
  LaunchRequest r = request();
  r.slurm = true;
  LaunchFacts f;
  EXPECT_THROW(plan_launch(r, f), Error);  // not inside an allocation
  f.in_slurm = true;
  f.slurm_job_id = "42";
  f.slurm_ntasks = 16;
  f.slurm_tasks_per_node = "8(x2)";
  f.slurm_nnodes = 2;
  f.gpus = 8;
  const LaunchPlan p = plan_launch(r, f);
  EXPECT_EQ(p.np, 16);
  EXPECT_TRUE(p.slurm);
  // --kill-on-bad-exit: a failed rank ends the step (as the sbatch scripts say).
  EXPECT_EQ(cmd(p), "srun --mpi=pmix --kill-on-bad-exit=1 --ntasks=16 /opt/dprun --epochs 1");
  // Slurm's SIGTERM (scancel, time limit, preemption) reaches the ranks and srun itself.
  EXPECT_TRUE(p.ranks_get_slurm_sigterm);
  r.no_slurm = true;
  EXPECT_MENTIONS(error_of([&] { plan_launch(r, f); }), "--slurm and --no-slurm");
}

TEST(LaunchPlan, InsideAnAllocationSlurmIsTheDefault) {
  LaunchFacts f;
  f.in_slurm = true;
  f.slurm_job_id = "42";
  f.slurm_ntasks = 4;
  f.slurm_nnodes = 2;
  f.cores = 2;
  LaunchRequest r = request();
  LaunchPlan p = plan_launch(r, f);
  EXPECT_TRUE(p.slurm);
  EXPECT_EQ(cmd(p),
            "srun --mpi=pmix --kill-on-bad-exit=1 --ntasks=4 --export=ALL,OPENBLAS_NUM_THREADS=1 "
            "/opt/dprun --epochs 1");
  EXPECT_MENTIONS(p.why, "Slurm allocation 42");
  EXPECT_MENTIONS(p.why, "--no-slurm");
  r.no_slurm = true;  // mpirun on this host
  p = plan_launch(r, f);
  EXPECT_FALSE(p.slurm);
  EXPECT_EQ(p.np, 2);
  // Not the allocation's slots (mpirun read them from Slurm: "not enough slots" in a one-task
  // job or step), nor srun to start its daemons.
  EXPECT_EQ(cmd(p),
            "mpirun --mca ras '^slurm' --mca plm '^slurm' -np 2 --map-by core --bind-to core -x "
            "OPENBLAS_NUM_THREADS=1 /opt/dprun --epochs 1");
  // mpirun and the ranks get Slurm's SIGTERM themselves: the launcher does not pass it on,
  // and mpirun's own SIGTERM waits long enough for their checkpoint.
  EXPECT_TRUE(p.ranks_get_slurm_sigterm);
  EXPECT_EQ(p.env, std::vector<std::string>{"OMPI_MCA_odls_base_sigkill_timeout=20"});
  r.no_slurm = false;  // a hostfile says where to run
  r.hosts = parse_hostfile("a slots=1\n", "h");
  EXPECT_FALSE(plan_launch(r, f).slurm);
  EXPECT_EQ(cmd(plan_launch(r, f)).find("ras"), std::string::npos);
  // Outside Slurm the launcher passes SIGTERM on (once, as SIGUSR1).
  EXPECT_FALSE(plan_launch(request(), LaunchFacts{}).ranks_get_slurm_sigterm);
  EXPECT_TRUE(plan_launch(request(), LaunchFacts{}).env.empty());
}

// `srun -n1 dprun launch`: a nested srun waits forever for the CPUs the step holds.
TEST(LaunchPlan, InsideAnSrunStepSrunIsRefused) {
  LaunchFacts f;
  f.in_slurm = true;
  f.slurm_job_id = "42";
  f.slurm_ntasks = 1;
  f.slurm_step_id = "0";
  f.cores = 2;
  LaunchRequest r = request();
  EXPECT_MENTIONS(error_of([&] { plan_launch(r, f); }),
                  "inside Slurm step 42.0 (under srun), whose CPUs an srun started from here "
                  "would wait for forever: run dprun launch from the batch script or the salloc "
                  "shell (it starts the ranks with srun itself), or add --no-slurm");
  r.slurm = true;
  EXPECT_MENTIONS(error_of([&] { plan_launch(r, f); }), "replace --slurm with --no-slurm");
  r.slurm = false;
  r.no_slurm = true;  // mpirun inside the step, on the step's host
  const LaunchPlan p = plan_launch(r, f);
  EXPECT_FALSE(p.slurm);
  EXPECT_EQ(p.np, 2);
  EXPECT_MENTIONS(cmd(p), "mpirun --mca ras '^slurm' --mca plm '^slurm' -np 2 ");
  // The batch script (no step id) and salloc's interactive step (0xfffffffa, like every special
  // step's id 0xfffffff0 and up) hold no CPUs: srun as usual.
  r.no_slurm = false;
  for (const char* id : {"", "4294967290", "4294967291"}) {
    f.slurm_step_id = id;
    EXPECT_TRUE(plan_launch(r, f).slurm) << id;
  }
}

TEST(LaunchPlan, SlurmWithoutNtasksCountsTasksPerNode) {
  EXPECT_EQ(parse_slurm_tasks_per_node("2(x3),1"), 7);
  EXPECT_EQ(parse_slurm_tasks_per_node("1(x2)"), 2);
  EXPECT_EQ(parse_slurm_tasks_per_node("4"), 4);
  EXPECT_EQ(parse_slurm_tasks_per_node("8,8(x2),4"), 28);
  int fewest = -1;
  EXPECT_EQ(parse_slurm_tasks_per_node("8,8(x2),4", &fewest), 28);
  EXPECT_EQ(fewest, 4);
  // A leading item of no task is the fewest (the fuzzer found 8 taken after it).
  EXPECT_EQ(parse_slurm_tasks_per_node("0,8(x2),4", &fewest), 20);
  EXPECT_EQ(fewest, 0);
  for (const char* bad : {"", "x", "2(3)", "2(x)", "2(x3", "(x3)", "2,", ",2", "2(x3)4", "0"}) {
    EXPECT_MENTIONS(error_of([&] { parse_slurm_tasks_per_node(bad); }), "SLURM_TASKS_PER_NODE")
        << bad;
  }
  // sbatch -N2 without -n: SLURM_NTASKS is not set.
  LaunchRequest r = request();
  r.slurm = true;
  LaunchFacts f;
  f.in_slurm = true;
  f.slurm_tasks_per_node = "2(x3),1";
  f.gpus = 1;  // a node with fewer tasks than GPUs is refused (below)
  const LaunchPlan p = plan_launch(r, f);
  EXPECT_EQ(p.np, 7);
  EXPECT_NE(cmd(p).find("--ntasks=7 "), std::string::npos) << cmd(p);
  f.slurm_tasks_per_node.clear();
  EXPECT_MENTIONS(error_of([&] { plan_launch(r, f); }), "neither SLURM_NTASKS nor");
}

// sbatch -N1 --gpus-per-node=8 without a task count: one task, so srun would start one rank and
// leave 7 GPUs idle, where outside Slurm the node gets a rank per GPU.
TEST(LaunchPlan, SlurmGpuJobWithoutATaskPerGpuIsRefused) {
  LaunchRequest r = request();
  LaunchFacts f;
  f.in_slurm = true;
  f.slurm_job_id = "42";
  f.slurm_tasks_per_node = "1";
  f.slurm_nnodes = 1;
  f.gpus = 8;
  EXPECT_MENTIONS(error_of([&] { plan_launch(r, f); }),
                  "this node has 8 GPU(s) but Slurm allocation 42 gives a node 1 task(s) "
                  "(SLURM_TASKS_PER_NODE=1; the job asked for no task count): srun starts one "
                  "rank per task, so 7 GPU(s) would sit idle; ask for a task per GPU (sbatch "
                  "--ntasks-per-node=8, or --gpus-per-task=1 with -n), or give -np N");
  f.slurm_tasks_per_node = "1(x4)";  // the batch script's node is the first
  EXPECT_THROW(plan_launch(r, f), Error);
  // The batch script's node has a task per GPU, another node does not (sbatch -n 9 -N 2).
  f.slurm_tasks_per_node = "8,1";
  EXPECT_MENTIONS(error_of([&] { plan_launch(r, f); }), "gives a node 1 task(s)");
  f.slurm_tasks_per_node = "8(x4)";  // --ntasks-per-node=8
  EXPECT_EQ(plan_launch(r, f).np, 32);
  f.slurm_tasks_per_node = "1";
  r.np = "1";  // asked for: honoured
  EXPECT_EQ(plan_launch(r, f).np, 1);
  r.np = "auto";
  f.slurm_ntasks = 1;  // the job asked for one task (-n1): what it asked for
  EXPECT_EQ(plan_launch(r, f).np, 1);
  f.slurm_ntasks = 0;
  f.gpus = 0;  // a CPU job: a task per node, as before
  EXPECT_EQ(plan_launch(r, f).np, 1);
}

TEST(LaunchPlan, SlurmRefusesAnMpirunAsItsLauncher) {
  LaunchRequest r = request();
  r.slurm = true;
  r.mpirun = "/opt/ompi/bin/mpirun";
  LaunchFacts f;
  f.in_slurm = true;
  f.slurm_ntasks = 2;
  EXPECT_MENTIONS(error_of([&] { plan_launch(r, f); }),
                  "--mpirun /opt/ompi/bin/mpirun: inside a Slurm allocation dprun launch starts "
                  "the ranks with srun");
  r.mpirun = "mpiexec";
  EXPECT_THROW(plan_launch(r, f), Error);
  r.mpirun = "/opt/slurm/bin/srun";  // --mpirun names the srun
  EXPECT_EQ(plan_launch(r, f).argv[0], "/opt/slurm/bin/srun");
  r.slurm = false;
  r.no_slurm = true;
  r.mpirun = "/opt/ompi/bin/mpirun";
  EXPECT_EQ(plan_launch(r, f).argv[0], "/opt/ompi/bin/mpirun");
}

TEST(LaunchPlan, ShellJoinQuotes) {
  EXPECT_EQ(shell_join({"a", "b c", "it's", ""}), "a 'b c' 'it'\\''s' ''");
}

}  // namespace
