#!/usr/bin/env bash
# --mode dp (torch.nn.DataParallel in one process) against DDP (mpirun -np N) on the same
# model, data and seed: the final parameters and buffers (--dump-params) are bit-identical
# (cmp), every step's loss is the same number, and evaluation agrees. DataParallel averages the
# gradients in the order and rounding of dprun's all-reduce, so nothing less than equality is
# accepted. Then what --mode dp refuses, and why.
source "$(dirname "$0")/lib.sh" "$@"
cd "$WORK" || exit 1

dp_run() {  # dp_run N ARGS...: one process, N replicas (a hang fails the test)
  local n=$1
  shift
  timeout 120 "$DPRUN" --mode dp --replicas "$n" "$@"
}

# same NAME N ARGS...: DP with N replicas and DDP with N ranks end equal, step for step.
same() {
  local name=$1 n=$2
  shift 2
  if ! dp_run "$n" "$@" --dump-params "$name.dp" --log-json "$name.dp.jsonl" >"$name.dp.out" 2>&1; then
    fail "$name: --mode dp failed"
    tail -5 "$name.dp.out"
    return
  fi
  if ! mpi "$n" "$@" --dump-params "$name.ddp" --log-json "$name.ddp.jsonl" >"$name.ddp.out" 2>&1; then
    fail "$name: mpirun -np $n failed"
    tail -5 "$name.ddp.out"
    return
  fi
  if cmp -s "$name.dp" "$name.ddp"; then
    pass "$name: --mode dp --replicas $n == mpirun -np $n, bit-identical ($(stat -c %s "$name.dp") bytes)"
  else
    fail "$name: the final parameters differ"
    python3 -c "
import array
a, b = array.array('f'), array.array('f')
a.frombytes(open('$name.dp', 'rb').read()); b.frombytes(open('$name.ddp', 'rb').read())
d = [abs(x - y) / max(1.0, abs(y)) for x, y in zip(a, b) if x != y]
print(f'  {len(d)} of {len(b)} values differ, max rel diff {max(d, default=0):.3g}')"
  fi
  # Every step's logged loss (the mean over the replicas / ranks) and every evaluation.
  python3 - "$name.dp.jsonl" "$name.ddp.jsonl" <<'EOF' && pass "$name: every step's loss and gradient norm equal, evaluation equal" || fail "$name: losses or evaluation differ"
import json, math, sys
def records(path, kind):
    return [r for r in map(json.loads, open(path)) if r["type"] == kind]
dp, ddp = (records(p, "step") for p in sys.argv[1:3])
assert len(dp) == len(ddp) > 0, (len(dp), len(ddp))
for a, b in zip(dp, ddp):
    assert a["step"] == b["step"] and a["loss"] == b["loss"], (a["step"], a["loss"], b["loss"])
    assert a["grad_norm"] == b["grad_norm"] > 0, (a["step"], a["grad_norm"], b["grad_norm"])
(rd,), (rb,) = (records(p, "run") for p in sys.argv[1:3])
assert (rd["mode"], rb["mode"]) == ("dp", "ddp") and rd["replicas"] == rb["world_size"], (rd, rb)
assert rd["global_batch"] == rb["global_batch"] and rd["total_steps"] == rb["total_steps"], (rd, rb)
ev_dp, ev_ddp = (records(p, "eval") for p in sys.argv[1:3])
assert len(ev_dp) == len(ev_ddp) > 0, (len(ev_dp), len(ev_ddp))
for a, b in zip(ev_dp, ev_ddp):
    # Exact counts; the loss is summed per replica in double (DDP: per rank, then a float32
    # all-reduce), so it may differ in the last float32 bits only.
    assert a["test_samples"] == b["test_samples"] and a["test_accuracy"] == b["test_accuracy"], (a, b)
    assert math.isclose(a["test_loss"], b["test_loss"], rel_tol=1e-5), (a, b)
EOF
}

# --- the models -------------------------------------------------------------------------------
MLP=(--data synthetic:2048 --model mlp --hidden 64,32 --epochs 2 --batch-size 32 --log-interval 1000
  --eval --eval-batches 4)
