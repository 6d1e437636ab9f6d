#!/usr/bin/env bash
# Throughput of the real models on the CPU, side by side in one run (rounds interleaved):
#   cnn on Fashion-MNIST (samples/s) and gpt on text (tokens/s), at 1 and 2 ranks, each
#   against OpenBLAS sgemm timed alone at the model's own GEMM shapes (dprun --gemm-profile
#   records them, bench_sgemm --shapes times them): the fraction of the compute-bound limit.
#   For gpt at 2 ranks: the bucket layout and the exposed / total communication.
#   Then the peak resident memory of --preset gpt2-small at batch 4 x 1024 tokens against
#   the arithmetic (parameters, gradients, AdamW state, activations) (skip with GPT2=0).
#
# Usage: tests/bench/bench_models.sh [BUILD_DIR] [ROUNDS]
# Env:   CNN_STEPS (60), GPT_STEPS (30), MODELS ("cnn gpt"),
#        GPT2 (1: measure gpt2-small memory, ~3 min)
# The machine is noisy (the same run varies by a third from one minute to the next), so each
# round times the limit and both rank counts back to back (the order of 1 and 2 ranks
# alternating between rounds) and the figures are medians of the per-round fractions and
# ratios, with their range.
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${2:-3}
CNN_STEPS=${CNN_STEPS:-60}
GPT_STEPS=${GPT_STEPS:-30}
GPT2=${GPT2:-1}
MODELS=${MODELS:-cnn gpt}
FMNIST=/usr/share/datasets/fashion-mnist
FORTUNES=/usr/share/games/fortunes
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export CUDA_VISIBLE_DEVICES=
OUT=$(mktemp -d /tmp/dprun-bench-models.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then IMAGES="idx:$FMNIST"; else
  "$BUILD/make_idx" "$OUT/idx" --train 6000 --test 1000 >/dev/null; IMAGES="idx:$OUT/idx"; fi
if [ -d "$FORTUNES" ]; then TEXT=$FORTUNES; else
  python3 -c "import random; r=random.Random(1); print('\n'.join(' '.join(r.choice('abc def ghi jkl mno'.split()) for _ in range(12)) for _ in range(20000)))" >"$OUT/text.txt"
  TEXT=$OUT/text.txt; fi
"$BUILD/dprun" prepare-text --input "$TEXT" --output "$OUT/train.bin" --val-output "$OUT/val.bin" >/dev/null

CNN=(--model cnn --data "$IMAGES" --batch-size 64 --optimizer sgd --lr 0.05 --momentum 0.9 --steps "$CNN_STEPS")
GPT=(--model gpt --data "tokens:$OUT/train.bin" --batch-size 8 --optimizer adamw --lr 0.001 --steps "$GPT_STEPS")
echo "dprun model benchmark: $ROUNDS rounds, $(nproc --all) cores, 1 BLAS thread per rank"
case " $MODELS " in *" cnn "*) echo "  cnn: ${CNN[*]}" ;; esac
case " $MODELS " in *" gpt "*) echo "  gpt: ${GPT[*]}" ;; esac
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then order="1 2"; else order="2 1"; fi
  for model in $MODELS; do
    if [ "$model" = cnn ]; then args=("${CNN[@]}"); else args=("${GPT[@]}"); fi
    "$BUILD/dprun" "${args[@]}" --quiet --gemm-profile "$OUT/$model.gemms.json" >/dev/null
    "$BUILD/bench_sgemm" --shapes "$OUT/$model.gemms.json" --reps 30 --json >"$OUT/$model.sgemm.$round.json"
    for np in $order; do
      mpirun --allow-run-as-root --oversubscribe -np "$np" "$BUILD/dprun" "${args[@]}" \
        --log-json "$OUT/$model.np$np.$round.jsonl" >"$OUT/$model.np$np.$round.out"
    done
  done
done
case " $MODELS " in *" gpt "*) grep -h "^reducer\|^model" "$OUT/gpt.np2.1.out" | sed 's/^/  gpt 2 ranks: /' ;; esac

python3 - "$OUT" "$ROUNDS" $MODELS <<'PY'
import json, statistics, sys
out, rounds, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
med = statistics.median
def spread(xs, fmt):
    return f"{fmt(med(xs))} ({fmt(min(xs))}-{fmt(max(xs))})" if len(xs) > 1 else fmt(xs[0])
