#!/usr/bin/env bash
# dprun end to end on a small generated IDX data set: 2 ranks, JSON log, parameter dump,
# trace; 1 rank without mpirun; --config; --help.
source "$(dirname "$0")/lib.sh" "$@"

"$MAKE_IDX" "$WORK/data" --train 1200 --test 300 --gzip --seed 3 >/dev/null || { echo "make_idx failed"; exit 1; }

ARGS=(--data "idx:$WORK/data" --hidden 32 --epochs 2 --batch-size 50 --lr 0.05 --momentum 0.9
      --first-bucket-mb 0.001 --bucket-cap-mb 0.05 --eval --log-interval 5)

if mpi 2 "${ARGS[@]}" --log-json "$WORK/run.jsonl" --dump-params "$WORK/p2.bin" --trace "$WORK/trace.json" \
    >"$WORK/out.txt" 2>"$WORK/err.txt"; then
  pass "2 ranks exit 0"
else
  fail "2 ranks exited non-zero"; cat "$WORK/out.txt" "$WORK/err.txt"
fi
grep -q "world size 2" "$WORK/out.txt" && pass "header names the world size" || fail "no header"
grep -q "test accuracy" "$WORK/out.txt" && pass "summary has test accuracy" || fail "no test accuracy"

python3 - "$WORK" <<'PY' && pass "JSON log, dump and trace are well formed" || fail "JSON log / dump / trace check"
import json, os, sys
work = sys.argv[1]
recs = [json.loads(l) for l in open(f"{work}/run.jsonl")]
# The run record first: the header's facts as fields (2 ranks x 50 = global batch 100).
run = recs[0]
assert run["type"] == "run" and run["mode"] == "ddp" and run["world_size"] == 2, run
assert run["batch_size"] == 50 and run["global_batch"] == 100 and run["total_steps"] == 24, run
assert run["model"] == "mlp" and run["model_options"] == {"hidden": "32"} and run["lr"] == 0.05, run
assert run["steps_per_epoch"] == 12 and run["precision"] == "fp32" and run["backend"] == "mpi", run
steps = [r for r in recs if r["type"] == "step"]
# 1200 samples / 2 ranks / 50 per batch = 12 steps per epoch, 2 epochs.
assert len(steps) == 24, len(steps)
keys = {"step", "epoch", "loss", "grad_norm", "samples_per_s", "forward_ms", "backward_ms",
        "optimizer_ms", "comm_ms", "exposed_comm_ms", "overlap"}
assert all(r["grad_norm"] > 0 for r in steps), [r["grad_norm"] for r in steps]
assert all(keys <= r.keys() for r in steps), steps[0].keys()
assert [r["step"] for r in steps] == list(range(1, 25))
assert steps[-1]["loss"] < steps[0]["loss"], (steps[0]["loss"], steps[-1]["loss"])
evals = [r for r in recs if r["type"] == "eval"]
assert len(evals) == 2 and evals[-1]["test_samples"] == 300, evals
assert recs[-1]["type"] == "summary" and recs[-1]["test_loss"] == evals[-1]["test_loss"], recs[-1]
assert "tokens_per_s" not in recs[-1], recs[-1]  # not a language model, as in the step records
# 784-32-10 MLP: 784*32 + 32 + 32*10 + 10 floats.
assert os.path.getsize(f"{work}/p2.bin") == 4 * (784 * 32 + 32 + 32 * 10 + 10)
trace = json.load(open(f"{work}/trace.json"))["traceEvents"]
spans = [e for e in trace if e.get("ph") == "X"]
assert {e["pid"] for e in spans} == {0, 1}
assert any(e["name"].startswith("allreduce bucket") for e in spans)
# A bucket's ready time and backward's end are on the trace's clock: no later than the
# all-reduce's start, inside that step's backward span (they were raw steady-clock times).
for e in spans:
    if not e["name"].startswith("allreduce bucket"):
        continue
    a = e["args"]
    bwd = [b for b in spans if b["name"] == "backward" and b["pid"] == e["pid"] and b["args"]["step"] == a["step"]][-1]
    assert bwd["ts"] - 1 <= a["ready_us"] <= e["ts"] + 1, (a, e["ts"], bwd["ts"])
    assert bwd["ts"] - 1 <= a["backward_end_us"] <= bwd["ts"] + bwd["dur"] + 1, (a, bwd)
