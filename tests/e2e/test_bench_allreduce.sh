#!/usr/bin/env bash
# dprun bench-allreduce: nccl-tests' columns, a correctness count that is zero, float32 and
# bfloat16, the process group with and without shared memory next to its flat twin and
# MPI_Allreduce.
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh" "$@"
cd "$WORK" || exit 1

check() {  # check NAME FILE ROWS: every data row has #wrong 0 in all three columns, ROWS of them
  python3 - "$2" "$3" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
assert len(rows) == int(sys.argv[2]), f"{len(rows)} rows"
for r in rows:
    assert r[4] == "|" and r[9] == "|" and r[14] == "|", r
    assert r[8] == "0" and r[13] == "0" and r[18] == "0", f"wrong elements: {r}"
    assert float(r[5]) > 0 and float(r[10]) > 0 and float(r[15]) > 0, r
PY
}
# bw FILE RANKS: nccl-tests' arithmetic in every column: size = count x element size, algbw =
# size / time, busbw = algbw x 2(n-1)/n (0 on one rank); within the printed digits' rounding.
bw() {
  python3 - "$1" "$2" <<'PY'
import sys
n = int(sys.argv[2])
esize = {"float": 4, "bfloat16": 2}
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
assert rows, "no rows"
for r in rows:
    size, count = int(r[0]), int(r[1])
    assert size == count * esize[r[2]], f"size {size} is not {count} x {r[2]}: {r}"
    for c in (5, 10, 15):  # time(us) algbw busbw, for dprun, flat and mpi
        t, alg, bus = float(r[c]), float(r[c + 1]), float(r[c + 2])
        lo = size / (t + 0.05) / 1e3 - 0.005
        hi = size / max(t - 0.05, 1e-9) / 1e3 + 0.005
        assert lo <= alg <= hi, f"algbw {alg} is not {size} B / {t} us: {r}"
        f = 2 * (n - 1) / n
        assert abs(bus - alg * f) <= 0.005 * (1 + f) + 1e-9, f"busbw {bus} is not {alg} x {f}: {r}"
PY
}
mpi 3 bench-allreduce -b 4 -e 1M -f 4 -n 3 -w 1 >shm.out 2>&1 && check shm shm.out 20 && bw shm.out 3 &&
  grep -q "shared memory" shm.out && pass "3 ranks, shared memory: float32 and bfloat16 all correct" ||
  { fail "bench over shared memory"; cat shm.out; }
mpi 2 bench-allreduce -b 1K -e 4M -f 16 -n 3 -w 1 -d float --no-shm >tcp.out 2>&1 && check tcp tcp.out 4 &&
  grep -q "ring or MPI_Allreduce" tcp.out && pass "2 ranks, --no-shm (ring): correct" || { fail "bench --no-shm"; cat tcp.out; }
# nccl-tests' footer: no wrong element says OK, and the average bus bandwidth is the dprun
# column's mean.
python3 - shm.out <<'PY' && pass "footer: 0 out of bounds OK, average busbw of the dprun column" ||
import sys
lines = open(sys.argv[1]).read().splitlines()
rows = [l.split() for l in lines if l.strip() and not l.startswith("#")]
assert "# Out of bounds values : 0 OK" in lines, lines[-4:]
avg = [l for l in lines if l.startswith("# Avg bus bandwidth    : ")]
assert len(avg) == 1, lines[-4:]
mean = sum(float(r[7]) for r in rows) / len(rows)
assert abs(float(avg[0].split()[5]) - mean) <= 0.005 + 1e-3 * mean, (avg, mean)
PY
  { fail "bench footer"; cat shm.out; }
