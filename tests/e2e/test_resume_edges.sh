#!/usr/bin/env bash
# Resuming at the edges of a run: --eval-only with nothing to evaluate, a checkpoint past the
# run's end, a checkpoint at the run's last step (the end-of-epoch evaluation it had not
# reached still runs), error messages that count steps from the start of the whole training,
# the line that ends an epoch the run stopped inside, a directory name with a newline, and a
# directory another live run writes.
source "$(dirname "$0")/lib.sh" "$@"
V1=$(cd "$(dirname "$0")/../data/ckpt-v1" && pwd)
cd "$WORK" || exit 1
MLP=(--model mlp --hidden 32 --data synthetic:512 --batch-size 16)

# --eval-only --resume auto on a directory without checkpoints: an error on every rank, not
# chance-level figures of a fresh initialisation; a mistyped directory is not created.
mkdir empty
rc=0
mpi 2 "${MLP[@]}" --eval-only --eval --resume auto --checkpoint-dir empty >eo.out 2>&1 || rc=$?
n=$(grep -c "no checkpoint in --checkpoint-dir empty (nothing to evaluate)" eo.out)
[ "$rc" != 0 ] && [ "$n" = 2 ] && pass "eval-only without a checkpoint: an error on both ranks" ||
  { fail "eval-only, empty directory (exit $rc, $n messages)"; cat eo.out; }
rc=0
mpi 1 "${MLP[@]}" --eval-only --eval --resume auto --checkpoint-dir typo >typo.out 2>&1 || rc=$?
[ "$rc" != 0 ] && [ ! -e typo ] && grep -q "checkpoint-dir typo is not a directory" typo.out &&
  pass "eval-only, no such directory: an error, nothing created" ||
  { fail "eval-only, mistyped directory (exit $rc)"; cat typo.out; }

# A run of 20 steps (16 per epoch) with checkpoints every 10, stopped inside epoch 2.
mpi 2 "${MLP[@]}" --steps 20 --checkpoint-dir ck --checkpoint-every 10 --eval >run.out 2>&1 ||
  { fail "the first run"; cat run.out; }
grep -q "epoch   2 ended after 4 of 16 steps" run.out && grep -q "epoch   1 done" run.out &&
  pass "an epoch the run stopped inside is not reported done" ||
  { fail "epoch lines"; grep epoch run.out; }

# --steps below the checkpoint's step: refused on every rank (it used to end at step 20
# with nothing trained and no evaluation, exit 0).
rc=0
mpi 2 "${MLP[@]}" --steps 15 --resume auto --checkpoint-dir ck >short.out 2>&1 || rc=$?
n=$(grep -c "the checkpoint is at step 20, past this run's end at step 15" short.out)
[ "$rc" != 0 ] && [ "$n" = 2 ] && pass "a checkpoint past the run's end is refused on both ranks" ||
  { fail "steps below the checkpoint (exit $rc, $n messages)"; cat short.out; }

# The same length again: nothing left to train, but the run still ends its epoch with the
# evaluation asked for (it printed "0 epoch(s)" and evaluated nothing).
rc=0
mpi 2 "${MLP[@]}" --steps 20 --eval --resume auto --checkpoint-dir ck --log-json end.jsonl \
  >end.out 2>&1 || rc=$?
[ "$rc" = 0 ] && grep -q "epoch   2 ended after 4 of 16 steps | train loss [0-9.]* | test loss" end.out &&
  python3 -c "
import json
recs = [json.loads(l) for l in open('end.jsonl')]
s = [r for r in recs if r['type'] == 'summary'][-1]
assert s['steps'] == 20 and s['epochs'] == 2 and s['test_accuracy'] is not None, s
r = [r for r in recs if r['type'] == 'resume']
assert len(r) == 1 and r[0]['step'] == 20 and r[0]['checkpoint'].endswith('step-00000020.ckpt'), r
" && pass "resumed at its last step: the epoch's evaluation runs, the log marks the resume" ||
  { fail "resume at the end (exit $rc)"; cat end.out; }