PY

# The same run as world size 1, without any launcher.
if timeout 120 "$DPRUN" "${ARGS[@]}" --epochs 1 --quiet --dump-params "$WORK/p1.bin" >"$WORK/out1.txt" 2>&1; then
  pass "world size 1 without mpirun"
else
  fail "world size 1 without mpirun"; cat "$WORK/out1.txt"
fi

# --config FILE gives the same result as the same options on the command line.
cat >"$WORK/run.cfg" <<CFG
data = idx:$WORK/data
hidden = 32
epochs = 1
batch-size = 50
lr = 0.05
momentum = 0.9
quiet = true
CFG
mpi 2 --config "$WORK/run.cfg" --dump-params "$WORK/pc.bin" >/dev/null 2>&1
mpi 2 --data "idx:$WORK/data" --hidden 32 --epochs 1 --batch-size 50 --lr 0.05 --momentum 0.9 --quiet \
  --dump-params "$WORK/pcli.bin" >/dev/null 2>&1
cmp -s "$WORK/pc.bin" "$WORK/pcli.bin" && pass "--config equals the command line" || fail "--config differs"

# Same seed, same result: a second identical run is bit-identical.
mpi 2 --data "idx:$WORK/data" --hidden 32 --epochs 1 --batch-size 50 --lr 0.05 --momentum 0.9 --quiet \
  --dump-params "$WORK/pcli2.bin" >/dev/null 2>&1
cmp -s "$WORK/pcli.bin" "$WORK/pcli2.bin" && pass "deterministic" || fail "two identical runs differ"

# --num-workers fills batches with several threads: the same batches, so the same result.
mpi 2 "${ARGS[@]}" --quiet --num-workers 3 --dump-params "$WORK/pw.bin" >/dev/null 2>&1
cmp -s "$WORK/p2.bin" "$WORK/pw.bin" && pass "--num-workers 3 gives the same parameters" ||
  fail "--num-workers 3 changes the result"

# bf16 mixed precision: the same run learns as well as float32 (final losses within 5%).
if mpi 2 "${ARGS[@]}" --precision bf16 --log-json "$WORK/bf16.jsonl" >"$WORK/outb.txt" 2>&1; then
  pass "--precision bf16 exits 0"
else
  fail "--precision bf16 exited non-zero"; cat "$WORK/outb.txt"
fi
grep -q "bf16 mixed precision" "$WORK/outb.txt" && pass "header names the precision" ||
  fail "header does not name bf16 mixed precision"
# The bf16 and fp16 gradient compression hooks, over the shared-memory path and over MPI.
for hook in bf16 fp16; do
  for shm in "" --no-shm; do
    if mpi 2 "${ARGS[@]}" --comm-hook ${hook}_compress $shm --log-json "$WORK/$hook-hook$shm.jsonl" >"$WORK/outh.txt" 2>&1; then
      pass "--comm-hook ${hook}_compress $shm exits 0"
    else
      fail "--comm-hook ${hook}_compress $shm exited non-zero"; cat "$WORK/outh.txt"
    fi
  done
  grep -q "${hook}_compress" "$WORK/outh.txt" && pass "header names the $hook comm hook" ||
    fail "header does not name the $hook comm hook"
done
# Follow, but not equal: a run that silently stayed in float32 would pass the upper bound alone.
# Measured largest relative difference of a step's loss: bf16 2e-2, bf16-hook 1e-3, fp16-hook
# 3e-5; float32 itself (the same run again) is bit-identical.
python3 - "$WORK" <<'PY' && pass "bf16, bf16-hook and fp16-hook loss curves follow float32, rounded" || fail "a bf16/fp16 loss curve: not float32 up to rounding"
import json, sys
work = sys.argv[1]
def losses(f):
    return [r["loss"] for r in map(json.loads, open(f)) if r["type"] == "step"]