# An all-reduce that gives wrong sums (a shim adds 1 to one element of MPI_Allreduce's float
# results) fails the run on every rank, as nccl-tests exits non-zero, and the footer says so.
# The shim is the build's target corrupt_allreduce (tests/CMakeLists.txt).
if [ -f "$BUILD/corrupt_allreduce.so" ]; then
  rc=0
  timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 -x LD_PRELOAD="$BUILD/corrupt_allreduce.so" \
    "$DPRUN" bench-allreduce -b 64K -e 64K -n 2 -w 1 -d float --no-shm -J wrong.json >wrong.out 2>&1 || rc=$?
  [ "$rc" != 0 ] && grep -q "^# Out of bounds values : [1-9][0-9]* FAILED" wrong.out &&
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); assert d["ok"] is False and d["out_of_bounds"] > 0 and d["rows"][0]["mpi"]["wrong"] > 0, d' wrong.json &&
    [ "$(grep -c "rank [01]\] bench-allreduce: .* not the exact sums (dprun .*, mpi [1-9]" wrong.out)" = 2 ] &&
    pass "wrong sums: FAILED in the footer, an error on every rank, exit $rc" ||
    { fail "wrong sums pass unnoticed (exit $rc)"; cat wrong.out; }
else
  fail "no MPI_Allreduce shim: $BUILD/corrupt_allreduce.so was not built"
fi
# No GPU (or no NCCL in the build): the NCCL column is left out and says why; --nccl on is an
# error on every rank. Where every rank has a GPU the column is there, its #wrong 0.
if grep -q "^# nccl: not run" shm.out; then
  pass "no NCCL column without a GPU on every rank ($(grep '^# nccl' shm.out | cut -c3-))"
  rc=0
  mpi 2 bench-allreduce -b 1K -e 1K --nccl on >nccl.out 2>&1 || rc=$?
  [ "$rc" != 0 ] && [ "$(grep -c 'bench-allreduce --nccl on: rank [01]:' nccl.out)" = 2 ] &&
    pass "--nccl on without a GPU: an error on every rank" || { fail "--nccl on"; cat nccl.out; }
else
  python3 - shm.out <<'PY' && pass "NCCL column correct" || { fail "NCCL column"; cat shm.out; }
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
assert rows and all(r[21] == "|" and r[25] == "0" and float(r[22]) > 0 for r in rows), rows
PY
fi
rc=0
mpi 2 bench-allreduce -e 12Q >bad.out 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q -- "-e must be a size such as 8, 64K, 256M or 1g, got '12Q'" bad.out &&
  pass "a bad size is named" || { fail "bad size"; cat bad.out; }

# Sizes that are not whole elements: the row is what moves (-b 10 of float: 2 elements, 8
# bytes, not 10, which overstated algbw by 25%); one rank: busbw 0, as nccl-tests prints it
# (it was forced equal to algbw).
mpi 1 bench-allreduce -b 10 -e 40 -f 2 -n 2 -w 0 >odd.out 2>&1 && bw odd.out 1 &&
  [ "$(grep -v '^#' odd.out | awk '{print $1 "/" $2}' | tr '\n' ' ')" = "8/2 20/5 40/10 10/5 20/10 40/20 " ] &&
  pass "1 rank, -b 10: sizes are count x element size, busbw 0" || { fail "-b 10 on 1 rank"; cat odd.out; }

# -h/--help: the usage, once (rank 0), and exit 0 on every rank (it used to be an unknown
# option on each rank, and mpirun aborted the job).
for h in -h --help; do
  rc=0
  mpi 2 bench-allreduce -b 8 "$h" >help.out 2>&1 || rc=$?
  [ "$rc" = 0 ] && [ "$(grep -c '^usage: mpirun -np N dprun bench-allreduce' help.out)" = 1 ] &&
    grep -q -- "--timeout S" help.out && ! grep -q "error" help.out && pass "$h: the usage once, exit 0" ||
    { fail "$h (exit $rc)"; cat help.out; }
done

# Without mpirun too (it went to the training options' early parse: "unknown command").
rc=0
timeout 60 "$DPRUN" bench-allreduce --help >help1.out 2>&1 || rc=$?
[ "$rc" = 0 ] && grep -q '^usage: mpirun -np N dprun bench-allreduce' help1.out &&
  pass "--help without mpirun: the usage, exit 0" || { fail "--help without mpirun (exit $rc)"; cat help1.out; }

