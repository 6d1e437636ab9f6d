#!/usr/bin/env bash
# --on-nonfinite: a NaN in one rank's inputs at step 5 makes the averaged gradient non-finite
# on every rank. abort (the default) names the step and the parameter on every rank and exits
# non-zero; skip leaves that step without an update and trains on.
source "$(dirname "$0")/lib.sh" "$@"
cd "$WORK" || exit 1
MLP=(--data synthetic:2048 --model mlp --hidden 64 --epochs 1 --batch-size 32 --log-interval 1000)

rc=0
DPRUN_FAULT_NAN=rank=1,step=5 mpi 2 "${MLP[@]}" >abort.out 2>&1 || rc=$?
n=$(grep -c "step 5: the averaged gradient of 'fc1.weight' has a non-finite value (nan)" abort.out)
[ "$rc" != 0 ] && [ "$n" = 2 ] && pass "abort: exit $rc, both ranks name step 5 and fc1.weight" ||
  { fail "abort (exit $rc, $n messages)"; cat abort.out; }

# A run that diverges after the traced steps still has its trace: it is written when step 20
# ends, not when the run does.
rc=0
DPRUN_FAULT_NAN=rank=1,step=25 mpi 2 "${MLP[@]}" --trace late.json >late.out 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -q "step 25: the averaged gradient" late.out &&
  python3 -c '
import json, sys
spans = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("ph") == "X"]
assert {e["pid"] for e in spans} == {0, 1}, spans[:2]
assert sorted({e["args"]["step"] for e in spans}) == list(range(1, 21))' late.json &&
  pass "abort at step 25: exit $rc, the trace of steps 1-20 was written" ||
  { fail "no trace from a run that failed after step 20 (exit $rc)"; tail -5 late.out; ls; }

rc=0
DPRUN_FAULT_NAN=rank=1,step=5 mpi 2 "${MLP[@]}" --on-nonfinite skip --log-json skip.jsonl \
  --dump-params skip.bin --log-interval 4 >skip.out 2>&1 || rc=$?
[ "$rc" = 0 ] && grep -q "step 5: skipped (no update)" skip.out && pass "skip: step 5 skipped, exit 0" ||
  { fail "skip (exit $rc)"; cat skip.out; }
# The progress line of steps 5-8 is the mean of the 3 that updated (it said "loss nan").
grep -q "step      8/32 | loss [0-9][0-9.]* (1 skipped) |" skip.out && ! grep -q "loss nan" skip.out &&
  pass "skip: the progress line leaves the skipped step out and says so" ||
  { fail "skip: progress line"; grep "step " skip.out; }
python3 - <<'PY' && pass "skip: 32 steps, 1 skipped (marked in the log), parameters finite" || fail "skip summary or parameters"
import json, math, struct
recs = [json.loads(l) for l in open("skip.jsonl")]
s = [r for r in recs if r["type"] == "summary"][-1]
assert s["steps"] == 32 and s["skipped_steps"] == 1, s
marked = [r["step"] for r in recs if r["type"] == "step" and r.get("skipped")]
assert marked == [5], marked
b = open("skip.bin", "rb").read()
assert all(math.isfinite(v) for v in struct.unpack(f"{len(b)//4}f", b))
PY

# The cnn has buffers: BatchNorm's running statistics moved in the skipped step's forward
# (with the NaN batch, to NaN). Skipping puts them back, num_batches_tracked included. The
# statistics are rank 0's (broadcast before every forward), so the NaN goes to rank 0.
rc=0
DPRUN_FAULT_NAN=rank=0,step=3 mpi 2 --model cnn --channels 2,4 --fc-hidden 8 --batch-size 8 \
  --steps 6 --data "idx:/usr/share/datasets/fashion-mnist" --on-nonfinite skip \
  --dump-params cnn.bin >cnn.out 2>&1 || rc=$?
[ "$rc" = 0 ] && grep -q "step 3: skipped (no update)" cnn.out ||
  { fail "cnn skip (exit $rc)"; cat cnn.out; }
python3 - <<'PY' && pass "skip: BatchNorm statistics restored (finite, 5 batches tracked of 6)" ||
import math, struct
b = open("cnn.bin", "rb").read()
v = struct.unpack(f"{len(b)//4}f", b)
bad = [i for i, x in enumerate(v) if not math.isfinite(x)]
assert not bad, f"{len(bad)} non-finite values, first at {bad[0]}"
assert v[-1] == 5.0, f"bn2.num_batches_tracked = {v[-1]}"
PY
  fail "cnn buffers after a skipped step"

# The count of skipped steps travels in the checkpoint: a resumed run's summary includes them.
DPRUN_FAULT_NAN=rank=1,step=5 mpi 2 "${MLP[@]}" --steps 8 --on-nonfinite skip --checkpoint-dir ck \
  --log-json first.jsonl >first.out 2>&1 || { fail "skip before a checkpoint"; cat first.out; }
mpi 2 "${MLP[@]}" --steps 12 --on-nonfinite skip --checkpoint-dir ck --resume auto \
  --log-json resumed.jsonl >resumed.out 2>&1 || { fail "resume after a skip"; cat resumed.out; }
python3 -c "
import json
s = [json.loads(l) for l in open('resumed.jsonl') if '\"summary\"' in l][-1]
assert s['steps'] == 12 and s['skipped_steps'] == 1, s
" && pass "skipped steps counted across a resume" || fail "skipped steps after a resume"
# The epoch's training loss is the mean over the steps that updated (step 5's NaN left out);
# a resumed run's includes the steps before its checkpoint (the runs' schedules differ: --steps).
DPRUN_FAULT_NAN=rank=1,step=5 mpi 2 "${MLP[@]}" --steps 12 --on-nonfinite skip \
  --log-json whole.jsonl >whole.out 2>&1 || { fail "12 steps with a skip"; cat whole.out; }
python3 - <<'PY' && pass "epoch loss: mean of the 11 updating steps, across a resume too" ||
import json, math
def recs(p, t): return [r for r in map(json.loads, open(p)) if r["type"] == t]
steps = recs("whole.jsonl", "step")
assert len(steps) == 12 and steps[4]["loss"] is None, [r["loss"] for r in steps]
want = sum(r["loss"] for r in steps if r["step"] != 5) / 11
got = recs("whole.jsonl", "summary")[-1]["train_loss"]
assert got is not None and math.isclose(got, want, rel_tol=1e-6), (got, want)
both = recs("first.jsonl", "step") + recs("resumed.jsonl", "step")
assert [r["step"] for r in both] == list(range(1, 13)), [r["step"] for r in both]
want = sum(r["loss"] for r in both if r["step"] != 5) / 11
resumed = recs("resumed.jsonl", "summary")[-1]["train_loss"]
assert resumed is not None and math.isclose(resumed, want, rel_tol=1e-6), (resumed, want)
PY
  fail "epoch loss with a skipped step (NaN, or not the mean of the updating steps)"
finish