a = losses(f"{work}/run.jsonl")
for other in ("bf16", "bf16-hook", "bf16-hook--no-shm", "fp16-hook", "fp16-hook--no-shm"):
    b = losses(f"{work}/{other}.jsonl")
    assert len(a) == len(b) == 24, (other, len(a), len(b))
    assert abs(a[-1] - b[-1]) <= 0.05 * a[-1] + 0.01, (other, a[-1], b[-1])
    assert b[-1] < 0.7 * b[0], (other, b)
    apart = max(abs(p - q) / abs(p) for p, q in zip(a, b))
    assert apart > 1e-6, (other, "the same losses as float32", apart)
PY

# --steps alone is the run's length: the default --epochs 10 cut "--steps 200" to 100 steps (10
# per epoch here), the cosine schedule's end with it. Both given: whichever comes first.
timeout 120 "$DPRUN" --data synthetic:640 --hidden 16 --steps 200 --log-interval 1000 \
  >"$WORK/steps.txt" 2>&1
grep -q "summary: 200 steps, 20 epoch(s)" "$WORK/steps.txt" && grep -q "total_steps=200" "$WORK/steps.txt" &&
  grep -q "step    200/200" "$WORK/steps.txt" && pass "--steps 200 alone trains 200 steps" ||
  { fail "--steps 200 alone"; cat "$WORK/steps.txt"; }
timeout 120 "$DPRUN" --data synthetic:640 --hidden 16 --steps 200 --epochs 3 --log-interval 1000 \
  >"$WORK/steps3.txt" 2>&1
grep -q "summary: 30 steps, 3 epoch(s)" "$WORK/steps3.txt" && grep -q "total_steps=30" "$WORK/steps3.txt" &&
  pass "--steps 200 --epochs 3: the 3 epochs come first" || { fail "--steps with --epochs"; cat "$WORK/steps3.txt"; }

# Batch buffers hold no more rows than a rank's shard: --eval-batch-size 100000000 allocated
# 313 GB after training and aborted the job. A training batch above the shard trains on the
# shard (one smaller batch per epoch), as PyTorch's DataLoader does.
mpi 2 --data synthetic:640 --hidden 16 --steps 2 --eval --eval-batch-size 100000000 \
  >"$WORK/evalbig.txt" 2>&1 && grep -q "test accuracy .*(2000 samples)" "$WORK/evalbig.txt" &&
  pass "--eval-batch-size above the shard: one batch of the shard" ||
  { fail "--eval-batch-size 100000000"; tail -5 "$WORK/evalbig.txt"; }
mpi 2 --data synthetic:640 --hidden 16 --steps 2 --batch-size 100000000 >"$WORK/trainbig.txt" 2>&1 &&
  grep -q "summary: 2 steps, 2 epoch(s)" "$WORK/trainbig.txt" &&
  grep -qF "batch      320 (--batch-size 100000000: a rank holds 320 samples) per rank x 1 micro-batch(es) x 2 rank(s) = 640 global" "$WORK/trainbig.txt" &&
  pass "--batch-size above the shard: one batch of the shard per epoch, and the header says so" ||
  { fail "--batch-size 100000000"; grep batch "$WORK/trainbig.txt"; tail -5 "$WORK/trainbig.txt"; }
timeout 120 "$DPRUN" --mode dp --replicas 2 --data synthetic:640 --hidden 16 --steps 2 \
  --batch-size 100000000 >"$WORK/trainbigdp.txt" 2>&1 &&
  grep -qF "batch      320 (--batch-size 100000000: a replica holds 320 samples) per replica x 1 micro-batch(es) x 2 replica(s) = 640 global" "$WORK/trainbigdp.txt" &&
  pass "--mode dp, --batch-size above the shard: the header shows the batch in use" ||
  { fail "--mode dp --batch-size 100000000"; grep batch "$WORK/trainbigdp.txt"; tail -5 "$WORK/trainbigdp.txt"; }

