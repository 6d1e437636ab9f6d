#!/usr/bin/env bash
# dprun under Slurm, end to end, on a one-node cluster started here (local-cluster.sh):
#   1. a plain `srun --mpi=pmix -n 2 dprun` gives the same parameters as `mpirun -np 2 dprun`;
#   2. launcher/slurm/dprun-one-node.sbatch (srun), preempted with SIGUSR1 to the batch shell
#      (what #SBATCH --signal=B:USR1@60 does before the time limit): the ranks checkpoint and
#      exit 0, the job requeues itself, resumes, and ends with parameters byte-identical to an
#      uninterrupted run's;
#   3. the same with launcher/slurm/dprun-multi-node.sbatch and DPRUN_LAUNCHER=mpirun;
#   4. scancel (SIGTERM to everything): the ranks checkpoint, the job ends, not requeued; a
#      new job given the same checkpoint directory resumes it, again to identical parameters;
#   5. scancel under mpirun: the ranks still write their checkpoint before mpirun kills them.
#   6. scancel of `dprun launch` in a batch script (srun, then --no-slurm: mpirun): the launcher
#      gets Slurm's SIGTERM too and must not pass it on (the ranks' second signal: no checkpoint).
# A rank is made to stall for a few seconds at a known step (DPRUN_FAULT_STALL), so that the
# signal lands mid-training whatever the machine's speed.
#
#   tests/slurm/test_slurm.sh PATH/TO/dprun [PATH/TO/mpirun]
# DPRUN_SLURM_KEEP=1 keeps the job outputs and checkpoints. Exit 77 (CTest: skipped) only where Slurm or munge is not installed, or not as root.
set -euo pipefail

DPRUN=$(realpath "${1:?usage: test_slurm.sh PATH/TO/dprun [PATH/TO/mpirun]}")
MPIEXEC=${2:-mpirun}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CLUSTER=$HERE/local-cluster.sh
T0=$SECONDS

skip() {
  echo "SKIP: $*"
  exit 77
}
for tool in munged slurmctld slurmd sbatch srun squeue scancel scontrol sinfo; do
  command -v "$tool" >/dev/null 2>&1 || skip "$tool not found: Slurm tests need slurm-wlm and munge (bash docker/install-deps.sh)"
done
[ "$(id -u)" = 0 ] || skip "the local Slurm cluster needs root (slurmd starts jobs as their user)"

# The CPU path, one OpenBLAS thread per rank, root allowed to run Open MPI (as the e2e tests).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export CUDA_VISIBLE_DEVICES=
# One directory per build for this test's cluster: a run after a crashed one cleans it up, and
# two builds testing at once (two worktrees) each have their own cluster (and ports).
export DPRUN_SLURM_DIR=/tmp/dprun-slurm-test.$(id -u).$(cksum <<<"$DPRUN" | cut -d' ' -f1)
export SLURM_CONF=$DPRUN_SLURM_DIR/slurm.conf
WORK=$(mktemp -d /tmp/dprun-slurm-work.XXXXXX)

