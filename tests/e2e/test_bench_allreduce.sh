#!/usr/bin/env bash
# dprun bench-allreduce: nccl-tests' columns, a correctness count that is zero, float32 and
# bfloat16, the process group with and without shared memory next to its flat twin and
# MPI_Allreduce.
source "$(dirname "$0")/lib.sh" "$@"
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
mpi 3 bench-allreduce -b 4 -e 1M -f 4 -n 3 -w 1 >shm.out 2>&1 && check shm shm.out 20 &&
  grep -q "shared memory" shm.out && pass "3 ranks, shared memory: float32 and bfloat16 all correct" ||
  { fail "bench over shared memory"; cat shm.out; }
mpi 2 bench-allreduce -b 1K -e 4M -f 16 -n 3 -w 1 -d float --no-shm >tcp.out 2>&1 && check tcp tcp.out 4 &&
  grep -q "ring or MPI_Allreduce" tcp.out && pass "2 ranks, --no-shm (ring): correct" || { fail "bench --no-shm"; cat tcp.out; }
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
[ "$rc" != 0 ] && grep -q "expected a size" bad.out && pass "a bad size is named" || { fail "bad size"; cat bad.out; }
finish