# samples/s counts the samples a step trained: an epoch's last batch is short (100 samples in
# batches of 32 leave 4; 2 ranks x 50 leave 2 x 18), and it was counted as a full one. Both
# modes; rate x time gives the step's global batch back.
timeout 120 "$DPRUN" --data synthetic:100 --hidden 16 --batch-size 32 --epochs 1 -q \
  --log-json "$WORK/short1.jsonl" >/dev/null 2>&1
mpi 2 --data synthetic:100 --hidden 16 --batch-size 16 --epochs 1 -q --log-json "$WORK/short2.jsonl" >/dev/null 2>&1
timeout 120 "$DPRUN" --mode dp --replicas 2 --data synthetic:100 --hidden 16 --batch-size 16 --epochs 1 -q \
  --log-json "$WORK/shortdp.jsonl" >/dev/null 2>&1
python3 - "$WORK" <<'PY' && pass "samples/s counts an epoch's short last batch as it is" || fail "samples/s of a short batch"
import json, sys
for name, want in (("short1", [32, 32, 32, 4]), ("short2", [32, 32, 32, 4]), ("shortdp", [32, 32, 32, 4])):
    steps = [r for r in map(json.loads, open(f"{sys.argv[1]}/{name}.jsonl")) if r["type"] == "step"]
    got = [r["samples_per_s"] * r["step_ms"] / 1000 for r in steps]
    print(name, [round(g, 2) for g in got])
    assert len(got) == len(want) and all(abs(g - w) < 0.01 * w for g, w in zip(got, want)), (name, got)
PY

# An accumulated step with the epoch's short last batch (500 samples a rank in micro-batches
# of 16 end with 16 + 4 rows) logs the loss of the larger batch's last 20 rows, in DDP and
# in --mode dp: weighting each micro-batch by 1/K logged 2.0915 instead of 2.0655.
ACC=(--data synthetic:1000 --steps 16 --lr-schedule constant --quiet)
mpi 2 "${ACC[@]}" --batch-size 32 --log-json "$WORK/acc32.jsonl" >/dev/null 2>&1 &&
  mpi 2 "${ACC[@]}" --batch-size 16 --grad-accum 2 --log-json "$WORK/acc16.jsonl" >/dev/null 2>&1 &&
  "$DPRUN" --mode dp --replicas 2 "${ACC[@]}" --batch-size 16 --grad-accum 2 \
    --log-json "$WORK/accdp.jsonl" >/dev/null 2>&1 || fail "grad-accum runs exited non-zero"
python3 - "$WORK" <<'PY' && pass "a short last micro-batch weighs by its rows" || fail "short last micro-batch"
import json, sys
def last_loss(name):
    steps = [json.loads(l) for l in open(f"{sys.argv[1]}/{name}.jsonl")]
    steps = [r for r in steps if r["type"] == "step"]
    assert len(steps) == 16, len(steps)
    return steps[-1]["loss"]
ref = last_loss("acc32")
for name in ("acc16", "accdp"):
    assert abs(last_loss(name) - ref) < 1e-5, (name, last_loss(name), ref)
PY

# --steps ending the run inside an epoch: the summary's train loss is that epoch's mean over
# the steps it ran, and says so (it read "last epoch mean", which README promised to be a
# finished epoch's).
"$DPRUN" --data "idx:$WORK/data" --hidden 16 --batch-size 50 --steps 5 --log-json "$WORK/s5.jsonl" \
  >"$WORK/s5.txt" 2>&1 || fail "--steps 5 run"