FAILED=0
dump_state() {
  echo "===== diagnostics ====="
  timeout 10 squeue 2>&1 || true
  local f
  for f in "$WORK"/*.out; do
    [ -e "$f" ] || continue
    echo "----- $f -----"
    cat "$f"
  done
  bash "$CLUSTER" logs 2>&1 || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then dump_state; fi
  bash "$CLUSTER" stop || true
  if [ -n "${DPRUN_SLURM_KEEP:-}" ]; then echo "test_slurm: kept $WORK"; else rm -rf "$WORK"; fi
  echo "test_slurm: $((SECONDS - T0)) s in all"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "test_slurm: interrupted"; exit 130' INT
trap 'echo "test_slurm: terminated"; exit 143' TERM

fail() {
  echo "FAIL: $*"
  exit 1
}
pass() { echo "ok: $* ($((SECONDS - T0)) s)"; }

job_state() { timeout 10 scontrol show job "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }
job_field() { timeout 10 scontrol show job "$1" 2>/dev/null | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2; }

# wait_for_line JOB FILE REGEX SECONDS: until FILE has a line matching REGEX; fails when the
# deadline passes or the job ends without it.
wait_for_line() {
  local job=$1 file=$2 regex=$3 deadline=$((SECONDS + $4)) state
  while [ $SECONDS -lt $deadline ]; do
    grep -qE "$regex" "$file" 2>/dev/null && return 0
    state=$(job_state "$job")
    case "$state" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | "")
        sleep 0.5
        grep -qE "$regex" "$file" 2>/dev/null && return 0
        fail "job $job ended ($state) without printing /$regex/ to $file" ;;
    esac
    sleep 0.2
  done
  fail "no /$regex/ in $file within $4 s (job $job: $(job_state "$job"))"
}

# wait_done JOB SECONDS: until the job has finished (not pending, running or requeued); its
# final state in DONE_STATE.
DONE_STATE=
wait_done() {
  local job=$1 deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    DONE_STATE=$(job_state "$job")
    case "$DONE_STATE" in
      PENDING | RUNNING | REQUEUED | CONFIGURING | COMPLETING | SUSPENDED | REQUEUE_FED | REQUEUE_HOLD | RESIZING | SIGNALING | STAGE_OUT) ;;
      "") fail "job $job is unknown to Slurm" ;;
      *) return 0 ;;
    esac
    sleep 0.5
  done
  fail "job $job not done within $2 s (state $(job_state "$job"))"
}

bash "$CLUSTER" start
CPUS=$(sinfo -h -o %c | head -1)
[ "${CPUS:-0}" -ge 2 ] || fail "the local node has ${CPUS:-no} CPUs: 2 ranks need 2"
pass "cluster up ($CPUS CPUs)"

# A short training: 2 ranks x batch 16 = 64 steps per epoch, 3 epochs, a small mlp.
TRAIN=(--model mlp --hidden 32,16 --data synthetic:2048 --batch-size 16 --epochs 3 --seed 7
  --lr 0.05 --momentum 0.9)
STALL_STEP=40
STALL_S=5

timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$DPRUN" "${TRAIN[@]}" \
  --dump-params "$WORK/reference.bin" >"$WORK/reference.log" 2>&1 ||
  { cat "$WORK/reference.log"; fail "the reference run (mpirun -np 2) failed"; }
pass "reference: mpirun -np 2, uninterrupted"

# 1. srun --mpi=pmix starts the ranks: same parameters as mpirun's.
timeout 120 srun --immediate=60 --mpi=pmix -n 2 "$DPRUN" "${TRAIN[@]}" --dump-params "$WORK/srun.bin" \
  >"$WORK/srun-plain.out" 2>&1 || fail "srun --mpi=pmix -n 2 dprun failed"
grep -q "world size 2" "$WORK/srun-plain.out" || fail "srun --mpi=pmix -n 2 did not make one job of 2 ranks"
cmp "$WORK/reference.bin" "$WORK/srun.bin" || fail "srun --mpi=pmix: parameters differ from mpirun's"
pass "srun --mpi=pmix -n 2 dprun: parameters identical to mpirun's"

# (the help text in a variable: grep -q closing the pipe early would fail it under pipefail)
HELP=$("$DPRUN" --help 2>&1 || true)
if ! grep -q -- '--checkpoint-dir' <<<"$HELP"; then
  skip "dprun has no --checkpoint-dir yet: the preemption and resume part of this test cannot run"
fi

# preempt_and_resume NAME SCRIPT [ENV=VALUE...]: submit SCRIPT, stop it with SIGUSR1 to the
# batch shell in the middle of training, check the checkpoint and the requeue, wait for the
# end, compare with the reference.
preempt_and_resume() {
  local name=$1 script=$2 job out ckpt line saved
  shift 2
  out=$WORK/$name.out
  ckpt=$WORK/ckpt-$name
  job=$(env "$@" DPRUN="$DPRUN" DPRUN_CKPT_DIR="$ckpt" DPRUN_CKPT_EVERY=16 \
    DPRUN_FAULT_STALL="rank=0,step=$STALL_STEP,seconds=$STALL_S" \
    sbatch --parsable --output="$out" --nodes=1 --ntasks-per-node=2 "$script" \
    "${TRAIN[@]}" --dump-params "$WORK/$name.bin") || fail "$name: sbatch failed"
  job=${job%%;*}
  wait_for_line "$job" "$out" "DPRUN_FAULT_STALL: stalling" 60
  scancel --batch --signal=USR1 "$job" || fail "$name: scancel --batch --signal=USR1 $job failed"
  wait_for_line "$job" "$out" "dprun: preempted by SIGUSR1 .*after step [0-9]+: saved checkpoint" 60
  line=$(grep -E "dprun: preempted by SIGUSR1" "$out" | head -1)
  saved=$(sed -E 's/.*saved checkpoint ([^;]+);.*/\1/' <<<"$line")
  [ -f "$saved" ] || fail "$name: the checkpoint '$saved' ($line) is not there"
  # The script requeues only after srun/mpirun exited 0: this line says the step ended cleanly.
  wait_for_line "$job" "$out" "requeueing job $job" 30
  pass "$name: SIGUSR1 to the batch shell -> checkpoint $(basename "$saved"), step exited 0, job requeued"
  wait_done "$job" 120
  [ "$DONE_STATE" = COMPLETED ] || fail "$name: job $job ended $DONE_STATE, not COMPLETED"
  [ "$(job_field "$job" Restarts)" = 1 ] || fail "$name: job $job restarted $(job_field "$job" Restarts) times, not once"
  [ "$(job_field "$job" ExitCode)" = 0:0 ] || fail "$name: job $job exit code $(job_field "$job" ExitCode)"
  grep -q "run 2," "$out" || fail "$name: no second run in $out"
  cmp "$WORK/reference.bin" "$WORK/$name.bin" ||
    fail "$name: parameters after preemption and resume differ from the uninterrupted run's"
  pass "$name: requeued run resumed and finished, parameters identical to the uninterrupted run's"
}

