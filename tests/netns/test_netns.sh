#!/usr/bin/env bash
# launcher/netns/dprun-netns end to end: 2 emulated hosts x 1 rank train for real over TCP between
# namespaces (two hostnames in the header, gradient bytes on both links), a 100 Mbit/s link is
# slower than an unshaped one (bench_allreduce), the exit code passes through, and nothing is left
# behind: after success, after a failing command, after SIGINT to the harness, and after a
# SIGKILLed harness once `--cleanup` ran (which leaves a live run alone). First, without root,
# the argument checks: numbers bash would read as octal, malformed or 100% --loss/--delay/--jitter,
# and --cleanup ids that would lead rm -rf out of the state folder.
#   test_netns.sh DPRUN BENCH_ALLREDUCE DPRUN_NETNS
# Exit 77 (skipped) when not root or network namespaces do not work here.
set -uo pipefail
DPRUN=${1:?usage: test_netns.sh DPRUN BENCH_ALLREDUCE DPRUN_NETNS}
BENCH=${2:?usage: test_netns.sh DPRUN BENCH_ALLREDUCE DPRUN_NETNS}
NETNS=${3:?usage: test_netns.sh DPRUN BENCH_ALLREDUCE DPRUN_NETNS}

# Argument checks come before anything is made and need no root. Bash arithmetic would read
# "010" as octal 8 (and "08" as an error) where the range check read 10: leading zeros are
# refused. A loss of 100% or more dropped every packet and hung until --timeout; malformed
# numbers reached tc half-way through the setup. --mpirun names nothing, so that a check that let
# one through still stops there (with another message), and the state folder is a scratch one
# that must not even be created.
ARG_FAILURES=0
ARG_WORK=$(mktemp -d /tmp/dprun-netns-args.XXXXXX)
refused() {  # refused MESSAGE ARGS...: exit 2, MESSAGE in the output, nothing made
  local msg=$1 rc=0 out
  shift
  out=$(DPRUN_NETNS_STATE=$ARG_WORK/state "$NETNS" "$@" 2>&1) || rc=$?
  if [ "$rc" = 2 ] && [[ $out == *"$msg"* ]] && [ ! -e "$ARG_WORK/state" ]; then
    echo "ok: '$*' is refused"
  else
    echo "FAIL: '$*' (exit $rc, want 2 and '$msg'): $out"; ARG_FAILURES=$((ARG_FAILURES + 1))
  fi
}
for args in "--hosts 010" "--hosts 08" "--hosts 2 --ranks-per-host 02" "--hosts 2 --timeout 010" \
  "--hosts 2 --burst 01500"; do
  # shellcheck disable=SC2086
  refused "no leading zeros" $args --mpirun /nonexistent/mpirun -- true
done
for args in "--loss 100%" "--loss 100" "--loss 150%" "--loss 1.2.3" "--loss ." "--delay 1.2.3ms" \
  "--delay .ms" "--jitter bogus" "--jitter 1.2.3ms"; do
  # shellcheck disable=SC2086
  refused "${args%% *}: " --hosts 2 $args --mpirun /nonexistent/mpirun -- true
done
# A state folder whose path holds a blank or '$' broke the rsh agent half-way through the setup.
for state in "$ARG_WORK/state dir" "$ARG_WORK/st\$ate"; do
  rc=0
  out=$(DPRUN_NETNS_STATE=$state "$NETNS" --hosts 2 --mpirun /nonexistent/mpirun -- true 2>&1) || rc=$?
  if [ "$rc" = 2 ] && [[ $out == *"use a folder whose path has only"* ]] && [ ! -e "$state" ]; then
    echo "ok: DPRUN_NETNS_STATE '$state' is refused"
  else
    echo "FAIL: DPRUN_NETNS_STATE '$state' (exit $rc): $out"; ARG_FAILURES=$((ARG_FAILURES + 1))
  fi
