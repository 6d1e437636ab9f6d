#!/usr/bin/env bash
# dprun launch: starts one rank per core here, prints the command, passes the exit code and
# turns SIGTERM into a clean preemption (checkpoint, exit 0).
source "$(dirname "$0")/lib.sh" "$@"
cd "$WORK" || exit 1
export PATH="$(dirname "$MPIEXEC"):$PATH"

timeout 120 "$DPRUN" launch -- --data synthetic:2048 --model mlp --hidden 32 --epochs 1 >ok.out 2>&1 &&
  grep -q "mpirun .*-np $(getconf _NPROCESSORS_ONLN) .*dprun --data synthetic:2048" ok.out && grep -q "world size $(getconf _NPROCESSORS_ONLN)" ok.out &&
  pass "one rank per core, the mpirun line printed" || { fail "launch"; cat ok.out; }
rc=0
timeout 120 "$DPRUN" launch -np 2 -- --data synthetic:2048 --bogus >bad.out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "unrecognised option '--bogus'" bad.out && pass "the job's exit code comes back ($rc)" ||
  { fail "exit code $rc"; cat bad.out; }
rc=0
"$DPRUN" launch --frobnicate >u.out 2>&1 || rc=$?
[ "$rc" = 1 ] && grep -q "unknown option '--frobnicate'" u.out && pass "a bad launch option is named" || fail "bad launch option"

timeout 120 "$DPRUN" launch -np 2 -- --data synthetic:8192 --model mlp --hidden 256 --epochs 500 \
  --log-interval 100000 --checkpoint-dir ck >sig.out 2>&1 &
job=$!
for _ in $(seq 150); do grep -q "^reducer" sig.out 2>/dev/null && break; sleep 0.2; done
sleep 0.5
# The launcher itself (timeout would signal the whole process group).
kill -TERM "$(pgrep -f "^$DPRUN launch -np 2 -- --data synthetic:8192" | head -1)"
rc=0
wait "$job" || rc=$?
# Rank 0 names SIGUSR1, or "a signal on another rank" when the ranks agreed to stop on another
# rank's copy before its own arrived; exit 0 says mpirun saw SIGUSR1 (SIGTERM would fail it).
[ "$rc" = 0 ] && grep -q -E "preempted by (SIGUSR1|a signal on another rank)" sig.out &&
  ls ck/step-*.ckpt >/dev/null 2>&1 &&
  pass "SIGTERM to the launcher: the ranks checkpoint and the job exits 0" || { fail "signal (exit $rc)"; grep -E "preempted|error" sig.out; tail -5 sig.out; }
finish