# 2. srun --mpi=pmix, one node.
preempt_and_resume one-node "$REPO/launcher/slurm/dprun-one-node.sbatch"
# 3. mpirun inside the allocation.
preempt_and_resume multi-node-mpirun "$REPO/launcher/slurm/dprun-multi-node.sbatch" DPRUN_LAUNCHER=mpirun

# 4. scancel: SIGTERM to the batch shell and the ranks; they checkpoint, the job is cancelled
# (not requeued); a new job with the same checkpoint directory resumes.
out=$WORK/cancelled.out
ckpt=$WORK/ckpt-cancelled
job=$(DPRUN="$DPRUN" DPRUN_CKPT_DIR="$ckpt" DPRUN_CKPT_EVERY=16 \
  DPRUN_FAULT_STALL="rank=0,step=$STALL_STEP,seconds=$STALL_S" \
  sbatch --parsable --output="$out" "$REPO/launcher/slurm/dprun-one-node.sbatch" \
  "${TRAIN[@]}" --dump-params "$WORK/cancelled.bin") || fail "sbatch failed"
wait_for_line "$job" "$out" "DPRUN_FAULT_STALL: stalling" 60
scancel "$job" || fail "scancel $job failed"
wait_done "$job" 60
[ "$DONE_STATE" = CANCELLED ] || fail "job $job ended $DONE_STATE after scancel, not CANCELLED"
grep -qE "dprun: preempted by SIGTERM .*after step [0-9]+: saved checkpoint" "$out" ||
  fail "scancel: no 'preempted by SIGTERM ... saved checkpoint' line in $out"
[ ! -e "$WORK/cancelled.bin" ] || fail "scancel: the cancelled job ran to the end"
[ "$(job_field "$job" Restarts)" = 0 ] || fail "scancel: job $job was requeued"
pass "scancel: SIGTERM -> checkpoint, job cancelled, not requeued"
out=$WORK/resubmitted.out
job=$(DPRUN="$DPRUN" DPRUN_CKPT_DIR="$ckpt" DPRUN_CKPT_EVERY=16 \
  sbatch --parsable --output="$out" "$REPO/launcher/slurm/dprun-one-node.sbatch" \
  "${TRAIN[@]}" --dump-params "$WORK/cancelled.bin") || fail "sbatch failed"
wait_done "$job" 120
[ "$DONE_STATE" = COMPLETED ] || fail "resubmitted job $job ended $DONE_STATE"
cmp "$WORK/reference.bin" "$WORK/cancelled.bin" ||
  fail "a new job resuming the cancelled one's checkpoint: parameters differ from the uninterrupted run's"
pass "a new job resumed the cancelled job's checkpoint: parameters identical"

# 5. scancel under mpirun: Slurm's SIGTERM reaches the ranks directly, and mpirun's own SIGTERM
# and SIGKILL follow odls_base_sigkill_timeout seconds apart (1 by default: no time for a
# checkpoint; the script allows 20).
out=$WORK/cancelled-mpirun.out
ckpt=$WORK/ckpt-cancelled-mpirun
job=$(DPRUN_LAUNCHER=mpirun DPRUN="$DPRUN" DPRUN_CKPT_DIR="$ckpt" DPRUN_CKPT_EVERY=16 \
  DPRUN_FAULT_STALL="rank=0,step=$STALL_STEP,seconds=$STALL_S" \
  sbatch --parsable --output="$out" --nodes=1 --ntasks-per-node=2 \
  "$REPO/launcher/slurm/dprun-multi-node.sbatch" "${TRAIN[@]}") || fail "sbatch failed"