done
# --cleanup ID removes the folder $STATE/ID: an ID that leaves the state folder ('../victim', '/')
# removed what it named, and said "removed run ../victim".
mkdir -p "$ARG_WORK/victim/data" "$ARG_WORK/state/keepme"
echo important >"$ARG_WORK/victim/data/file.txt"
for id in ../victim / . "a/../../victim"; do
  rc=0
  out=$(DPRUN_NETNS_STATE=$ARG_WORK/state "$NETNS" --cleanup "$id" 2>&1) || rc=$?
  if [ "$rc" = 2 ] && [[ $out == *"--cleanup: a run id is 1-12 of a-z 0-9, not '$id'"* ]] &&
    [ -f "$ARG_WORK/victim/data/file.txt" ] && [ -d "$ARG_WORK/state/keepme" ]; then
    echo "ok: '--cleanup $id' is refused, and nothing is removed"
  else
    echo "FAIL: '--cleanup $id' (exit $rc): $out"; ARG_FAILURES=$((ARG_FAILURES + 1))
    mkdir -p "$ARG_WORK/victim/data" "$ARG_WORK/state/keepme"
    echo important >"$ARG_WORK/victim/data/file.txt"
  fi
done
rm -rf "$ARG_WORK"
skip() { [ "$ARG_FAILURES" = 0 ] || exit 1; echo "SKIP: $*"; exit 77; }
if [ "$(id -u)" != 0 ]; then skip "needs root (network namespaces)"; fi
PROBE=netns-probe-$$
if ! ip netns add "$PROBE" 2>/dev/null; then skip "'ip netns' does not work here"; fi
ip netns del "$PROBE"

