#!/usr/bin/env bash
# The models users run, end to end through the dprun binary: the cnn on MNIST-format and
# CIFAR-10-format files (generated here), the gpt on text prepared by `dprun prepare-text`,
# each learning well beyond chance; BatchNorm buffers in the dump and identical on every
# rank; and the inputs that do not fit a model, refused on every rank.
source "$(dirname "$0")/lib.sh" "$@"
cd "$WORK"

# json_last FILE TYPE KEY: KEY of the last record of TYPE in a --log-json file.
json_last() {
  python3 -c "
import json,sys
recs=[json.loads(l) for l in open('$1') if l.strip()]
print([r for r in recs if r['type']=='$2'][-1]['$3'])"
}

# --- cnn on MNIST-format images -----------------------------------------------------------
"$MAKE_IDX" "$WORK/idx" --train 1200 --test 300 --seed 3 --noise 60 >/dev/null || fail "make_idx"
CNN=(--model cnn --channels 4,8 --fc-hidden 32 --data "idx:$WORK/idx" --batch-size 16 --optimizer sgd
  --lr 0.05 --momentum 0.9 --seed 1)
if mpi 2 "${CNN[@]}" --epochs 2 --eval --log-json cnn.jsonl --dump-params cnn.bin >cnn.out 2>&1; then
  pass "cnn trains on images under 2 ranks"
else
  fail "cnn run failed"; cat cnn.out
fi
acc=$(json_last cnn.jsonl eval test_accuracy 2>/dev/null || echo 0)
python3 -c "import sys; sys.exit(0 if $acc >= 0.9 else 1)" && pass "cnn test accuracy $acc >= 0.9" ||
  fail "cnn test accuracy $acc < 0.9"
grep -q "buffer values broadcast from rank 0" cnn.out && pass "header counts the broadcast buffers" ||
  { fail "header does not mention buffers"; head -8 cnn.out; }

# The dump holds the parameters, then the buffers (BatchNorm running statistics), float32.
python3 - <<'PY' && pass "dump holds the parameters, then the BatchNorm buffers" || fail "dump layout"
import os, struct
# conv1 4x1x3x3 (no bias: BatchNorm follows), bn1 weight+bias 4+4, conv2 8x4x3x3, bn2 8+8,
# fc1 32x392+32, fc2 10x32+10; buffers: per BatchNorm running_mean, running_var (C each) and
# num_batches_tracked (1)
params = 36 + 8 + 288 + 16 + (32 * 392 + 32) + (10 * 32 + 10)
buffers = (4 + 4 + 1) + (8 + 8 + 1)
v = struct.unpack(f"<{os.path.getsize('cnn.bin') // 4}f", open("cnn.bin", "rb").read())
assert len(v) == params + buffers, (len(v), params, buffers)
b = v[params:]
# running_var of bn1 moved away from its initial ones, num_batches_tracked counts the steps
assert any(abs(x - 1.0) > 1e-3 for x in b[4:8]), b[4:8]
assert b[8] == b[25] and b[8] > 10, (b[8], b[25])
PY

# Same seed, same run: the dump is identical between two runs (determinism).
if mpi 2 "${CNN[@]}" --epochs 1 --dump-params a.bin >/dev/null 2>&1 &&
   mpi 2 "${CNN[@]}" --epochs 1 --dump-params b.bin >/dev/null 2>&1 && cmp -s a.bin b.bin; then
  pass "cnn runs are deterministic"
else
  fail "two cnn runs with one seed differ"
fi
# --no-broadcast-buffers: each rank keeps its own running statistics. Rank 0 dumps its own either
# way, but the evaluation (each rank scores its shard of the test set with its own buffers) tells
# the two runs apart, and the header says nothing is broadcast.
if mpi 2 "${CNN[@]}" --epochs 2 --eval --log-json nb.jsonl --no-broadcast-buffers >nb.out 2>&1; then
  pass "--no-broadcast-buffers trains"
else
  fail "--no-broadcast-buffers"; cat nb.out
fi
grep -q "buffer values)" nb.out && ! grep -q "broadcast from rank 0" nb.out &&
  pass "--no-broadcast-buffers: the header does not say the buffers are broadcast" ||
  { fail "--no-broadcast-buffers: header"; grep "^model" nb.out; }
