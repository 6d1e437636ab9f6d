#!/usr/bin/env bash
# dprun launch: starts one rank per physical core here (one per SMT core too), prints the
# command, refuses what mpirun would (host:N hostfile lines, ranks beyond max_slots), uses srun
# inside a Slurm allocation, passes the exit code and turns SIGTERM, and a terminal's Ctrl-C,
# into a clean preemption (checkpoint, exit 0).
source "$(dirname "$0")/lib.sh" "$@"
cd "$WORK" || exit 1
export PATH="$(dirname "$MPIEXEC"):$PATH"

# Inside a Slurm allocation dprun launch would use srun: these checks are about mpirun here.
unset SLURM_JOB_ID SLURM_NTASKS SLURM_TASKS_PER_NODE SLURM_JOB_NUM_NODES

# physical_cores: distinct (package, core) among this shell's CPUs, as Open MPI counts slots.
physical_cores() {
  local r c t
  for r in $(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status | tr , ' '); do
    for ((c = ${r%-*}; c <= ${r#*-}; c++)); do
      t=/sys/devices/system/cpu/cpu$c/topology
      if [ -r "$t/core_id" ]; then echo "$(cat "$t/physical_package_id") $(cat "$t/core_id")"; else echo "cpu $c"; fi
    done
  done | sort -u | wc -l
}
cores=$(physical_cores)
timeout 120 "$DPRUN" launch -- --data synthetic:2048 --model mlp --hidden 32 --epochs 1 >ok.out 2>&1 &&
  grep -q "mpirun .*-np $cores .*dprun --data synthetic:2048" ok.out && grep -q "world size $cores" ok.out &&
  pass "one rank per physical core ($cores), the mpirun line printed" || { fail "launch"; cat ok.out; }

# An SMT machine (one core, two hardware threads): Open MPI's slots and --bind-to core count
# the core once, so one rank, not two (mpirun refused two: "not enough slots" / "binding more
# processes than cpus"). hwloc reads the topology from XML, dprun from a sysfs tree alike.
if [ "$(nproc)" -ge 2 ]; then
  mkdir -p smt/devices/system/cpu/cpu0/topology smt/devices/system/cpu/cpu1/topology
  echo 0-1 >smt/devices/system/cpu/online
  for c in 0 1; do
    echo 0 >smt/devices/system/cpu/cpu$c/topology/physical_package_id
    echo 0 >smt/devices/system/cpu/cpu$c/topology/core_id
  done
  cat >smt.xml <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc2.dtd">
<topology version="2.0">
  <object type="Machine" os_index="0" cpuset="0x00000003" complete_cpuset="0x00000003" allowed_cpuset="0x00000003" nodeset="0x00000001" complete_nodeset="0x00000001" allowed_nodeset="0x00000001" gp_index="1">
    <object type="Package" os_index="0" cpuset="0x00000003" complete_cpuset="0x00000003" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="5">
      <object type="NUMANode" os_index="0" cpuset="0x00000003" complete_cpuset="0x00000003" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="6"/>
      <object type="Core" os_index="0" cpuset="0x00000003" complete_cpuset="0x00000003" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="4">
        <object type="PU" os_index="0" cpuset="0x00000001" complete_cpuset="0x00000001" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="2"/>
        <object type="PU" os_index="1" cpuset="0x00000002" complete_cpuset="0x00000002" nodeset="0x00000001" complete_nodeset="0x00000001" gp_index="3"/>
      </object>
    </object>
  </object>
</topology>
XML
  DPRUN_SYSFS_ROOT=$PWD/smt OMPI_MCA_hwloc_base_topo_file=$PWD/smt.xml OMPI_MCA_rmaps_base_oversubscribe=0 \
    timeout 120 "$DPRUN" launch -- --data synthetic:200 --steps 2 >smt.out 2>&1 &&
    grep -q "1 rank(s): 1 core(s) on this host" smt.out && grep -q "world size 1" smt.out &&
    pass "SMT: one rank per core, not per hardware thread" || { fail "SMT launch"; cat smt.out; }
fi

# Hostfiles: "host:N" is not Open MPI hostfile syntax, max_slots is kept (as mpirun would).
printf 'localhost:2\n' >colon.hosts
rc=0
"$DPRUN" launch --hosts colon.hosts --dry-run -- --steps 1 >colon.out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "colon.hosts:1: 'localhost:2': a hostfile names its slots as 'localhost slots=2'" colon.out &&
  pass "a 'host:N' hostfile line is refused, naming the line" || { fail "host:N (exit $rc)"; cat colon.out; }
printf 'localhost max_slots=1\n' >max.hosts
rc=0
"$DPRUN" launch --hosts max.hosts -np 2 --dry-run -- --steps 1 >max.out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "more ranks than the hosts of max.hosts take (max_slots: 1 in all)" max.out &&
  pass "-np above the hosts' max_slots is refused" || { fail "max_slots (exit $rc)"; cat max.out; }

# Inside a Slurm allocation: srun by default, with --kill-on-bad-exit, and a task count from
# SLURM_TASKS_PER_NODE when the job gave none (sbatch -N4 without -n).
SLURM_JOB_ID=77 SLURM_TASKS_PER_NODE='2(x3),1' SLURM_JOB_NUM_NODES=4 \
  "$DPRUN" launch --dry-run -- --steps 1 >slurm.out 2>&1 &&
  grep -q "^srun --mpi=pmix --kill-on-bad-exit=1 --ntasks=7 .*dprun --steps 1" slurm.out &&
  grep -q "Slurm allocation 77 (4 node(s)), through srun (--no-slurm" slurm.out &&
  pass "inside a Slurm allocation: srun, its tasks per node" || { fail "Slurm default"; cat slurm.out; }
SLURM_JOB_ID=77 SLURM_NTASKS=3 "$DPRUN" launch --no-slurm --dry-run -- --steps 1 >noslurm.out 2>&1 &&
  grep -q "^OMPI_MCA_odls_base_sigkill_timeout=[0-9]* mpirun .*--mca ras '^slurm' --mca plm '^slurm' -np $cores " noslurm.out &&
  pass "--no-slurm: mpirun on this host, not the allocation's slots" ||
  { fail "--no-slurm"; cat noslurm.out; }
# The user's own value of such a setting is shown as a shell reads it back: NAME='a b', a
# setting, not 'NAME=a b', a command name.
SLURM_JOB_ID=77 OMPI_MCA_odls_base_sigkill_timeout='20 ' "$DPRUN" launch --no-slurm --dry-run -- --steps 1 \
  >blank.out 2>/dev/null &&
  [ "$(bash -c "$(sed 's/ mpirun .*/ printenv OMPI_MCA_odls_base_sigkill_timeout/' blank.out)")" = "20 " ] &&
  pass "--dry-run shows a setting with a blank as a setting" || { fail "setting with a blank"; cat blank.out; }
# srun -n1 dprun launch: a nested srun would wait forever for the step's CPUs.
rc=0
SLURM_JOB_ID=77 SLURM_STEP_ID=0 SLURM_NTASKS=1 "$DPRUN" launch --dry-run -- --steps 1 >step.out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -qF "inside Slurm step 77.0 (under srun)" step.out && grep -qF -- "add --no-slurm" step.out &&
  pass "inside an srun step: srun is refused, naming --no-slurm" || { fail "srun step (exit $rc)"; cat step.out; }
rc=0
SLURM_JOB_ID=77 SLURM_NTASKS=3 "$DPRUN" launch --slurm --mpirun /usr/bin/mpirun --dry-run -- x >sm.out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -qF -- "--mpirun /usr/bin/mpirun: inside a Slurm allocation dprun launch starts the ranks with srun" sm.out &&
  pass "--slurm with an mpirun as --mpirun is refused" || { fail "--slurm --mpirun (exit $rc)"; cat sm.out; }
rc=0
timeout 120 "$DPRUN" launch -np 2 -- --data synthetic:2048 --bogus >bad.out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "unrecognised option '--bogus'" bad.out && pass "the job's exit code comes back ($rc)" ||
  { fail "exit code $rc"; cat bad.out; }
rc=0
"$DPRUN" launch --frobnicate >u.out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -q "unknown option '--frobnicate'" u.out && pass "a bad launch option is named" || fail "bad launch option"
rc=0
"$DPRUN" launch -np 99999999999 --dry-run -- --steps 1 >big.out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -qF "dprun launch -np: expected a whole number from 1 to 9999999, got '99999999999'" big.out &&
  pass "-np above the limit is refused, naming the limit" || { fail "-np 99999999999 (exit $rc)"; cat big.out; }

# --dry-run: the why goes to stderr, stdout is the command alone, one line that a shell can
# capture and run. torchrun's --nproc-per-node is pointed to -np.
cmd=$("$DPRUN" launch -np 2 --dry-run -- --steps 1 2>dry.err) && [ "$(wc -l <<<"$cmd")" = 1 ] &&
  grep -q "mpirun .*-np 2 .*dprun --steps 1$" <<<"$cmd" && bash -n <<<"$cmd" &&
  grep -q "^dprun launch: .*rank(s)" dry.err && pass "--dry-run prints the command alone on stdout" ||
  { fail "--dry-run stdout"; echo "$cmd"; cat dry.err; }
rc=0
"$DPRUN" launch --nproc-per-node 2 -- --steps 1 >np.out 2>&1 || rc=$?
[ "$rc" = 2 ] && grep -qF "unknown option '--nproc-per-node' (the ranks in all are -np N;" np.out &&
  pass "torchrun's --nproc-per-node: refused, pointing to -np" || { fail "--nproc-per-node (exit $rc)"; cat np.out; }
"$DPRUN" launch --help >help.out 2>&1 && grep -q "^  --dry-run " help.out && grep -q "^  --mpirun-arg ARG " help.out &&
  grep -q "SIGINT/SIGTERM/SIGUSR1/SIGHUP" help.out && grep -q "2 when the" help.out &&
  pass "--help explains every option, the signals and the exit codes" || { fail "launch --help"; cat help.out; }

# start_job DIR [setsid]: a launched 2-rank job that checkpoints into DIR and writes DIR.out;
# sets `job` (the background pid) and `launcher` (the dprun launch process) once the ranks
# train. --epochs 100000: it runs until a signal stops it (timeout 120 is the only other end),
# so a signal that comes late on a loaded machine still finds it training.
start_job() {
  local dir=$1 prefix=()
  [ "${2:-}" = setsid ] && prefix=(setsid)
  timeout 120 "${prefix[@]}" "$DPRUN" launch -np 2 -- --data synthetic:8192 --model mlp \
    --hidden 256 --epochs 100000 --log-interval 100000 --checkpoint-dir "$dir" >"$dir.out" 2>&1 &
  job=$!
  for _ in $(seq 150); do grep -q "^reducer" "$dir.out" 2>/dev/null && break; sleep 0.2; done
  sleep 0.5
  launcher=$(pgrep -f "^$DPRUN launch -np 2 -- .*--checkpoint-dir $dir\$" | head -1)
}

start_job ck
# The launcher itself (timeout would signal the whole process group).
kill -TERM "$launcher"
rc=0
wait "$job" || rc=$?
# Rank 0 names SIGUSR1, or "a signal on another rank" when the ranks agreed to stop on another
# rank's copy before its own arrived; exit 0 says mpirun saw SIGUSR1 (SIGTERM would fail it).
[ "$rc" = 0 ] && grep -q -E "preempted by (SIGUSR1|a signal on another rank)" ck.out &&
  ls ck/step-*.ckpt >/dev/null 2>&1 &&
  pass "SIGTERM to the launcher: the ranks checkpoint and the job exits 0" || { fail "signal (exit $rc)"; grep -E "preempted|error" ck.out; tail -5 ck.out; }

# Ctrl-C at a terminal sends SIGINT to the whole foreground process group. setsid starts the
# launcher at the head of a group of its own, as a shell starts a job; the group gets the
# SIGINT. Only the launcher may act on it (SIGUSR1 to the job: checkpoint, exit 0): mpirun in
# that group would get it too and abort the ranks with SIGTERM (exit 1).
start_job ckint setsid
pgid=$(ps -o pgid= -p "$launcher" | tr -d ' ')
rc=0
if [ -n "$pgid" ] && [ "$pgid" = "$launcher" ] && [ "$pgid" != "$(ps -o pgid= -p $$ | tr -d ' ')" ]; then
  kill -INT -- "-$pgid"
  wait "$job" || rc=$?
  [ "$rc" = 0 ] && grep -q -E "preempted by (SIGUSR1|a signal on another rank)" ckint.out &&
    ls ckint/step-*.ckpt >/dev/null 2>&1 &&
    pass "SIGINT to the launcher's process group (Ctrl-C): the ranks checkpoint and the job exits 0" ||
    { fail "Ctrl-C (exit $rc)"; grep -E "preempted|error|mpirun" ckint.out; tail -5 ckint.out; }
else
  fail "the launcher ($launcher) does not lead its own process group ($pgid)"
  kill -TERM "$job" 2>/dev/null
  wait "$job"
fi

# The launcher killed with -9 forwards nothing: the kernel's parent-death signal (SIGUSR1) to
# mpirun stands in for it, and the job checkpoints and stops instead of running unattended.
start_job ckkill setsid
mpirun_pid=$(pgrep -P "$launcher" | head -1)
ranks=$(pgrep -P "$mpirun_pid" | tr '\n' ' ')
[ -n "$launcher" ] && kill -KILL "$launcher"
{ wait "$job"; } 2>/dev/null  # no "Killed" notice from bash
alive() { for p in $ranks; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
for _ in $(seq 100); do alive || break; sleep 0.2; done
[ -n "$ranks" ] && ! alive && grep -q -E "preempted by (SIGUSR1|a signal on another rank)" ckkill.out &&
  ls ckkill/step-*.ckpt >/dev/null 2>&1 && pass "the launcher killed with -9: the job checkpoints and stops" ||
  { fail "launcher kill -9 (ranks: $ranks)"; tail -5 ckkill.out; kill -KILL $mpirun_pid $ranks 2>/dev/null; }

# The dry run's stdout is its result: a failed write of it is an error, not exit 0 with nothing.
rc=0
"$DPRUN" launch -np 1 --dry-run -- --steps 1 >/dev/full 2>full.err || rc=$?
[ "$rc" = 1 ] && grep -q "dprun launch --dry-run: writing the command failed: No space left on device" full.err &&
  pass "--dry-run onto a full disk: exit 1, named" || { fail "--dry-run >/dev/full (exit $rc)"; cat full.err; }

# --config /dev/stdin: the launcher keeps a piped stdin for mpirun to give rank 0 (it replaced
# it with /dev/null, and the run trained the defaults: 784-256-128-10 on Fashion-MNIST). A rank
# that gets no input says so.
printf 'data = synthetic:512\nhidden = 16\nsteps = 2\n' >small.cfg
rc=0
timeout 120 "$DPRUN" launch -np 1 -- --config /dev/stdin <small.cfg >stdin1.out 2>&1 || rc=$?
[ "$rc" = 0 ] && grep -q "mlp 784-16-10" stdin1.out && pass "launch -np 1, --config /dev/stdin: the piped options" ||
  { fail "launch --config /dev/stdin (exit $rc)"; cat stdin1.out; }
rc=0
timeout 120 "$DPRUN" launch -np 2 -- --config /dev/stdin <small.cfg >stdin2.out 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "rank 1\] --config /dev/stdin: read nothing from it" stdin2.out &&
  ! grep -q "784-256-128-10" stdin2.out && pass "launch -np 2, --config /dev/stdin: rank 1 read nothing, exit $rc" ||
  { fail "launch -np 2 --config /dev/stdin (exit $rc)"; cat stdin2.out; }
# Without an option that reads stdin, the job gets none: a script's `while read` loop over a
# list keeps its lines (mpirun read them away, and the loop ran once).
printf 'first\nsecond\n' >list.txt
{
  read -r a
  timeout 120 "$DPRUN" launch -np 1 -- --data synthetic:512 --hidden 8 --steps 1 -q >loop.out 2>&1
  read -r b
  echo "$a $b" >loop.got
} <list.txt
[ "$(cat loop.got)" = "first second" ] && pass "a script's stdin is not read by the job" ||
  { fail "the job read the script's stdin: got '$(cat loop.got)'"; cat loop.out; }
finish