# Bad numbers: refused on every rank, naming the flag and the value (not a bare "stod", nor an
# internal "shm_timeout must be positive" for --timeout 0).
bad() {  # bad MESSAGE ARGS...: exit non-zero, MESSAGE from both ranks
  local msg=$1 rc=0
  shift
  mpi 2 bench-allreduce "$@" >bad.out 2>&1 || rc=$?
  [ "$rc" != 0 ] && [ "$(grep -cF -- "$msg" bad.out)" = 2 ] && pass "refused: $*" ||
    { fail "$* (exit $rc): want '$msg' from 2 ranks"; cat bad.out; }
}
bad "--timeout must be a positive number of seconds, got 'abc'" --timeout abc
bad "--timeout must be a positive number of seconds, got '0'" --timeout 0
bad "--timeout must be a positive number of seconds, got '-1'" --timeout -1
bad "--timeout must be a positive number of seconds, got '5s'" --timeout 5s
bad "--timeout must be a positive number of seconds, got 'inf'" --timeout inf
bad "-n must be a whole number from 1 to 999999999, got '0'" -n 0
bad "-n must be a whole number from 1 to 999999999, got '1000000000'" -n 1000000000
bad "-f must be a whole number from 2 to 999999999, got '1'" -f 1
bad "-f must be a whole number from 2 to 999999999, got '99999999999'" -f 99999999999
bad "-w must be a whole number from 0 to 999999999, got '2x'" -w 2x
bad "-w must be a whole number from 0 to 999999999, got '1000000000'" -w 1000000000
bad "-b must be a size such as 8, 64K, 256M or 1g, got '-8'" -b -8
bad "-b must be at least 4 bytes (one float), got 2" -b 2 -d float
bad "-e must be at most 2G (MPI counts are ints), got '3g'" -e 3g
bad "-b (2048 bytes) must not exceed -e (1024 bytes)" -b 2k -e 1k
bad "-b (8 bytes, the default) must not exceed -e (4 bytes)" -e 4
bad "-i (add bytes each row) and -f (multiply) exclude each other" -i 1K -f 4
bad "-i 4: 8 to 268435456 bytes would be more than 10000 rows" -i 4
bad "-i must be a size such as 8, 64K, 256M or 1g, got '1.5K'" -i 1.5K
# -J: rank 0 writes it and checks it first; every rank fails before the benchmark.
rc=0
mpi 2 bench-allreduce -e 8 -n 1 -w 0 -d float -J /dev/null >badj.out 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "\[rank 0\] bench-allreduce -J /dev/null: exists and is not a regular file" badj.out &&
  grep -q "\[rank 1\] bench-allreduce -J /dev/null: rank 0 cannot write it" badj.out &&
  ! grep -qE "^ +[0-9]+ +[0-9]+ +float" badj.out &&
  pass "-J /dev/null: refused on every rank before the benchmark" || { fail "-J /dev/null (exit $rc)"; cat badj.out; }
# A path only rank 0 can see (node-local) is rank 0's to check: the other ranks do not fail
# alone (they did, and rank 0 waited forever in the groups' set-up).
mkdir -p r0dir
rc=0
timeout 60 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 1 -wdir "$WORK" "$DPRUN" bench-allreduce -e 8 -n 1 -w 0 \
  -d float -J r0dir/x.json : -np 1 -wdir / "$DPRUN" bench-allreduce -e 8 -n 1 -w 0 -d float -J r0dir/x.json \
  >local.out 2>&1 || rc=$?
[ "$rc" = 0 ] && [ -s r0dir/x.json ] && pass "-J on a path only rank 0 has" || { fail "-J node-local (exit $rc)"; cat local.out; }
# -i: nccl-tests' linear sweep; -J: the same rows as JSON.
mpi 2 bench-allreduce -b 1K -e 4K -i 1K -n 1 -w 0 -d float -J lin.json >lin.out 2>&1 && check lin lin.out 4 &&
  python3 - lin.out lin.json <<'PY' && pass "-J: the printed rows and verdict as JSON" || { fail "-J"; cat lin.out lin.json; }