grep -q "train loss      [0-9.]* (epoch 1's mean over the 5 of its 24 steps run)" "$WORK/s5.txt" &&
  python3 -c "import json,sys; s=[json.loads(l) for l in open(sys.argv[1])][-1]; assert s['type']=='summary' and s['train_loss_steps']==5, s" "$WORK/s5.jsonl" &&
  pass "a run ended inside an epoch names the steps its train loss is over" ||
  { fail "partial epoch's train loss"; cat "$WORK/s5.txt"; }

# The buckets rebuilt after the first step (in the order gradients arrived) are said, with the
# layout the later steps use: the header alone showed 4 buckets where steps 2.. ran 5.
mpi 2 --hidden 1024,1024 --data synthetic:4000 --steps 3 --batch-size 64 --bucket-cap-mb 1 \
  --first-bucket-mb 0.25 --trace "$WORK/rb.json" >"$WORK/rb.txt" 2>&1 || fail "rebuild run"
python3 - "$WORK" <<'PY' && pass "the rebuilt bucket layout is said, as the trace shows it" || { fail "rebuilt layout"; cat "$WORK/rb.txt"; }
import json, re, sys
work = sys.argv[1]
out = open(f"{work}/rb.txt").read()
m = re.search(r"buckets rebuilt from step 2 in the order the gradients arrived: (\d+) buckets", out)
assert m, out
t = json.load(open(f"{work}/rb.json"))["traceEvents"]
n = [e for e in t if e.get("ph") == "X" and e["name"].startswith("allreduce") and e["pid"] == 0 and e["args"]["step"] == 2]
assert int(m.group(1)) == len(n), (m.group(1), len(n))
PY

# One bucket, ready only when backward's last gradient is: nothing can hide its all-reduce.
# On one core the communication thread ran it while the training thread waited for the core,
# before backward returned, and the wall clock counted it as hidden (overlap 98-100%).
if command -v taskset >/dev/null && taskset -c 0 true 2>/dev/null; then
  taskset -c 0 "$DPRUN" --data "idx:$WORK/data" --hidden 256,128 --batch-size 50 --steps 40 \
    >"$WORK/one.txt" 2>&1 || fail "one-core run"
  ov=$(sed -n 's/.*communication.*overlap *\([0-9]*\)%.*/\1/p' "$WORK/one.txt")
  # The first step's order rebuilds the one bucket with the same members: nothing to say.
  grep -q " #0: .*\[fc3.bias .. fc1.weight\]" "$WORK/one.txt" && [ -n "$ov" ] && [ "$ov" -lt 50 ] &&
    ! grep -q "buckets rebuilt" "$WORK/one.txt" &&
    pass "one bucket on one core: overlap ${ov}% (nothing to hide behind), no rebuild said" ||
    { fail "one bucket on one core: overlap '${ov}'%"; cat "$WORK/one.txt"; }
fi

# GEMM threads: without OPENBLAS_NUM_THREADS, the ranks of a node share the CPUs of their
# affinity masks (--oversubscribe binds no rank to its own cores: unchecked, each started one
# OpenBLAS thread per CPU); with it, the user's count.
grep -q "rank 1: .*cpu (OpenBLAS .*, 1 thread: as set in the environment)" "$WORK/out.txt" &&
  pass "header: the GEMM threads the user set" || { fail "header: GEMM threads"; grep "rank 1:" "$WORK/out.txt"; }
env -u OPENBLAS_NUM_THREADS -u OMP_NUM_THREADS -u GOTO_NUM_THREADS timeout 120 "$MPIEXEC" \
  --allow-run-as-root --oversubscribe -np 4 "$DPRUN" --data "idx:$WORK/data" --hidden 32 \
  --batch-size 50 --steps 2 >"$WORK/threads.txt" 2>&1 || fail "4 ranks without OPENBLAS_NUM_THREADS"
python3 - "$WORK/threads.txt" <<'PY' && pass "4 ranks share the node's CPUs for their GEMMs" ||
import re, sys
lines = re.findall(r"rank (\d): .*cpu \(OpenBLAS .*, (\d+) threads?: (\d+) CPU\(s\) in this "
                   r"rank's affinity mask, (\d+) rank\(s\) on this node\)", open(sys.argv[1]).read())
