#!/usr/bin/env bash
# No silent hangs: when one rank stalls, the others report the collective that did not
# complete (naming the step and the bucket) after --timeout, and the whole job ends. Which
# clock fires first is a race: the Reducer's wait ("did not complete") or, on one node, the
# shared-memory all-reduce's own barrier ("did not arrive"); both name step, bucket, timeout
# and the late rank.
# Either way rank 0 dumps its flight recorder: its error names the last collective it
# completed, and the dump marks the stuck one as not completed.
source "$(dirname "$0")/lib.sh" "$@"

FR="dprun: flight recorder \[rank 0\]:"

# check_recorder NAME STUCK_STATES: the flight-recorder checks on $WORK/err.
check_recorder() {
  local err="$WORK/err" n
  n=$(grep -oE "dprun: error: \[rank 0\] step 3: bucket 0.*; rank 0: last completed #[0-9]+ " \
    "$err" | grep -oE "#[0-9]+ $" | tr -dc 0-9)
  if [ -n "$n" ]; then
    pass "$1: rank 0's error names its last completed collective (#$n)"
  else
    fail "$1: no 'last completed' in rank 0's error"; cat "$err"; return
  fi
  grep -qE "$FR last [0-9]+ of [0-9]+ collectives, oldest first" "$err" &&
    grep -qE "$FR #$n completed " "$err" &&
    pass "$1: rank 0's stderr holds its flight-recorder dump" ||
    { fail "$1: no flight-recorder dump with #$n completed"; cat "$err"; }
  grep -qE "$FR #$((n + 1)) ($2) allreduce.*'bucket 0'" "$err" &&
    pass "$1: the dump marks the stuck collective #$((n + 1)) as $2" ||
    { fail "$1: the stuck collective #$((n + 1)) is not marked $2"; cat "$err"; }
}

# timed CMD...: CMD with its stdout in $WORK/out and stderr in $WORK/err; sets rc and elapsed
# (seconds). Variables set in front of it reach CMD (bash exports them for a function call).
timed() {
  local start
  start=$(date +%s)
  rc=0
  "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  elapsed=$(( $(date +%s) - start ))
}

# ended_after_timeout WHAT BOUND MESSAGE: the last `timed` run failed by itself (not killed by
# the test's own `timeout`, 124) within BOUND seconds, and its stderr holds MESSAGE.
ended_after_timeout() {
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$elapsed" -lt "$2" ] && grep -q "$3" "$WORK/err"; then
    pass "$1 (rc $rc, ${elapsed}s)"
  else
    fail "$1: rc $rc after ${elapsed}s"; cat "$WORK/err"
  fi
}

DPRUN_FAULT_STALL="rank=1,step=3,seconds=100" timed mpi 2 --data synthetic:2000 --hidden 16 \
  --steps 10 --batch-size 20 --timeout 3 --log-json "$WORK/hang.jsonl"
# The log keeps the steps done before the stall: the job is aborted, no destructor runs.
[ "$(grep -c '"type":"step"' "$WORK/hang.jsonl" 2>/dev/null)" = 2 ] &&
  pass "--log-json holds steps 1 and 2, done before the stall" ||
  { fail "--log-json lost the steps before the stall"; cat "$WORK/hang.jsonl"; }
if [ "$rc" -eq 0 ]; then fail "a stalled rank went unnoticed (exit 0)"; fi
if [ "$rc" -eq 124 ]; then fail "the job hung until the test's own time limit"; fi
[ "$elapsed" -lt 60 ] && pass "job ended ${elapsed}s after start" || fail "took ${elapsed}s"
if grep -q "dprun: error: \[rank 0\] step 3: bucket 0" "$WORK/err" && grep -qE "did not (complete|arrive) within 3 s" "$WORK/err"; then
  pass "rank 0 names the step, the bucket and the timeout"
else
  fail "message lacks step/bucket/timeout"; cat "$WORK/err"
fi
# The log's writer (rank 0) stalls and is killed by rank 1's abort: the lines it had written
# reached the file meanwhile (at most a second late), not at the step that never comes.
rc=0
DPRUN_FAULT_STALL="rank=0,step=3,seconds=100" mpi 2 --data synthetic:2000 --hidden 16 --steps 10 \
  --batch-size 20 --timeout 3 --log-json "$WORK/killed.jsonl" >"$WORK/out2" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && [ "$(grep -c '"type":"step"' "$WORK/killed.jsonl" 2>/dev/null)" = 2 ] &&
  pass "--log-json of a rank killed while stalled holds its steps 1 and 2" ||
  { fail "--log-json of a killed rank lost its steps (rc $rc)"; cat "$WORK/killed.jsonl"; }