# A timeout after resuming names the step of the whole training (the Reducer counted from 0).
rc=0
DPRUN_FAULT_STALL=rank=1,step=25,seconds=8 mpi 2 "${MLP[@]}" --steps 30 --resume auto \
  --checkpoint-dir ck --timeout 2 >stall.out 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "step 25: bucket" stall.out && ! grep -q "step 5: bucket" stall.out &&
  pass "after a resume, a timeout names step 25" ||
  { fail "step in the timeout message (exit $rc)"; grep -E "error" stall.out | head -3; }

# --steps alone is the run's length, across a resume too: the default --epochs 10 (20 steps of
# 2 per epoch here) ended the first run at step 20 and left the resumed one nothing to do.
mpi 2 "${MLP[@]}" --batch-size 128 --steps 24 --checkpoint-dir len >len1.out 2>&1 &&
  mpi 2 "${MLP[@]}" --batch-size 128 --steps 30 --checkpoint-dir len --resume auto >len2.out 2>&1 &&
  grep -q "summary: 24 steps, 12 epoch(s)" len1.out && grep -q "resumed from .* (step 24," len2.out &&
  grep -q "summary: 30 steps, 15 epoch(s)" len2.out && grep -q "total_steps=30" len2.out &&
  pass "--steps alone: 24 steps, resumed to 30" ||
  { fail "--steps past 10 epochs, with a resume"; tail -3 len1.out len2.out; }

# A fresh start of --resume auto (no checkpoint) appends to the log like a resume: it writes
# the marker too, so that its steps 1, 2, 3 replace the earlier run's (they followed them,
# indistinguishable).
for d in fresh1 fresh2; do
  mpi 2 "${MLP[@]}" --steps 3 --checkpoint-dir $d --resume auto --log-json fresh.jsonl >$d.out 2>&1 ||
    { fail "fresh start in $d"; cat $d.out; }
done
python3 - <<'PY' && pass "a fresh start under --resume auto marks the log at step 0" ||
import json
recs = [json.loads(l) for l in open("fresh.jsonl")]
kinds = [r["type"] + (str(r["step"]) if r["type"] in ("resume", "step") else "") for r in recs]
run = ["resume0", "run", "step1", "step2", "step3", "checkpoint", "summary"]
assert kinds == run + run, kinds
assert all(r["checkpoint"] is None and r["purge_step"] == 1 for r in recs if r["type"] == "resume"), recs
PY
  fail "the log of two fresh starts under --resume auto"

# A resumed run records its own first steps: --trace had no span (steps <= 20 of the whole
# training) and --gemm-profile no file (step 3 of the whole training), both with exit 0.
mpi 2 "${MLP[@]}" --steps 24 --checkpoint-dir tr >tr1.out 2>&1 || { fail "trace: first run"; cat tr1.out; }
mpi 2 "${MLP[@]}" --steps 30 --checkpoint-dir tr --resume auto --trace tr.json --gemm-profile g.json \
  >tr2.out 2>&1 || { fail "trace: resumed run"; cat tr2.out; }
python3 - <<'PY' && pass "a resumed run's trace has spans of its steps 25-30, its gemm profile is written" ||
import json
spans = [e for e in json.load(open("tr.json"))["traceEvents"] if e.get("ph") == "X"]
assert len(spans) > 0, "no span"
assert {e["args"]["step"] for e in spans} == set(range(25, 31)), {e["args"]["step"] for e in spans}
assert json.load(open("g.json"))["gemms"], "no GEMM recorded"
PY
  fail "a resumed run's trace or gemm profile"
# Fewer steps than the profiled one: the last is profiled. None at all: said so.
mpi 2 "${MLP[@]}" --steps 1 --gemm-profile g1.json >g1.out 2>&1 && [ -s g1.json ] &&
  python3 -c "import json; assert json.load(open('g1.json'))['gemms']" &&
  pass "--steps 1 --gemm-profile writes the file" || { fail "--steps 1 --gemm-profile"; cat g1.out; }