same mlp 2 "${MLP[@]}" --optimizer sgd --lr 0.05 --momentum 0.9
same mlp-adamw-4 4 "${MLP[@]}" --optimizer adamw --lr 1e-3 --weight-decay 0.1

# A cnn with BatchNorm: its running statistics are replica 0's under DataParallel, rank 0's
# (broadcast before every forward) under DDP; 3 replicas of batch 10 on 600 samples pad the
# epoch and end it with a smaller batch.
"$MAKE_IDX" idx --train 600 --test 100 --seed 3 --noise 60 >/dev/null || fail "make_idx"
CNN=(--model cnn --channels 4,8 --fc-hidden 32 --data idx:idx --epochs 2 --log-interval 1000 --eval)
same cnn 2 "${CNN[@]}" --batch-size 16
same cnn-3-bf16 3 "${CNN[@]}" --batch-size 10 --precision bf16

# --on-nonfinite skip: a huge learning rate makes every step after the first non-finite. The
# skipped steps' forwards moved replica 0's BatchNorm statistics; both modes put them back
# (DataParallel kept them and copied them to every replica), so the dumps, buffers included,
# stay equal.
for mode in dp ddp; do
  if [ $mode = dp ]; then run=(dp_run 2); else run=(mpi 2); fi
  "${run[@]}" "${CNN[@]}" --batch-size 16 --steps 4 --lr 1e18 --on-nonfinite skip \
    --dump-params "skip.$mode" --log-json "skip.$mode.jsonl" >"skip.$mode.out" 2>&1 ||
    { fail "skip: --mode $mode failed"; tail -3 "skip.$mode.out"; }
done
python3 - <<'EOF2' && pass "skip: 3 steps skipped in both modes, buffers put back, dumps equal" || fail "skip: DataParallel and DDP differ after skipped steps"
import json
for m in ("dp", "ddp"):
    s = [r for r in map(json.loads, open(f"skip.{m}.jsonl")) if r["type"] == "summary"][-1]
    assert s["skipped_steps"] == 3, (m, s["skipped_steps"])
a, b = open("skip.dp", "rb").read(), open("skip.ddp", "rb").read()
assert a == b, "the dumps differ (a skipped step's BatchNorm statistics kept?)"
EOF2

# The gpt: tied embedding, 2 micro-batches per step, gradient clipping.
python3 -c "
import random
rng = random.Random(2); w = 'the cat sat on a mat and the dog ran to the red door'.split()
open('c.txt', 'w').write(''.join(' '.join(rng.choice(w) for _ in range(10)) + '.\\n' for i in range(300)))"
"$DPRUN" prepare-text --input c.txt --output t.bin --val-output v.bin --val-fraction 0.1 >/dev/null 2>&1 ||
  fail "prepare-text"
same gpt 2 --model gpt --layers 2 --heads 2 --embed 32 --context 32 --data tokens:t.bin \
  --val-data tokens:v.bin --batch-size 4 --grad-accum 2 --steps 30 --clip-grad-norm 1 \
  --eval-every 15 --eval-batches 2 --log-interval 1000
# Both modes report a language model's evaluation over tokens, with the perplexity (--mode dp
# said "test accuracy ... samples" for the same tokens).
for f in gpt.dp.out gpt.ddp.out; do
  grep -q "validation loss [0-9.]* nats/token (perplexity [0-9.]*), next-token accuracy [0-9.]* ([0-9]* tokens)" "$f" ||
    { fail "$f: no validation summary over tokens"; grep -E "accuracy" "$f"; }
  # The header shows all of the update: the gpt's default decay mask and the clipping.
  grep -q "^optimizer  AdamW(.*weight_decay=0.1, no decay on 18 of 28 parameters.*gradients clipped at total norm 1" "$f" ||
    { fail "$f: the optimizer line lacks the decay mask or the clipping"; grep "^optimizer" "$f"; }
done