wait_for_line "$job" "$out" "DPRUN_FAULT_STALL: stalling" 60
scancel "$job" || fail "scancel $job failed"
wait_done "$job" 60
[ "$DONE_STATE" = CANCELLED ] || fail "job $job (mpirun) ended $DONE_STATE after scancel, not CANCELLED"
[ -f "$ckpt/step-$(printf %08d "$STALL_STEP").ckpt" ] ||
  fail "scancel under mpirun: no checkpoint of step $STALL_STEP in $ckpt ($(ls "$ckpt"))"
pass "scancel under mpirun: SIGTERM -> checkpoint of step $STALL_STEP before mpirun's SIGKILL"

# 6. `dprun launch` run by the batch script, as a user would (no traps), then scancel: Slurm's
# SIGTERM reaches the ranks, srun or mpirun, and the launcher, which must not pass it on (the
# ranks' second signal: they would exit at once, without a checkpoint).
# launch_cancelled NAME PREFIX [LAUNCH OPTION...]: PREFIX goes before the launcher's command.
launch_cancelled() {
  local name=$1 prefix=$2 out ckpt  # and job, for the caller
  shift 2
  out=$WORK/$name.out
  ckpt=$WORK/ckpt-$name
  job=$(DPRUN_FAULT_STALL="rank=0,step=$STALL_STEP,seconds=$STALL_S" \
    sbatch --parsable --output="$out" --nodes=1 --ntasks-per-node=2 --wrap \
    "$prefix $(printf '%q ' "$DPRUN" launch "$@" -- "${TRAIN[@]}" --checkpoint-dir "$ckpt")") ||
    fail "$name: sbatch failed"
  wait_for_line "$job" "$out" "DPRUN_FAULT_STALL: stalling" 60
  scancel "$job" || fail "$name: scancel $job failed"
  # Not until the job ends: mpirun holds it until KillWait. Rank 0 stalls STALL_S seconds.
  local file deadline=$((SECONDS + STALL_S + 20))
  file=$ckpt/step-$(printf %08d "$STALL_STEP").ckpt
  while [ ! -f "$file" ] && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  [ -f "$file" ] || fail "$name: scancel: no checkpoint of step $STALL_STEP in $ckpt ($(ls "$ckpt"))"
  grep -q "SIGTERM from Slurm: not passed on" "$out" ||
    fail "$name: the launcher did not say that it left Slurm's SIGTERM alone"
}
launch_cancelled launch-srun ""
wait_done "$job" 30
grep -qE "dprun: preempted by SIGTERM .*after step $STALL_STEP: saved checkpoint" "$WORK/launch-srun.out" ||
  fail "launch-srun: scancel: no 'preempted by SIGTERM ... saved checkpoint' line"
pass "dprun launch, scancel: the launcher leaves SIGTERM to Slurm, the ranks checkpoint step $STALL_STEP"
# mpirun's ranks belong to the batch step, which Slurm ends at once when the batch shell dies
# of the SIGTERM: the shell execs the launcher. mpirun, aborting, no longer passes on the
# ranks' output: the checkpoint file says it.
launch_cancelled launch-no-slurm exec --no-slurm
pass "dprun launch --no-slurm (exec), scancel: the ranks checkpoint step $STALL_STEP"

# 7. A SIGTERM that is not Slurm's (`timeout`, `kill` in the batch script) reaches only the
# launcher: it passes it on (as SIGUSR1), and the ranks checkpoint. It was dropped as Slurm's.
out=$WORK/launch-kill.out
ckpt=$WORK/ckpt-launch-kill
job=$(DPRUN_FAULT_STALL="rank=0,step=$STALL_STEP,seconds=$STALL_S" \
  sbatch --parsable --output="$out" --nodes=1 --ntasks-per-node=2 --wrap \
  "$(printf '%q ' "$DPRUN" launch -- "${TRAIN[@]}" --checkpoint-dir "$ckpt") & launcher=\$!
   until grep -q 'DPRUN_FAULT_STALL: stalling' $(printf '%q' "$out"); do sleep 0.2; done
   kill -TERM \$launcher; wait \$launcher; echo \"launcher exit \$?\"") || fail "launch-kill: sbatch failed"
wait_done "$job" $((STALL_S + 60))
[ -f "$ckpt/step-$(printf %08d "$STALL_STEP").ckpt" ] ||
  fail "launch-kill: kill -TERM of the launcher: no checkpoint of step $STALL_STEP in $ckpt ($(ls "$ckpt"))"
grep -q "launcher exit 0" "$out" && ! grep -q "SIGTERM from Slurm" "$out" ||
  fail "launch-kill: the launcher took the batch script's SIGTERM for Slurm's: $(tail -5 "$out")"
pass "dprun launch in a batch job, kill -TERM from the script: passed on, the ranks checkpoint step $STALL_STEP"

echo "all checks passed"