mpi 2 "${MLP[@]}" --steps 30 --checkpoint-dir tr --resume auto --gemm-profile g0.json >g0.out 2>&1 &&
  [ ! -e g0.json ] && grep -q "gemm-profile g0.json: not written: this run trained no step" g0.out &&
  pass "a run that trains no step says that --gemm-profile was not written" ||
  { fail "--gemm-profile with nothing to train"; cat g0.out; }

# A checkpoint directory whose name holds a newline: rank 0 tells the others the path it
# resumed from, which must arrive whole (it was cut at the newline and the checkpoint read as
# damaged).
NL=$'two\nlines'
mpi 2 "${MLP[@]}" --steps 4 --checkpoint-dir "$NL" >nl1.out 2>&1 &&
  mpi 2 "${MLP[@]}" --steps 6 --checkpoint-dir "$NL" --resume auto >nl2.out 2>&1 &&
  grep -q "step-00000004.ckpt" nl2.out && pass "resume from a directory whose name holds a newline" ||
  { fail "resume from a directory whose name holds a newline"; cat nl1.out nl2.out; }

# A second run given a --checkpoint-dir that a live run writes fails on every rank before
# training, naming the holder; once the holder is gone the directory is free again.
"$DPRUN" "${MLP[@]}" --steps 100000000 --checkpoint-dir busy >holder.out 2>&1 &
holder=$!
for _ in $(seq 100); do grep -q "pid $holder," busy/.dprun.lock 2>/dev/null && break; sleep 0.1; done
rc=0
mpi 2 "${MLP[@]}" --steps 4 --checkpoint-dir busy --resume auto >busy.out 2>&1 || rc=$?
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
[ "$rc" != 0 ] && grep -q "rank 0\] --checkpoint-dir busy is in use by another run (host .* pid $holder," busy.out &&
  grep -q "rank 1\]" busy.out && ! grep -q "step-00000004" busy.out &&
  pass "a second run in a busy --checkpoint-dir fails on every rank, naming the holder" ||
  { fail "a second run in a busy --checkpoint-dir"; cat busy.out; }
# (The holder checkpointed on SIGTERM: a fresh start there warns that it replaces that.)
mpi 2 "${MLP[@]}" --steps 4 --checkpoint-dir busy >free.out 2>&1 &&
  grep -q "checkpoint-dir busy already holds 1 checkpoint(s) .* without --resume" free.out &&
  pass "the directory is free once its run ended; a fresh start there warns" ||
  { fail "directory still locked, or no warning"; cat free.out; }
# A checkpoint of an older dprun (commit 235d644, format version 1: tests/data/ckpt-v1/) resumes,
# with a note that another build wrote it, and continues its training bit for bit.
rc=0
"$DPRUN" --data synthetic:2000 --hidden 16 --batch-size 50 --steps 10 --epochs 0 -q \
  --resume "$V1/step-00000005.ckpt" --log-json v1.jsonl >v1.out 2>&1 || rc=$?
# The note needs a build that names itself ("0.1.0 (git ...)"); a build from a tree without
# git history and no DPRUN_BUILD_ID is "0.1.0", as the checkpoint says.
ver=$("$DPRUN" --version | cut -d' ' -f2-)
case "$ver" in
  *"("*) note="written by dprun 0.1.0, this is dprun $ver" ;;
  *) note="resumed from" ;;
esac
[ "$rc" = 0 ] && grep -qF "$note" v1.out &&
  python3 - "$V1/uninterrupted.jsonl" v1.jsonl <<'PY' &&
import json, sys
old, new = ({r["step"]: r["loss"] for r in map(json.loads, open(p)) if r["type"] == "step"}
            for p in sys.argv[1:3])
assert sorted(new) == [6, 7, 8, 9, 10], sorted(new)
assert all(new[s] == old[s] for s in new), [(s, old[s], new[s]) for s in new]
PY
  pass "an older dprun's checkpoint (format 1) resumes with a note, steps 6-10 bit for bit" ||
  { fail "resuming tests/data/ckpt-v1 (exit $rc)"; cat v1.out; }
finish