# The shared-memory barrier's timeout fails the Work before the Reducer's wait gives up.
check_recorder "shared memory" "running|queued|failed"
# The stuck rank is late, not waiting: it reports nothing. Whichever deadline fires first,
# rank 0 names it: the barrier's own message, or the recorder's note of whom its
# communication thread waits (or, its barrier having timed out, gave up waiting) for.
grep -qE "dprun: error: \[rank 0\].*((waits|gave up waiting) in shared memory for rank 1 to arrive|rank 1 \([^)]*\) did not arrive)" "$WORK/err" &&
  pass "shared memory: rank 0 names rank 1, which never arrived" ||
  { fail "shared memory: nothing names the stuck rank 1"; cat "$WORK/err"; }

# Through MPI only the Reducer's deadline fires: the stuck all-reduce is still running.
rc=0
DPRUN_FAULT_STALL="rank=1,step=3,seconds=100" mpi 2 --data synthetic:2000 --hidden 16 --steps 10 \
  --batch-size 20 --timeout 3 --no-shm >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && pass "--no-shm: the job failed in time (rc $rc)" ||
  fail "--no-shm: rc $rc"
check_recorder "--no-shm" "running|queued"
# The stuck rank is late, not waiting: it reports nothing. The rank whose message it owes
# names it (rank 0's communication thread blocks on rank 1's part of the desync check).
grep -q "rank 0: .*its communication thread waits for rank 1's message" "$WORK/err" &&
  pass "--no-shm: rank 0 names rank 1, whose message never came" ||
  fail "--no-shm: nothing names the stuck rank 1"

# A rank stuck while loading its data (before any collective of training): the others do not
# wait forever in the start-up agreement; the job ends after --timeout.
DPRUN_FAULT_STALL="rank=1,step=0,seconds=100" timed mpi 2 --data synthetic:2000 --hidden 16 \
  --steps 10 --timeout 3
ended_after_timeout "a rank stuck at start-up ends the job after --timeout" 60 \
  "dprun: error: \[rank 0\] not every rank finished its configuration or input check within 3 s"
# Rank 0 collects every rank's report: it names the one it never heard from.
grep -q "dprun: error: \[rank 0\] not every rank finished .*: no report from rank 1 " "$WORK/err" &&
  pass "start-up stall: rank 0 names rank 1, which never reported" ||
  { fail "start-up stall: the silent rank 1 is not named"; cat "$WORK/err"; }
# mpirun's SIGTERM reaches the stalled rank 1, which has no --checkpoint-dir: no promise of one.
! grep -q "with a checkpoint" "$WORK/err" &&
  pass "start-up stall: no checkpoint promised by a run without --checkpoint-dir" ||
  { fail "start-up stall: a checkpoint is promised"; cat "$WORK/err"; }

# stalled PHASE MESSAGE: rank 1 stalls just before PHASE (DPRUN_FAULT_STALL's phase=); rank 0,
# waiting there for it outside any collective, ends after --timeout naming the phase.
stalled() {
  DPRUN_FAULT_STALL="rank=1,phase=$1,seconds=100" timed mpi 2 --data synthetic:200 --hidden 8 \
    --steps 2 --timeout 3
  # 3 s of --timeout and 5 s for the phase's own work, plus mpirun's start and tear-down on a
  # loaded 2-core machine.
  ended_after_timeout "$1: a stalled rank ends the job after --timeout, naming the phase" 40 \
    "dprun: error: \[rank 0\] $2 did not complete within 8 s (--timeout 3 s plus 5 s for the phase's own work)"
}
stalled process-group "building the process group"
stalled finalize "MPI finalisation"
# Training was over: mpirun's SIGTERM to the stalled rank announces no step to stop after.
! grep -q "stopping after the current step" "$WORK/err" &&
  pass "finalize: no preemption announced after training" ||
  { fail "finalize: a preemption announced after training"; cat "$WORK/err"; }

# A rank stuck reading its --config (a FIFO nobody writes: a hung file system) does not hold
# the others in a collective: rank 0 names it after --timeout.
mkfifo "$WORK/cfg.fifo"
ARGS=(--data synthetic:200 --hidden 8 --steps 2 --timeout 3)
timed timeout 60 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 1 "$DPRUN" "${ARGS[@]}" : \
  -np 1 "$DPRUN" "${ARGS[@]}" --config "$WORK/cfg.fifo"
ended_after_timeout "a rank stuck reading its --config ends the job after --timeout" 40 \
  "dprun: error: \[rank 0\] not every rank finished reading its options within 3 s (--timeout): no report from rank 1 "

# The deadlines of the phases bound the wait for the others, not the phase's own work: a
# one-rank job cannot wait for anyone, and MPI_Finalize alone takes 50-100 ms, so a --timeout
# shorter than that must not fail it (it did: 'MPI finalisation did not complete within 0.005 s').
mpi 1 --data synthetic:200 --hidden 8 --steps 2 -q --timeout 0.005 >"$WORK/tight.out" 2>&1 &&
  pass "a --timeout shorter than MPI_Finalize's own work does not fail a healthy job" ||
  { fail "tight --timeout on one rank"; cat "$WORK/tight.out"; }
finish