WORK=$(mktemp -d /tmp/dprun-netns-test.XXXXXX)
TAG=t$$  # run ids of this test: $TAG + a letter
cleanup() {
  # Whatever a failed check left: this test's runs only.
  for id in "${TAG}a" "${TAG}b" "${TAG}c" "${TAG}d" "${TAG}e" "${TAG}f" "${TAG}g" "${TAG}h" "${TAG}i"; do
    "$NETNS" -q --cleanup "$id" >/dev/null 2>&1 || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export CUDA_VISIBLE_DEVICES=
FAILURES=$ARG_FAILURES
fail() { echo "FAIL: $*"; FAILURES=$((FAILURES + 1)); }
pass() { echo "ok: $*"; }

# gone ID: nothing of run ID is left: no namespace, no state folder, no process of it.
gone() {
  local id=$1
  if ls /run/netns/dprun-"$id"-* >/dev/null 2>&1; then echo "namespaces left:" /run/netns/dprun-"$id"-*; return 1; fi
  if [ -e "/run/dprun-netns/$id" ]; then echo "state folder /run/dprun-netns/$id left"; return 1; fi
  # mpirun names the run's hostfile; the agent gives every daemon and rank a TMPDIR in the run's
  # folder: a process with either is the run's.
  local left
  # (The pattern comes from a file so that grep's own command line does not match it.)
  left=$(grep -s -l -a -F -f <(echo "dprun-netns/$id/") /proc/[0-9]*/cmdline /proc/[0-9]*/environ || true)
  if [ -n "$left" ]; then
    echo "processes left:"; for f in $left; do p=${f#/proc/}; p=${p%%/*}; echo "  $p $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null)"; done
    return 1
  fi
  return 0
}

# wait_up ID SECONDS: wait until run ID has its hosts up (its hostfile exists), with a deadline.
wait_up() {
  local deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ]; do
    [ -s "/run/dprun-netns/$1/hostfile" ] && [ -n "$(ip netns pids "dprun-$1-head" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  return 1
}

# wait_pid PID SECONDS: wait for a background job with a deadline; its exit code, or 255 (and
# KILL) when it was still running.
wait_pid() {
  local pid=$1 deadline=$((SECONDS + $2))
  while [ $SECONDS -lt $deadline ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 255; fi
  wait "$pid"
}

# 0. Nothing to show or clean: --list and --cleanup still answer, and exit 0 (--list used to
# exit 1 without a word: its grep for our namespaces found none under set -e and pipefail).
# An empty state folder of its own; "no runs" only where no dprun- namespace exists here.
mkdir -p "$WORK/empty-state"
rc=0
DPRUN_NETNS_STATE=$WORK/empty-state "$NETNS" --list >"$WORK/list.txt" 2>&1 || rc=$?
if ip netns list 2>/dev/null | grep -q "^dprun-"; then
  [ "$rc" = 0 ] && [ -s "$WORK/list.txt" ] && pass "--list with other runs' namespaces: exit 0" ||
    { fail "--list: exit $rc"; cat "$WORK/list.txt"; }
else
  [ "$rc" = 0 ] && [ "$(cat "$WORK/list.txt")" = "no runs" ] && pass "--list with no runs: 'no runs', exit 0" ||
    { fail "--list with no runs: exit $rc"; cat "$WORK/list.txt"; }
  rc=0
  DPRUN_NETNS_STATE=$WORK/empty-state "$NETNS" --cleanup >"$WORK/clean0.txt" 2>&1 || rc=$?
  [ "$rc" = 0 ] && grep -q "nothing to remove" "$WORK/clean0.txt" &&
    pass "--cleanup with nothing to clean: says so, exit 0" || { fail "--cleanup of nothing: exit $rc"; cat "$WORK/clean0.txt"; }
fi
rc=0
DPRUN_NETNS_STATE=$WORK/empty-state "$NETNS" --cleanup "${TAG}z" >"$WORK/clean1.txt" 2>&1 || rc=$?
[ "$rc" = 0 ] && grep -q "no run ${TAG}z: nothing to remove" "$WORK/clean1.txt" &&
  pass "--cleanup ID of no run: says so (not 'removed'), exit 0" || { fail "--cleanup ${TAG}z: exit $rc"; cat "$WORK/clean1.txt"; }

# 1. Training across 2 hosts: two hostnames, and the gradients cross both links.
if timeout 120 "$NETNS" --hosts 2 --ranks-per-host 1 --run-id "${TAG}a" --stats "$WORK/stats.json" --timeout 100 -- \
    "$DPRUN" --data synthetic:2048 --model mlp --hidden 64 --epochs 1 --log-json "$WORK/run.jsonl" \
    >"$WORK/out.txt" 2>"$WORK/err.txt"; then
  pass "2 hosts x 1 rank: dprun exits 0"
else
  fail "2 hosts x 1 rank: dprun failed"; cat "$WORK/out.txt" "$WORK/err.txt"
fi
grep -q "world size 2" "$WORK/out.txt" && grep -q "rank 0: host0 " "$WORK/out.txt" &&
  grep -q "rank 1: host1 " "$WORK/out.txt" && pass "the header shows two hosts (host0, host1)" ||
  { fail "the header does not show ranks on host0 and host1"; head -5 "$WORK/out.txt"; }
grep -q -- "--mca btl_tcp_if_include 10.77.0.0/24" "$WORK/err.txt" && grep -q "mpi_yield_when_idle 1" "$WORK/err.txt" &&
  pass "the mpirun command line is printed" || { fail "no mpirun command line"; cat "$WORK/err.txt"; }
python3 - "$WORK" <<'PY' && pass "gradient bytes went over both hosts' links (TCP between namespaces)" || fail "link counters"
import json, sys
work = sys.argv[1]
steps = [r for r in map(json.loads, open(f"{work}/run.jsonl")) if r["type"] == "step"]
assert len(steps) == 16, len(steps)  # 2048 samples / 2 ranks / batch 64
# Each step all-reduces the 784-64-10 MLP's 50890 float32 gradients; with 2 ranks each rank
# sends and receives about that much per step.
want = 16 * 50890 * 4
hosts = json.load(open(f"{work}/stats.json"))["hosts"]
assert [h["host"] for h in hosts] == ["host0", "host1"], hosts
for h in hosts:
    assert h["tx_bytes"] >= want and h["rx_bytes"] >= want, (h, want)
print("link bytes:", [(h["host"], h["tx_bytes"], h["rx_bytes"]) for h in hosts], ">=", want)
PY
gone "${TAG}a" && pass "teardown after success" || fail "run ${TAG}a left things behind"

# 1b. 2 hosts x 2 ranks: shared memory (vader) inside a host, TCP between hosts. Under one
# hostname the hosts' vader segments collide in the shared /dev/shm and the ranks crash. The
# gradients go hierarchical (shared memory in each host, then between hosts).
if timeout 120 "$NETNS" -q --hosts 2 --ranks-per-host 2 --run-id "${TAG}g" --timeout 100 -- \
    "$DPRUN" --data synthetic:2048 --model mlp --hidden 64 --epochs 1 --allreduce-algo hierarchical \
    --dump-params "$WORK/hier1.bin" >"$WORK/out4.txt" 2>&1 &&
    [ "$(grep -c "rank [01]: host0 " "$WORK/out4.txt")" = 2 ] && [ "$(grep -c "rank [23]: host1 " "$WORK/out4.txt")" = 2 ]; then
  pass "2 hosts x 2 ranks: exits 0, ranks 0-1 on host0 and 2-3 on host1"
else
  fail "2 hosts x 2 ranks"; cat "$WORK/out4.txt"
fi
gone "${TAG}g" || fail "run ${TAG}g left things behind"
grep -q "using the flat all-reduce" "$WORK/out4.txt" && fail "2 hosts x 2 ranks did not go hierarchical"
grep -q "backend mpi, all-reduce hierarchical, 2 nodes x 2 ranks" "$WORK/out4.txt" &&
  pass "the header says: all-reduce hierarchical, 2 nodes x 2 ranks" || fail "the header does not name the hierarchy"

# 1c. The hierarchical all-reduce is deterministic (a rerun gives the same parameters, bit for
# bit) and trains like the flat ring (the same parameters up to float rounding: another order).
for run in "h hierarchical hier2" "i flat flat"; do
  set -- $run
  timeout 120 "$NETNS" -q --hosts 2 --ranks-per-host 2 --run-id "${TAG}$1" --timeout 100 -- \
    "$DPRUN" --data synthetic:2048 --model mlp --hidden 64 --epochs 1 --allreduce-algo "$2" \
    --dump-params "$WORK/$3.bin" >"$WORK/out-$3.txt" 2>&1 || { fail "2 x 2 with --allreduce-algo $2"; cat "$WORK/out-$3.txt"; }
  gone "${TAG}$1" || fail "run ${TAG}$1 left things behind"
done
cmp -s "$WORK/hier1.bin" "$WORK/hier2.bin" && pass "hierarchical: a rerun ends with the same parameters, bit for bit" ||
  fail "hierarchical: two runs ended with different parameters"
# Measured max |p - q| / (1 + |q|) with this run on one host (4 ranks, DPRUN_NODE_SPLIT=2): 7.2e-9.
# 1e-6 leaves that room and still catches 16-bit rounding on the way: the fp16_compress hook gave
# 2.8e-6, bf16_compress 2.1e-5 (and --lr 0.05 * 1.004 instead of 0.05, 7.7e-5).
python3 - "$WORK/hier1.bin" "$WORK/flat.bin" <<'PY' && pass "hierarchical and flat end with the same parameters (within 1e-6)" || fail "hierarchical != flat"
import struct, sys
a, b = (open(f, "rb").read() for f in sys.argv[1:3])
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
n = len(a) // 4
x, y = struct.unpack(f"<{n}f", a), struct.unpack(f"<{n}f", b)
worst = max(abs(p - q) / (1 + abs(q)) for p, q in zip(x, y))
print(f"{n} parameters, largest relative difference {worst:.2e}")
assert worst < 1e-6, worst
PY

# 2. A shaped link is slower: 1 MiB all-reduces at 100 Mbit/s against unshaped. Each rank sends
# about 1 MiB per all-reduce: >= 84 ms at 100 Mbit/s, about a millisecond unshaped.
bench() {  # bench ID RATE: the median MPI_Allreduce time of 1 MiB in microseconds
  timeout 90 "$NETNS" -q --hosts 2 --run-id "$1" --rate "$2" --timeout 80 -- \
    "$BENCH" --min-bytes 1048576 --max-bytes 1048576 --iters 5 2>"$WORK/bench-$2.err" |
    tee "$WORK/bench-$2.txt" | awk '$1 == 1048576 { print $(NF - 2) }'
}
FAST=$(bench "${TAG}b" none)
SLOW=$(bench "${TAG}c" 100mbit)
echo "1 MiB all-reduce over 2 hosts: unshaped ${FAST:-?} us, 100 Mbit/s ${SLOW:-?} us"
grep -q "no shared path" "$WORK/bench-none.txt" && pass "dprun sees two nodes (no shared-memory path)" ||
  { fail "dprun took the hosts for one node"; cat "$WORK/bench-none.txt"; }
if [ -n "$FAST" ] && [ -n "$SLOW" ] && awk -v f="$FAST" -v s="$SLOW" 'BEGIN { exit !(s >= 60000 && s >= 5 * f) }'; then
  pass "the 100 Mbit/s link is slower (>= 60 ms and >= 5x unshaped)"
else
  fail "shaping: unshaped '$FAST' us, 100 Mbit/s '$SLOW' us"; cat "$WORK"/bench-*.txt "$WORK"/bench-*.err
fi
gone "${TAG}b" && gone "${TAG}c" && pass "teardown after the benchmarks" || fail "benchmark runs left things behind"

# 3. A failing command: its exit code passes through, and everything is torn down.
timeout 60 "$NETNS" -q --hosts 2 --run-id "${TAG}d" --timeout 50 -- sh -c 'exit 3' >"$WORK/fail.txt" 2>&1
rc=$?
[ "$rc" = 3 ] && pass "a failing command's exit code (3) passes through" || { fail "exit code $rc, not 3"; cat "$WORK/fail.txt"; }
gone "${TAG}d" && pass "teardown after a failing command" || fail "run ${TAG}d left things behind"

# 4. SIGINT to the harness while dprun trains; meanwhile a SIGKILLed harness leaves its run
# behind, which --cleanup removes without touching the live run.
set -m  # job control: background jobs do not ignore SIGINT (bash's default without it)
"$NETNS" -q --hosts 2 --run-id "${TAG}e" --timeout 100 -- "$DPRUN" --data synthetic:100000 --model mlp \
  --hidden 64 --epochs 50 >"$WORK/int.txt" 2>&1 &
LIVE=$!
"$NETNS" -q --hosts 2 --run-id "${TAG}f" --timeout 100 -- sleep 100 >"$WORK/kill.txt" 2>&1 &
KILLED=$!
set +m
if wait_up "${TAG}e" 30 && wait_up "${TAG}f" 30; then
  sleep 1  # let dprun start training
  kill -KILL "$KILLED"
  wait "$KILLED" 2>/dev/null
  [ -e "/run/netns/dprun-${TAG}f-h0" ] && pass "a SIGKILLed harness leaves its run behind (as expected)" ||
    fail "run ${TAG}f vanished without --cleanup?"
  "$NETNS" --list >"$WORK/list.txt" 2>&1 && grep -q "^${TAG}e running (pid " "$WORK/list.txt" &&
    grep -q "^${TAG}f stale" "$WORK/list.txt" && pass "--list: the live run running, the killed one stale" ||
    { fail "--list"; cat "$WORK/list.txt"; }
  # Another state folder has no record of either run: its --cleanup took the live run's
  # namespaces for stale ones and deleted them under the training ranks.
  DPRUN_NETNS_STATE=$WORK/other-state timeout 60 "$NETNS" --list >"$WORK/list-other.txt" 2>&1
  grep -q "^${TAG}e running (process [0-9]* in namespace dprun-${TAG}e-h" "$WORK/list-other.txt" &&
    pass "--list of another state folder: a run with processes in its namespaces is running" ||
    { fail "--list of another state folder"; cat "$WORK/list-other.txt"; }
  DPRUN_NETNS_STATE=$WORK/other-state timeout 60 "$NETNS" --cleanup >"$WORK/cleanup-other.txt" 2>&1 ||
    fail "--cleanup of another state folder failed"
  [ -e "/run/netns/dprun-${TAG}e-h0" ] && [ -e "/run/netns/dprun-${TAG}e-h1" ] && kill -0 "$LIVE" 2>/dev/null &&
    pass "--cleanup of another state folder leaves the live run alone" ||
    { fail "--cleanup of another state folder removed the live run ${TAG}e"; cat "$WORK/cleanup-other.txt"; }
  timeout 60 "$NETNS" --cleanup >"$WORK/cleanup.txt" 2>&1 || fail "--cleanup failed"
  gone "${TAG}f" && pass "--cleanup removes a crashed run" || { fail "--cleanup left run ${TAG}f"; cat "$WORK/cleanup.txt"; }
  [ -e "/run/netns/dprun-${TAG}e-h0" ] && kill -0 "$LIVE" 2>/dev/null && pass "--cleanup leaves a live run alone" ||
    fail "--cleanup touched the live run ${TAG}e"
  kill -INT "$LIVE"
  wait_pid "$LIVE" 30
  rc=$?
  [ "$rc" = 130 ] && pass "SIGINT: the harness exits 130" || { fail "SIGINT: exit code $rc, not 130"; cat "$WORK/int.txt"; }
  gone "${TAG}e" && pass "teardown after SIGINT" || fail "run ${TAG}e left things behind after SIGINT"
else
  fail "the background runs did not come up in 30 s"; cat "$WORK/int.txt" "$WORK/kill.txt"
  kill -INT "$LIVE" "$KILLED" 2>/dev/null
  wait_pid "$LIVE" 30; wait_pid "$KILLED" 30
fi

# 5. A host cut off for good: the ranks give up after dprun's --timeout, and the job must end
# too (mpirun retransmitted its orders to the unreachable host's daemon for about 15 minutes).
"$NETNS" -q --hosts 2 --run-id "${TAG}g" -- "$DPRUN" --data synthetic:100000 --model mlp \
  --hidden 64 --epochs 50 --timeout 5 >"$WORK/cut.txt" 2>&1 &
CUT=$!
if wait_up "${TAG}g" 30; then
  sleep 2  # let dprun start training
  ip -n "dprun-${TAG}g-head" link set h1 down
  start=$SECONDS
  wait_pid "$CUT" 100
  rc=$?
  [ "$rc" != 0 ] && [ "$rc" != 255 ] && pass "a host cut off for good: the job ends, exit $rc, $((SECONDS - start)) s after the cut" ||
    { fail "a host cut off for good: exit $rc after $((SECONDS - start)) s (255: still running)"; tail -5 "$WORK/cut.txt"; }
  grep -q "did not complete within 5 s" "$WORK/cut.txt" && pass "the cut-off job says which collective timed out" ||
    { fail "no timeout message from the cut-off job"; tail -5 "$WORK/cut.txt"; }
  gone "${TAG}g" && pass "teardown after a host was cut off" || fail "run ${TAG}g left things behind"
else
  fail "the run to cut off did not come up in 30 s"; cat "$WORK/cut.txt"
  kill -INT "$CUT" 2>/dev/null; wait_pid "$CUT" 30
fi

if [ "$FAILURES" -gt 0 ]; then echo "$FAILURES check(s) failed"; exit 1; fi
echo "all checks passed"