assert sorted(int(l[0]) for l in lines) == [0, 1, 2, 3], lines
for _, threads, cpus, ranks in lines:
    assert int(ranks) == 4 and int(threads) == max(1, int(cpus) // 4), (threads, cpus, ranks)
PY
  { fail "GEMM threads of 4 ranks"; cat "$WORK/threads.txt"; }

# Moving 147 MB of parameters into the arena holds no more memory at its peak than training
# without one (it held both blocks beside every per-parameter tensor: 733 MiB against 594).
peak() { sed -n 's/.*peak memory *\([0-9]*\) MiB.*/\1/p' "$1"; }
"$DPRUN" --data synthetic:2000 --hidden 4096,4096,4096 --batch-size 64 --steps 3 >"$WORK/arena.txt" 2>&1 &&
  "$DPRUN" --data synthetic:2000 --hidden 4096,4096,4096 --batch-size 64 --steps 3 --no-param-arena \
    >"$WORK/noarena.txt" 2>&1 || fail "the 147 MB mlp runs"
a=$(peak "$WORK/arena.txt") n=$(peak "$WORK/noarena.txt")
[ -n "$a" ] && [ -n "$n" ] && [ "$a" -le $((n * 105 / 100)) ] &&
  pass "the parameter arena's peak ($a MiB) is within 5% of no arena's ($n MiB)" ||
  { fail "arena peak '$a' MiB against '$n' MiB without"; tail -3 "$WORK/arena.txt"; }

# --help documents every option.
"$DPRUN" --help >"$WORK/help.txt"
for opt in --model --hidden --data --epochs --steps --batch-size --optimizer --lr --momentum --eval \
           --log-json --dump-params --seed --first-bucket-mb --bucket-cap-mb --no-overlap --grad-accum \
           --config --device --backend --allow-device-sharing --timeout --trace --version \
           --precision --comm-hook --num-workers; do
  grep -q -- "$opt" "$WORK/help.txt" || fail "--help does not mention $opt"
done
"$DPRUN" --version | grep -q "^dprun " && pass "--version" || fail "--version"
# Their text is the result: a full disk is an error; a reader that stops early is not.
rc=0
"$DPRUN" --version >/dev/full 2>"$WORK/vfull.err" || rc=$?
[ "$rc" = 1 ] && grep -q "writing the version failed: No space left on device" "$WORK/vfull.err" &&
  pass "--version onto a full disk: exit 1, named" || { fail "--version >/dev/full (exit $rc)"; cat "$WORK/vfull.err"; }
"$DPRUN" --help 2>"$WORK/hpipe.err" | head -1 >/dev/null
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] && [ ! -s "$WORK/hpipe.err" ] && pass "--help | head -1: exit 0, no error" ||
  { fail "--help | head -1 (exit $rc)"; cat "$WORK/hpipe.err"; }

# stdout into a pipe that closes (`| head -1`, or a `| tee` that a Ctrl-C ended): SIGPIPE
# killed the run (exit 141), before the checkpoint its stop had promised. Now the lost output
# is ignored and the run ends as it would have (400 steps: output long after head is gone).
"$DPRUN" --data synthetic:2000 --hidden 16 --steps 400 --log-interval 1 --checkpoint-dir "$WORK/pipeck" \
  2>"$WORK/pipe.err" | head -1 >"$WORK/head.out"
rc=${PIPESTATUS[0]}
[ "$rc" = 0 ] && [ -f "$WORK/pipeck/step-00000400.ckpt" ] && [ -s "$WORK/head.out" ] &&
  pass "stdout closed under the run (| head -1): it trains on to step 400, exit 0" ||
  { fail "| head -1: exit $rc"; ls "$WORK/pipeck"; cat "$WORK/pipe.err"; }
finish