import json, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip() and not l.startswith("#")]
d = json.load(open(sys.argv[2]))
assert d["world_size"] == 2 and d["ok"] is True and d["out_of_bounds"] == 0, d
assert d["command"][:1] == ["bench-allreduce"] and "-J" in d["command"], d["command"]
assert len(d["rows"]) == len(rows) == 4
for r, j in zip(rows, d["rows"]):
    assert int(r[0]) == j["size"] and int(r[1]) == j["count"] and r[2] == j["type"], (r, j)
    for c, name in ((5, "dprun"), (10, "flat"), (15, "mpi")):
        assert abs(float(r[c]) - j[name]["time_us"]) <= 0.05 + 1e-6, (r, j)
        assert abs(float(r[c + 2]) - j[name]["busbw"]) <= 0.005 + 1e-6, (r, j)
        assert int(r[c + 3]) == j[name]["wrong"] == 0
avg = [l for l in open(sys.argv[1]) if l.startswith("# Avg bus bandwidth")][0].split()[5]
assert abs(float(avg) - d["avg_busbw"]) <= 1e-4 * d["avg_busbw"] + 1e-6, (avg, d["avg_busbw"])
PY
mpi 2 bench-allreduce -b 1K -e 4K -i 1K -n 1 -w 0 -d float >lin.out 2>&1 && check lin lin.out 4 &&
  [ "$(grep -v '^#' lin.out | awk '{print $1}' | tr '\n' ' ')" = "1024 2048 3072 4096 " ] &&
  pass "-i 1K: a linear sweep, 1K to 4K" || { fail "-i 1K"; cat lin.out; }
bad "-b must be at least 2 bytes (one bfloat16), got 1" -b 1 -d bfloat16
mpi 1 bench-allreduce -b 2 -e 4 -n 1 -w 0 -d bf16 >b2.out 2>&1 &&
  [ "$(grep -v '^#' b2.out | awk '{print $1 "/" $2 "/" $3}' | tr '\n' ' ')" = "2/1/bfloat16 4/2/bfloat16 " ] &&
  pass "-b 2 -d bf16: one bfloat16 element is the smallest size" || { fail "-b 2 bfloat16"; cat b2.out; }
bad "--fused-max must be at most 4194304 bytes, got '8M'" --fused-max 8M
bad "--nccl maybe: expected auto, on or off" --nccl maybe
bad "-d half: expected float (fp32), bfloat16 (bf16) or all" -d half

# Ranks started with different --algo (an MPMD launch) fail while the group is built, on every
# rank, naming bench-allreduce's option (the message named dprun's --allreduce-algo).
rc=0
timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 1 "$DPRUN" bench-allreduce -e 8 -n 1 \
  : -np 1 "$DPRUN" bench-allreduce -e 8 -n 1 --algo flat >mpmd.out 2>&1 || rc=$?
[ "$rc" != 0 ] && [ "$(grep -cF -- "different settings: --algo is 'auto' on rank 0 but 'flat' on rank 1" mpmd.out)" = 2 ] &&
  pass "different --algo on two ranks: named on both" || { fail "MPMD --algo (exit $rc)"; cat mpmd.out; }

# Lower-case units as nccl-tests takes them (-b 1k -e 1m), and a fractional --timeout.
mpi 2 bench-allreduce -b 1k -e 1m -f 32 -n 2 -w 0 -d float --timeout 30.5 >lower.out 2>&1 &&
  check lower lower.out 3 && [ "$(grep -v '^#' lower.out | awk '{print $1}' | tr '\n' ' ')" = "1024 32768 1048576 " ] &&
  pass "lower-case size units: -b 1k -e 1m" || { fail "-b 1k -e 1m"; cat lower.out; }
finish