python3 - <<'PY' && pass "--no-broadcast-buffers: another test loss than with the broadcast" || fail "--no-broadcast-buffers"
import json
def loss(f):
    return [r for r in map(json.loads, open(f)) if r["type"] == "eval"][-1]["test_loss"]
a, b = loss("cnn.jsonl"), loss("nb.jsonl")
print(f"test loss {a} with the broadcast, {b} without")
assert abs(a - b) > 1e-4 * abs(a), (a, b)
PY

# --- cnn on CIFAR-10-format files ---------------------------------------------------------
python3 - "$WORK/cifar" <<'PY'
import os, random, sys
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
rng = random.Random(5)
def record(label):
    # Each class is a colour and a bright quadrant: learnable, not trivial.
    base = [(label * 25) % 256, (label * 70) % 256, (255 - label * 25) % 256]
    qx, qy = label % 2, (label // 2) % 2
    px = bytearray([label])
    for c in range(3):
        for y in range(32):
            for x in range(32):
                v = base[c] + (60 if (x // 16 == qx and y // 16 == qy) else 0) + rng.randint(-40, 40)
                px.append(max(0, min(255, v)))
    return bytes(px)
for i in range(1, 6):
    with open(f"{out}/data_batch_{i}.bin", "wb") as f:
        for n in range(100): f.write(record(rng.randrange(10)))
with open(f"{out}/test_batch.bin", "wb") as f:
    for n in range(200): f.write(record(rng.randrange(10)))
PY
if mpi 2 --model cnn --channels 8,16 --fc-hidden 32 --data "cifar10:$WORK/cifar" --epochs 3 --batch-size 20 \
    --optimizer sgd --lr 0.05 --momentum 0.9 --eval --log-json cifar.jsonl >cifar.out 2>&1; then
  pass "cnn trains on CIFAR-10 files"
else
  fail "cnn on CIFAR-10 failed"; cat cifar.out
fi
acc=$(json_last cifar.jsonl eval test_accuracy 2>/dev/null || echo 0)
python3 -c "import sys; sys.exit(0 if $acc >= 0.5 else 1)" && pass "cifar test accuracy $acc >= 0.5 (chance 0.1)" ||
  fail "cifar test accuracy $acc < 0.5"

# --- gpt on text --------------------------------------------------------------------------
python3 - "$WORK/corpus.txt" <<'PY'
import random, sys
rng = random.Random(2)
words = "the cat sat on a mat and the dog ran to the red door while birds sang".split()
with open(sys.argv[1], "w") as f:
    for i in range(600):
        f.write(" ".join(rng.choice(words) for _ in range(rng.randint(6, 14))) + ".\n")
PY
"$DPRUN" prepare-text --input "$WORK/corpus.txt" --output train.bin --val-output val.bin --val-fraction 0.1 \
  >prep.out 2>&1 || { fail "prepare-text"; cat prep.out; }
GPT=(--model gpt --layers 2 --heads 2 --embed 32 --context 32 --data tokens:train.bin --val-data tokens:val.bin
  --batch-size 8 --optimizer adamw --lr 0.003 --lr-schedule constant --seed 1)
if mpi 2 "${GPT[@]}" --steps 150 --eval-every 50 --eval-batches 8 --sample-every 150 --sample-length 60 \
    --log-json gpt.jsonl >gpt.out 2>&1; then
  pass "gpt trains on prepared text under 2 ranks"
else
  fail "gpt run failed"; cat gpt.out
fi
# The unigram entropy of the training text is the loss of a model that ignores context.
python3 - <<'PY' && pass "gpt validation loss well below the unigram loss" || { fail "gpt did not learn"; tail -5 gpt.out; }
import json, math, struct
b = open("train.bin", "rb").read()
n = struct.unpack("<256i", b[:1024])[2]
toks = struct.unpack(f"<{n}H", b[1024:])
counts = {}
for t in toks: counts[t] = counts.get(t, 0) + 1
unigram = -sum(c / n * math.log(c / n) for c in counts.values())
recs = [json.loads(l) for l in open("gpt.jsonl") if l.strip()]
val = [r["test_loss"] for r in recs if r["type"] == "eval"]
steps = [r for r in recs if r["type"] == "step"]
print(f"unigram {unigram:.3f} nats/token, validation {val}")
assert len(val) == 3, val
assert val[-1] < 0.75 * unigram, (val[-1], unigram)
assert "tokens_per_s" in steps[-1]
PY
grep -q "sample at step 150" gpt.out && pass "prints a sample" || fail "no sample printed"
grep -q "step     50 | validation loss [0-9.]* (perplexity [0-9.]*) | accuracy" gpt.out &&
  pass "the validation line prints the perplexity" || { fail "no perplexity"; grep validation gpt.out; }
grep -q "tokens/s" gpt.out && pass "progress in tokens/s" || fail "no tokens/s"
# A padded table (llm.c's padded vocabulary): the first loss is chance over the data's 257
# tokens, not over the 512 rows, and sampling decodes bytes (it used to pick padding rows).
if mpi 1 "${GPT[@]}" --vocab-size 512 --steps 2 --sample-every 1 --sample-length 40 \
    --log-json pad.jsonl >pad.out 2>&1 && grep -q "table padded to 512" pad.out &&
  python3 -c "
import json, math
first = [json.loads(l) for l in open('pad.jsonl') if '\"step\"' in l][0]['loss']
assert abs(first - math.log(257)) < 0.3, first
"; then
  pass "--vocab-size pads the table: loss and samples over the data's tokens"
else
  fail "padded table"; tail -5 pad.out
fi
# --sample-temperature 0 is greedy decoding (the most likely token at each step, as generate()
# documents): the same text as sampling from the single most likely token (--sample-top-k 1)
# at any temperature; a negative temperature is refused by name.
sample_text() { awk '/^sample at step 1:$/ { on = 1; next } /^---$/ { on = 0 } on' "$1"; }
if mpi 1 "${GPT[@]}" --steps 1 --sample-every 1 --sample-length 20 --sample-temperature 0 \
    >greedy.out 2>&1 &&
  mpi 1 "${GPT[@]}" --steps 1 --sample-every 1 --sample-length 20 --sample-temperature 0.7 \
    --sample-top-k 1 >top1.out 2>&1 &&
  [ -n "$(sample_text greedy.out)" ] && [ "$(sample_text greedy.out)" = "$(sample_text top1.out)" ]; then
  pass "--sample-temperature 0 samples greedily (as --sample-top-k 1)"
else
  fail "--sample-temperature 0 is not greedy"; tail -n 3 greedy.out top1.out
fi
if ! mpi 1 "${GPT[@]}" --steps 1 --sample-every 1 --sample-temperature -0.5 >neg.out 2>&1 &&
  grep -q "sample-temperature must be a number >= 0" neg.out; then
  pass "a negative --sample-temperature is refused by name"
else
  fail "negative --sample-temperature"; tail -3 neg.out
fi

# Sampling longer than --timeout: every rank samples, and a barrier whose own timeout is
# --timeout plus the rank's sampling time ends the sample, so that the ranks' drift over a long
# sample (CI saw 0.5 s on a 9 s sample) is no timeout. Rank 1 is made a straggler here: it
# stalls 1 s in its sample (DPRUN_FAULT_STALL phase=sample), twice --timeout, while a sample
# takes about 4 s on this machine (more under load: the allowance grows with it). The check
# needs a sample longer than about the stall minus --timeout plus the ranks' drift: at 12000
# tokens (1.3 s) a CPU twice as fast would fail it every time, at 36000 one 5x as fast. Red
# against sampling on rank 0 alone and against ranks that go on without the barrier: rank 0
# then waits over 0.5 s in the next collective. The premise: the summary's training time
# (two samples and two tiny steps) exceeds two timeouts. A rank later than its allowance is
# still named, at the barrier: rank 1 stalled 30 s past a short sample fails the job in
# seconds, on every rank.
long_sample_run() {
  DPRUN_FAULT_STALL="rank=1,phase=sample,seconds=1" mpi 2 "${GPT[@]}" --steps 2 --sample-every 1 \
    --sample-length 36000 --timeout 0.5 >long.out 2>&1 &&
    [ "$(grep -a -c "sample at step" long.out)" = 2 ] &&
    grep -a "^summary:" long.out | awk '{ t = $NF; sub(/s$/, "", t); exit !(t ~ /m/ || t + 0 > 1) }'
}
if long_sample_run; then
  pass "a sample longer than --timeout, on a straggling rank, does not time the ranks out"
else
  fail "long sample"; grep -a -E "error|^summary" long.out | head -4
fi
t0=$(date +%s)
if ! DPRUN_FAULT_STALL="rank=1,phase=sample,seconds=30" mpi 2 "${GPT[@]}" --steps 2 --sample-every 1 \
    --sample-length 20 --timeout 1 >stuck.out 2>&1 &&
  grep -a -q "\[rank 0\].*'end of the sample at step 1'" stuck.out && [ $(($(date +%s) - t0)) -lt 20 ]; then
  pass "a rank stuck in its sample is named at the sample's end, within the allowance"
else
  fail "stuck sample"; grep -a -E "error" stuck.out | head -4
fi

# --- gpt on real English text (Debian's fortunes) -----------------------------------------
FORTUNES=/usr/share/games/fortunes
if [ -d "$FORTUNES" ]; then
  "$DPRUN" prepare-text --input "$FORTUNES" --doc-separator % --output ftrain.bin --val-output fval.bin \
    >fprep.out 2>&1 || { fail "prepare-text on fortunes"; cat fprep.out; }
  # 800 steps: about 40 s here, over 120 s (lib.sh's limit) under load; its own limit.
  if timeout 400 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$DPRUN" \
      --model gpt --layers 2 --heads 2 --embed 64 --context 64 --data tokens:ftrain.bin \
      --val-data tokens:fval.bin --batch-size 16 --lr 0.004 --steps 800 --eval-every 400 --eval-batches 20 \
      --log-json fortunes.jsonl >fortunes.out 2>&1; then
    pass "gpt trains on fortunes"
  else
    fail "gpt on fortunes failed"; tail -5 fortunes.out
  fi
  python3 - <<'PY' && pass "gpt on fortunes: validation loss well below the text's unigram loss" ||
import array, collections, json, math
b = open("ftrain.bin", "rb").read()
n = int.from_bytes(b[8:12], "little")
toks = array.array("H"); toks.frombytes(b[1024:1024 + 2 * n])
unigram = -sum(c / n * math.log(c / n) for c in collections.Counter(toks).values())
val = [json.loads(l)["test_loss"] for l in open("fortunes.jsonl") if '"eval"' in l]
print(f"fortunes: unigram {unigram:.3f} nats/token, validation {val}")
assert val[-1] < 0.75 * unigram, (val, unigram)
PY
    { fail "gpt on fortunes did not learn"; tail -5 fortunes.out; }
else
  echo "skip: $FORTUNES not installed (apt-get install fortunes)"
fi

# --- what does not fit --------------------------------------------------------------------
expect_error() {  # NAME FRAGMENT ARGS...: every rank reports, non-zero exit
  local name=$1 msg=$2 rc=0
  shift 2
  mpi 2 "$@" >err.out 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "dprun: error: \[rank 0\]" err.out &&
     grep -q "dprun: error: \[rank 1\]" err.out && grep -qi -- "$msg" err.out; then
    pass "$name"
  else
    fail "$name (rc $rc)"; cat err.out
  fi
}
expect_error "cnn on token data" "trains on images" --model cnn --data tokens:train.bin --context 16 --steps 1
expect_error "gpt on images" "trains on tokens" --model gpt --data "idx:$WORK/idx" --steps 1
expect_error "option of another model" "not an option of --model mlp" --data "idx:$WORK/idx" --layers 2 --steps 1
expect_error "context longer than the data" "context" "${GPT[@]}" --context 100000 --steps 1
expect_error "heads do not divide the width" "heads" "${GPT[@]}" --heads 3 --steps 1
expect_error "unknown preset" "preset" "${GPT[@]}" --preset gpt9 --steps 1
expect_error "eval without validation data" "held-out" --model gpt --layers 1 --heads 1 --embed 8 --context 8 \
  --data tokens:train.bin --eval-every 5 --steps 10
expect_error "cnn on too small images" "small" --model cnn --channels 4,4,4,4,4,4 --data "idx:$WORK/idx" --steps 1
finish
