#!/usr/bin/env bash
# No silent hangs: when one rank stalls, the others report the collective that did not
# complete (naming the step and the bucket) after --timeout, and the whole job ends. Which
# clock fires first is a race: the Reducer's wait ("did not complete") or, on one node, the
# shared-memory all-reduce's own barrier ("did not arrive"); both name step, bucket, timeout.
source "$(dirname "$0")/lib.sh" "$@"

start=$(date +%s)
rc=0
DPRUN_FAULT_STALL="rank=1,step=3,seconds=100" mpi 2 --data synthetic:2000 --hidden 16 --steps 10 \
  --batch-size 20 --timeout 3 >"$WORK/out" 2>"$WORK/err" || rc=$?
elapsed=$(( $(date +%s) - start ))
if [ "$rc" -eq 0 ]; then fail "a stalled rank went unnoticed (exit 0)"; fi
if [ "$rc" -eq 124 ]; then fail "the job hung until the test's own time limit"; fi
[ "$elapsed" -lt 60 ] && pass "job ended ${elapsed}s after start" || fail "took ${elapsed}s"
if grep -q "dprun: error: \[rank 0\] step 3: bucket 0" "$WORK/err" && grep -qE "did not (complete|arrive) within 3 s" "$WORK/err"; then
  pass "rank 0 names the step, the bucket and the timeout"
else
  fail "message lacks step/bucket/timeout"; cat "$WORK/err"
fi
finish