pct = lambda x: f"{x:.0%}"
times = lambda x: f"{x:.2f}x"
print(f"\n{'model':>5} {'ranks':>5} {'samples/s':>10} {'tokens/s':>10} {'of sgemm limit':>18} {'vs 1 rank':>19} {'comm ms':>8} {'exposed':>8}")
for model in models:
    limits = [json.load(open(f"{out}/{model}.sgemm.{r}.json"))["limit_samples_per_s"] for r in range(1, rounds + 1)]
    runs = {}
    for np in (1, 2):
        per = []
        for r in range(1, rounds + 1):
            recs = [json.loads(l) for l in open(f"{out}/{model}.np{np}.{r}.jsonl")]
            steps = [s for s in recs if s.get("type") == "step"][5:]  # skip warm-up
            samples = sum(s["samples_per_s"] * s["step_ms"] / 1000 for s in steps[1:])
            wall = steps[-1]["wall_s"] - steps[0]["wall_s"]
            tok = steps[-1].get("tokens_per_s", 0) / max(1e-9, steps[-1]["samples_per_s"])
            per.append((samples / wall, tok, med(s["comm_ms"] for s in steps), med(s["exposed_comm_ms"] for s in steps)))
        runs[np] = per
    for np in (1, 2):
        per = runs[np]
        sps = med(p[0] for p in per); tps = sps * per[0][1]
        comm = med(p[2] for p in per); exposed = med(p[3] for p in per)
        frac = [p[0] / (limits[r] * np) for r, p in enumerate(per)]
        ratio = [p[0] / b[0] for p, b in zip(per, runs[1])]
        print(f"{model:>5} {np:>5} {sps:>10,.0f} {tps:>10,.0f} {spread(frac, pct):>18} {spread(ratio, times):>19} {comm:>8.2f} {exposed:>8.2f}")
print("medians of the per-round figures (range); targets: >= 50% of the sgemm limit at 1 rank, >= 1.8x at 2 ranks")
PY

if [ "$GPT2" = 1 ]; then
  # GPT-2's vocabulary for the logits and the loss: header[3] = 0 is llm.c's own files' (dprun
  # then takes GPT-2's 50257; the byte-level tokens all fall below it).
  cp "$OUT/train.bin" "$OUT/train-gpt2.bin"
  printf '\0\0\0\0' | dd of="$OUT/train-gpt2.bin" bs=1 seek=12 conv=notrunc status=none
  "$BUILD/dprun" --model gpt --preset gpt2-small --data "tokens:$OUT/train-gpt2.bin" --batch-size 4 --steps 2 \
    --optimizer adamw --lr 1e-4 --log-json "$OUT/gpt2.jsonl" >"$OUT/gpt2.out"
  python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
recs = [json.loads(l) for l in open(f"{out}/gpt2.jsonl")]
summ = [r for r in recs if r["type"] == "summary"][0]
steps = [r for r in recs if r["type"] == "step"]
L, H, C, T, V, B = 12, 12, 768, 1024, 50257, 4  # GPT-2's vocabulary (train-gpt2.bin's)
params = V * C + T * C + L * (12 * C * C + 13 * C) + 2 * C
MiB = 1 << 20
state = params * 4 * 4  # values, gradients, AdamW's two moments (float32)
# What forward keeps for backward, per layer and token: ln_1 out C, qkv 3C, attention probs
# H*T, attention out C, c_proj out C, residual C, ln_2 out C, c_fc out 4C, GELU out 4C,
# c_proj out C, residual C; then ln_f C, the logits V and their softmax V.
acts = B * T * (L * (14 * C + H * T) + C + 2 * V) * 4
# Backward's input gradients: one set of 18 C per token that the blocks share (as llm.c
# shares its activation gradients), plus ln_f's and the head's C; the logits' gradient
# overwrites their softmax (counted above).
grads = B * T * (18 * C + 2 * C) * 4
print(f"\ngpt2-small (batch {B} x {T} tokens, vocabulary {V}): {params / 1e6:.1f}M parameters, "
      f"{steps[-1]['step_ms'] / 1000:.1f} s/step, {steps[-1].get('tokens_per_s', 0):.0f} tokens/s")
print(f"  arithmetic: parameters+gradients+AdamW {state / MiB:.0f} MiB + activations {acts / MiB:.0f} MiB"
      f" + input-gradient buffers {grads / MiB:.0f} MiB = {(state + acts + grads) / MiB:.0f} MiB")
print(f"  measured peak resident memory: {summ['peak_rss_mib']:.0f} MiB")
PY
fi
