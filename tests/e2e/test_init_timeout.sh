#!/usr/bin/env bash
# No hang at start-up: a rank that stops before (or inside) MPI initialisation leaves the
# others waiting inside MPI_Init, where no collective timeout applies yet. The
# initialisation deadline (DPRUN_INIT_TIMEOUT) ends every waiting rank with a message
# naming it, and the launcher ends the job.
source "$(dirname "$0")/lib.sh" "$@"

start=$(date +%s)
rc=0
DPRUN_INIT_TIMEOUT=3 DPRUN_FAULT_INIT_STALL="rank=1,seconds=100" mpi 2 --data synthetic:200 \
  --hidden 8 --steps 2 >"$WORK/out" 2>"$WORK/err" || rc=$?
elapsed=$(( $(date +%s) - start ))
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then
  pass "the job failed (rc $rc), not hung"
else
  fail "rc $rc: the stalled start-up went unnoticed or hung"; cat "$WORK/err"
fi
# 3 s of deadline, plus mpirun's start and tear-down on a loaded 2-core machine.
[ "$elapsed" -lt 40 ] && pass "ended ${elapsed}s after start" || fail "took ${elapsed}s"
# Rank 0 did start: it waited inside MPI_Init for rank 1, and its own deadline ended it.
if grep -q "dprun: error: \[rank 0\] MPI initialisation did not complete within 3 s" "$WORK/err"; then
  pass "rank 0, waiting for the stalled rank, names the initialisation deadline"
else
  fail "rank 0 did not report the initialisation deadline"; cat "$WORK/err"
fi

# A deadline that is met changes nothing.
rc=0
DPRUN_INIT_TIMEOUT=60 mpi 2 --data synthetic:200 --hidden 8 --steps 2 >"$WORK/out" \
  2>"$WORK/err" || rc=$?
[ "$rc" -eq 0 ] && pass "a healthy start under DPRUN_INIT_TIMEOUT=60 trains" ||
  { fail "healthy start: rc $rc"; cat "$WORK/err"; }

rc=0
DPRUN_INIT_TIMEOUT=soon mpi 2 --data synthetic:200 --steps 1 >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" -ne 0 ] && grep -q "DPRUN_INIT_TIMEOUT='soon': expected a positive number of seconds" \
  "$WORK/err" && pass "a bad DPRUN_INIT_TIMEOUT is refused by name" ||
  { fail "bad DPRUN_INIT_TIMEOUT: rc $rc"; cat "$WORK/err"; }
# Refused before MPI starts: each rank still says which it is (the launcher's number).
grep -q "dprun: error: \[rank 0\] DPRUN_INIT_TIMEOUT='soon'" "$WORK/err" &&
  grep -q "dprun: error: \[rank 1\] DPRUN_INIT_TIMEOUT='soon'" "$WORK/err" &&
  pass "each rank names itself in an error before MPI starts" ||
  { fail "the ranks are not named apart before MPI starts"; cat "$WORK/err"; }
finish
