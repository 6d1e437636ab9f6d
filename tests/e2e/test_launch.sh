#!/usr/bin/env bash
# dprun launch: starts one rank per core here, prints the command, passes the exit code and
# turns SIGTERM, and a terminal's Ctrl-C, into a clean preemption (checkpoint, exit 0).
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
finish