# The comparison is not vacuous: the same per-replica batch on 1 rank trains differently.
mpi 1 "${MLP[@]}" --dump-params one.ddp >one.out 2>&1 || fail "1 rank"
cmp -s mlp.dp one.ddp && fail "2 replicas end equal to 1 rank: the comparison sees nothing" ||
  pass "2 replicas differ from 1 rank of the same batch (the comparison can fail)"

# --- what it prints ---------------------------------------------------------------------------
# 2048 samples / 64 per step = 32 steps per epoch, 2 epochs: the breakdown leaves out the
# first 5 (warm-up), the throughput does not, and the line says so.
grep -q "replica 0 extra" mlp.dp.out && grep -q "2 replica(s) in one process" mlp.dp.out &&
  grep -q "^  per step *[0-9.]* ms (mean of steps 6-64):" mlp.dp.out &&
  pass "header and summary name the replicas, replica 0's extra work and the steps averaged" ||
  { fail "dp output"; cat mlp.dp.out; }
python3 -c "
import json
s = [r for r in map(json.loads, open('mlp.dp.jsonl')) if r['type'] == 'step'][-1]
for k in ['scatter_ms', 'replicate_ms', 'parallel_ms', 'gather_ms', 'optimizer_ms', 'extra_ms']:
    assert s[k] >= 0, k
assert abs(s['extra_ms'] - s['scatter_ms'] - s['replicate_ms'] - s['gather_ms']) < 1e-9
" && pass "JSON steps carry scatter/replicate/parallel/gather/update times" || fail "dp JSON step fields"

# --- refused ----------------------------------------------------------------------------------
refused() {  # refused WHAT PATTERN CMD...: exits 1 with an error matching PATTERN
  local what=$1 pattern=$2
  shift 2
  local rc=0
  "$@" >ref.out 2>&1 || rc=$?
  if [ "$rc" = 1 ] && grep -q "dprun: error: .*$pattern" ref.out; then
    pass "refused: $what"
  else
    fail "$what: exit $rc"
    cat ref.out
  fi
}
refused "--mode dp under mpirun -np 2 (every process says so)" "ONE process, but the launcher started 2" \
  mpi 2 --mode dp --replicas 2 "${MLP[@]}"
[ "$(grep -c 'dprun: error' ref.out)" = 2 ] || fail "not every process reported the refusal"
refused "--replicas with --mode ddp" "needs --mode dp" "$DPRUN" --replicas 2 "${MLP[@]}"
refused "an unknown mode" "unknown mode" "$DPRUN" --mode ddpp "${MLP[@]}"
refused "--replicas -1" "replicas -1" "$DPRUN" --mode dp --replicas -1 "${MLP[@]}"
refused "--sync-batchnorm" "sync-batchnorm is not available with --mode dp" dp_run 2 "${CNN[@]}" --sync-batchnorm
refused "--checkpoint-dir" "checkpoints are written by --mode ddp only" dp_run 2 "${MLP[@]}" --checkpoint-dir ck
refused "--backend mpi" "no collectives" dp_run 2 "${MLP[@]}" --backend mpi
refused "more replicas than samples" "--data synthetic:4 holds 4 samples, fewer than the 8 replicas" dp_run 8 --data synthetic:4 --steps 1
refused "--device cuda without a GPU" "device cuda" dp_run 2 "${MLP[@]}" --device cuda
# DDP's machinery, accepted and ignored before: no buckets, no profile, no collectives.
refused "--bucket-cap-mb auto" "--first-bucket-mb/--bucket-cap-mb is not available with --mode dp" \
  dp_run 2 "${MLP[@]}" --bucket-cap-mb auto
refused "--profile-out" "--profile-out is not available with --mode dp" dp_run 2 "${MLP[@]}" --profile-out p.json
refused "--allreduce-algo flat" "--allreduce-algo is not available" dp_run 2 "${MLP[@]}" --allreduce-algo flat
refused "--find-unused-parameters" "--find-unused-parameters is not available" dp_run 2 "${MLP[@]}" \
  --find-unused-parameters
refused "--timeout" "--timeout is not available" dp_run 2 "${MLP[@]}" --timeout 5

finish
