#!/usr/bin/env bash
# dprun against PyTorch on one GPU, the same MLPs, measured side by side in one run:
#   - dprun --device cuda (one process, world size 1) in fp32 and bf16
#   - the same model in PyTorch eager (tests/bench/torch_mlp.py) on the same GPU
#   - bench_gpu_gemm: cuBLAS's peak on a large square GEMM and the GEMM-only limit at each
#     model's own shapes, as references for the TFLOP/s the training steps reach
# Rounds are interleaved (every run once per round, dprun and torch taking turns going
# first) so that clock and thermal drift hit both alike; each figure is the median over
# rounds of a run's steady-state throughput.
#
# Usage: tests/bench/bench_gpu_vs_torch.sh [BUILD_DIR]   (default: build; needs a CUDA build
#        of dprun and bench_gpu_gemm: tests/gpu/run.sh builds both in build-gpu)
# Env:   ROUNDS (3)            rounds of every run
#        CONFIGS               space-separated NAME:HIDDEN:BATCH:STEPS (default below)
#        PRECISIONS            "fp32 bf16"
#        LR (0.01), MOMENTUM (0.9)   SGD settings of both sides (speed does not depend on them)
#        TORCH_PYTHON          interpreter with PyTorch (python3); without a usable one the
#                              table has dprun's figures only and says torch is missing
#        TORCH_ARGS            extra torch_mlp.py flags, e.g. "--compile", "--ddp",
#                              "--sync-each-step"
#        RUN_TIMEOUT (300)     seconds per run before it counts as failed
#        WORKERS (4; 1 dry)    dprun --num-workers: threads generating each synthetic batch
#                              (torch's batches are made on the GPU before timing, so dprun's
#                              loading should not be what limits it)
#        LOG_DIR               keep every log and results.json there (default: temporary)
#        BENCH_DRY_RUN=1       no GPU: dprun and torch on the CPU, small configs, 1 round.
#                              Checks the script end to end; the figures mean nothing.
# Exit:  0 done; 1 a run failed (its log tail is printed); 77 no GPU visible.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${1:-build}
DRY=${BENCH_DRY_RUN:-0}
PRECISIONS=${PRECISIONS:-fp32 bf16}
LR=${LR:-0.01}
MOMENTUM=${MOMENTUM:-0.9}
TORCH_PYTHON=${TORCH_PYTHON:-python3}
TORCH_ARGS=${TORCH_ARGS:-}
RUN_TIMEOUT=${RUN_TIMEOUT:-300}
if [[ "$DRY" == 1 ]]; then
  WORKERS=${WORKERS:-1}
  DEVICE=cpu
  ROUNDS=${ROUNDS:-1}
  CONFIGS=${CONFIGS:-mlp:256,128:256:60 mlp-wide:1024,1024:64:30}
else
  WORKERS=${WORKERS:-4}
  DEVICE=cuda
  ROUNDS=${ROUNDS:-3}
  # The README's model at batch 256 (small GEMMs: launch- and overhead-bound), and a
  # 4096-wide MLP at batch 2048 (0.44 TFLOP of GEMMs a step: ~9 ms in fp32 at ~50 TFLOP/s,
  # under 1 ms in bf16: GEMM-bound). Steps are set so that each run takes a few seconds.
  CONFIGS=${CONFIGS:-mlp:256,128:256:2000 mlp-4096x3:4096,4096,4096:2048:300}
fi
read -ra CONFIG_LIST <<< "$CONFIGS"
read -ra PRECISION_LIST <<< "$PRECISIONS"
read -ra TORCH_EXTRA <<< "$TORCH_ARGS"

# --- Is there a GPU? (same test as tests/gpu/run.sh) ----------------------------------------
if [[ "$DRY" != 1 ]]; then
  ngpu=0
  if command -v nvidia-smi > /dev/null 2>&1 && smi=$(nvidia-smi -L 2>&1); then
    ngpu=$(grep -c '^GPU ' <<< "$smi" || true)
  fi
  if [[ -n "${CUDA_VISIBLE_DEVICES+x}" && -z "${CUDA_VISIBLE_DEVICES}" ]]; then ngpu=0; fi
  if [[ "$ngpu" -eq 0 ]]; then
    echo "bench_gpu_vs_torch: no GPU (nvidia-smi missing or failing, or CUDA_VISIBLE_DEVICES empty); BENCH_DRY_RUN=1 checks the script on the CPU"
    exit 77
  fi
fi

for exe in dprun bench_gpu_gemm; do
  if [[ ! -x "$BUILD/$exe" ]]; then
    echo "bench_gpu_vs_torch: error: $BUILD/$exe not found (build it: cmake --build $BUILD --target dprun bench_gpu_gemm)" >&2
    exit 1
  fi
done
# A dprun from before --precision existed trains in fp32 only: usable for fp32 rows.
# (--help read into a variable first: grep -q closing the pipe early would fail it under pipefail.)
PRECISION_FLAG=1
dprun_help=$("$BUILD/dprun" --help 2>&1 || true)
if ! grep -q -- '--precision' <<< "$dprun_help"; then
  if [[ " ${PRECISION_LIST[*]} " != *" fp32 "* || ${#PRECISION_LIST[@]} -ne 1 ]]; then
    echo "bench_gpu_vs_torch: error: $BUILD/dprun has no --precision option (needed for bf16); rebuild, or run with PRECISIONS=fp32" >&2
    exit 1
  fi
  PRECISION_FLAG=0
fi

if [[ -n "${LOG_DIR:-}" ]]; then
  OUT=$LOG_DIR
  mkdir -p "$OUT"
else
  OUT=$(mktemp -d /tmp/dprun-bench-torch.XXXXXX)
  trap 'rm -rf "$OUT"' EXIT
fi

# Steps skipped as warm-up: cuBLASLt plans, allocator growth, the data loader's first batch.
warmup_of() { local s=$1 w=$(($1 / 10)); ((w < 20)) && w=20; ((w > s / 2)) && w=$((s / 2)); echo "$w"; }

# The configurations, checked, one per line for the loop below and the analysis at the end.
: > "$OUT/configs.tsv"
for cfg in "${CONFIG_LIST[@]}"; do
  IFS=: read -r name hidden batch steps extra <<< "$cfg"
  if [[ ! "$name" =~ ^[A-Za-z0-9_.-]+$ || ! "$hidden" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ||
        ! "$batch" =~ ^[1-9][0-9]*$ || ! "$steps" =~ ^[1-9][0-9]*$ || -n "$extra" ]] || ((steps < 4)); then
    echo "bench_gpu_vs_torch: error: CONFIGS entry '$cfg' is not NAME:HIDDEN:BATCH:STEPS with STEPS >= 4 (e.g. mlp:256,128:256:2000)" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$hidden" "$batch" "$steps" "$(warmup_of "$steps")" >> "$OUT/configs.tsv"
done

# PyTorch is optional: without it the table still has dprun's figures.
TORCH=1
torch_check='import sys, torch
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit(f"torch {torch.__version__} sees no GPU (torch.cuda.is_available() is False)")
print(torch.__version__)'
if ! torch_version=$("$TORCH_PYTHON" -c "$torch_check" "$DEVICE" 2>&1); then
  TORCH=0
  echo "torch missing: $TORCH_PYTHON: $(tail -1 <<< "$torch_version")"
  echo "(only dprun's figures follow; TORCH_PYTHON selects another interpreter)"
fi

# A failed run stops the benchmark: a missing figure must not pass unnoticed.
run_or_fail() {
  local what=$1 log=$2
  shift 2
  # stdin from /dev/null: the caller's loop reads configs.tsv on stdin.
  if ! timeout "$RUN_TIMEOUT" "$@" < /dev/null > "$log" 2>&1; then
    echo "bench_gpu_vs_torch: FAILED ($what): $*" >&2
    tail -20 "$log" >&2
    exit 1
  fi
}

run_dprun() {
  local name=$1 hidden=$2 batch=$3 steps=$4 prec=$5 round=$6
  local prec_args=()
  [[ $PRECISION_FLAG -eq 1 ]] && prec_args=(--precision "$prec")
  # synthetic:N with N = batch x steps: exactly one epoch, no short last batch, no epoch
  # boundary (the loader restarting) inside the timed steps.
  run_or_fail "dprun $name $prec round $round" "$OUT/dprun.$name.$prec.$round.out" \
    "$BUILD/dprun" --model mlp --hidden "$hidden" --data "synthetic:$((batch * steps))" \
    --batch-size "$batch" --steps "$steps" --epochs 1 --device "$DEVICE" "${prec_args[@]}" \
    --num-workers "$WORKERS" \
    --optimizer sgd --lr "$LR" --momentum "$MOMENTUM" --lr-schedule constant --quiet \
    --log-json "$OUT/dprun.$name.$prec.$round.jsonl"
}

run_torch() {
  local name=$1 hidden=$2 batch=$3 steps=$4 prec=$5 round=$6 warmup
  warmup=$(warmup_of "$steps")
  # The same number of steps in all as dprun: warm-up untimed, the rest timed.
  run_or_fail "torch $name $prec round $round" "$OUT/torch.$name.$prec.$round.out" \
    "$TORCH_PYTHON" "$HERE/torch_mlp.py" --label "$name" --hidden "$hidden" --batch "$batch" \
    --precision "$prec" --steps $((steps - warmup)) --warmup "$warmup" --lr "$LR" \
    --momentum "$MOMENTUM" --device "$DEVICE" "${TORCH_EXTRA[@]}"
}

torch_desc="no torch"
[[ $TORCH -eq 1 ]] && torch_desc="torch $(tail -1 <<< "$torch_version")${TORCH_ARGS:+ $TORCH_ARGS}"
echo "dprun vs PyTorch: ${CONFIG_LIST[*]} (NAME:HIDDEN:BATCH:STEPS) x ${PRECISION_LIST[*]}, $ROUNDS round(s), device $DEVICE, $torch_desc"
[[ "$DRY" == 1 ]] && echo "BENCH_DRY_RUN: on the CPU, to check the script; the figures mean nothing"

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  # cuBLAS references first: they also bring the GPU to its clocks before the timed runs.
  run_or_fail "bench_gpu_gemm square" "$OUT/peak.$round.txt" \
    "$BUILD/bench_gpu_gemm" --batches 1 --layers 16,16 --square 8192 --reps 20
  while IFS=$'\t' read -r name hidden batch steps _; do
    run_or_fail "bench_gpu_gemm $name" "$OUT/gemm.$name.$round.txt" \
      "$BUILD/bench_gpu_gemm" --batches "$batch" --layers "784,$hidden,10" --square 0 --reps 20
    for prec in "${PRECISION_LIST[@]}"; do
      if [[ $TORCH -eq 1 && $((round % 2)) -eq 0 ]]; then
        run_torch "$name" "$hidden" "$batch" "$steps" "$prec" "$round"
        run_dprun "$name" "$hidden" "$batch" "$steps" "$prec" "$round"
      else
        run_dprun "$name" "$hidden" "$batch" "$steps" "$prec" "$round"
        if [[ $TORCH -eq 1 ]]; then run_torch "$name" "$hidden" "$batch" "$steps" "$prec" "$round"; fi
      fi
    done
  done < "$OUT/configs.tsv"
done

python3 - "$OUT" "$ROUNDS" "$TORCH" "${PRECISION_LIST[@]}" <<'PY'
import json, re, statistics, sys
out, rounds, have_torch, precisions = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
med = statistics.median

def gemm_flops_per_sample(layers):
    # The same formula as tests/bench/torch_mlp.py: forward, weight-gradient and
    # input-gradient GEMM per layer (2*i*o flops each), no input gradient for the first.
    pairs = list(zip(layers[:-1], layers[1:]))
    return sum(6 * i * o for i, o in pairs) - 2 * pairs[0][0] * pairs[0][1]

def dprun_figures(path, warmup):
    steps = [json.loads(l) for l in open(path) if l.strip()]
    steps = [s for s in steps if s.get("type") == "step"][warmup:]
    if len(steps) < 2:
        sys.exit(f"{path}: fewer than 2 step records after {warmup} warm-up steps")
    # Throughput from wall-clock time between the first and last steady step (gaps between
    # steps included), not from per-step rates; the batch from the log itself.
    samples = sum(s["samples_per_s"] * s["step_ms"] / 1000 for s in steps[1:])
    wall = steps[-1]["wall_s"] - steps[0]["wall_s"]
    # What dprun would reach if its data loader kept up: the batch over the step time less
    # the wait for data (the host-to-device copy stays in, it is part of dprun's step).
    no_wait = med(s["samples_per_s"] * s["step_ms"] / max(1e-6, s["step_ms"] - s["data_ms"])
                  for s in steps)
    return {"samples_per_s": samples / wall, "step_ms": med(s["step_ms"] for s in steps),
            "data_ms": med(s["data_ms"] for s in steps), "no_wait_samples_per_s": no_wait}

def torch_figures(path):
    lines = [l for l in open(path) if l.startswith("{")]
    if not lines:
        sys.exit(f"{path}: torch_mlp.py printed no JSON line")
    return json.loads(lines[-1])

# bench_gpu_gemm's lines: "  f32 :    21000.0 us     52.36 TFLOP/s" (square reference) and
# "step total ... | f32 us TFLOP/s | bf16 us TFLOP/s   (GEMM-bound limit: F / B samples/s)".
SQUARE = re.compile(r"^\s*(f32|bf16)\s*:\s*[\d.]+ us\s+([\d.]+) TFLOP/s", re.M)
TOTAL = re.compile(r"^step total\s.*\(GEMM-bound limit: ([\d.]+) / ([\d.]+) samples/s\)", re.M)
KEY = {"fp32": "f32", "bf16": "bf16"}

def median_or_none(values):
    values = [v for v in values if v is not None]
    return med(values) if values else None

peak = {}
for prec in precisions:
    found = []
    for r in range(1, rounds + 1):
        m = dict(SQUARE.findall(open(f"{out}/peak.{r}.txt").read()))
        found.append(float(m[KEY[prec]]) if KEY[prec] in m else None)
    peak[prec] = median_or_none(found)
if any(v is None for v in peak.values()):
    print("\nno cuBLAS reference in bench_gpu_gemm's output (no GPU, or a build without CUDA): "
          "% of peak and of the GEMM limit are left blank; first line: "
          + open(f"{out}/peak.1.txt").readline().strip())

rows = []
for line in open(f"{out}/configs.tsv"):
    name, hidden, batch, steps, warmup = line.rstrip("\n").split("\t")
    layers = [784] + [int(h) for h in hidden.split(",")] + [10]
    flops = gemm_flops_per_sample(layers)
    limits = []
    for r in range(1, rounds + 1):
        m = TOTAL.search(open(f"{out}/gemm.{name}.{r}.txt").read())
        limits.append({"fp32": float(m[1]), "bf16": float(m[2])} if m else None)
    for prec in precisions:
        d = [dprun_figures(f"{out}/dprun.{name}.{prec}.{r}.jsonl", int(warmup))
             for r in range(1, rounds + 1)]
        t = [torch_figures(f"{out}/torch.{name}.{prec}.{r}.out")
             for r in range(1, rounds + 1)] if have_torch else []
        row = {"config": name, "layers": layers, "batch": int(batch), "precision": prec,
               "dprun_samples_per_s": med(x["samples_per_s"] for x in d),
               "dprun_step_ms": med(x["step_ms"] for x in d),
               "dprun_data_ms": med(x["data_ms"] for x in d),
               "dprun_no_wait_samples_per_s": med(x["no_wait_samples_per_s"] for x in d),
               "dprun_rounds": [x["samples_per_s"] for x in d],
               "torch_samples_per_s": med(x["samples_per_s"] for x in t) if t else None,
               "torch_rounds": [x["samples_per_s"] for x in t],
               "cublas_peak_tflops": peak[prec],
               "gemm_limit_samples_per_s": median_or_none(l and l[prec] for l in limits)}
        row["dprun_tflops"] = row["dprun_samples_per_s"] * flops / 1e12
        row["torch_tflops"] = (row["torch_samples_per_s"] * flops / 1e12
                               if t else None)
        rows.append(row)
json.dump({"rows": rows, "cublas_peak_tflops": peak}, open(f"{out}/results.json", "w"), indent=1)

def fmt(v, spec, scale=1.0):
    return "-" if v is None else format(v * scale, spec)

def pct(a, b):
    return "-" if a is None or not b else f"{a / b:.0%}"

print(f"\n{'config':<12} {'prec':<5} {'batch':>5} | {'dprun smp/s':>11} {'torch smp/s':>11} "
      f"{'dprun/torch':>11} | {'dprun TF/s':>10} {'% peak':>6} | {'torch TF/s':>10} {'% peak':>6} "
      f"| {'dprun of GEMM limit':>19} {'data wait ms':>12} {'w/o wait smp/s':>14}")
for r in rows:
    ratio = (f"{r['dprun_samples_per_s'] / r['torch_samples_per_s']:.2f}x"
             if r["torch_samples_per_s"] else "-")
    print(f"{r['config']:<12} {r['precision']:<5} {r['batch']:>5} | "
          f"{r['dprun_samples_per_s']:>11,.0f} {fmt(r['torch_samples_per_s'], ',.0f'):>11} "
          f"{ratio:>11} | {r['dprun_tflops']:>10.2f} {pct(r['dprun_tflops'], r['cublas_peak_tflops']):>6} | "
          f"{fmt(r['torch_tflops'], '.2f'):>10} {pct(r['torch_tflops'], r['cublas_peak_tflops']):>6} | "
          f"{pct(r['dprun_samples_per_s'], r['gemm_limit_samples_per_s']):>19} "
          f"{r['dprun_data_ms']:>12.3f} {r['dprun_no_wait_samples_per_s']:>14,.0f}")

print("\nper round, samples/s (dprun | torch):")
for r in rows:
    print(f"  {r['config']:<12} {r['precision']:<5} "
          + " ".join(f"{v:,.0f}" for v in r["dprun_rounds"]) + " | "
          + (" ".join(f"{v:,.0f}" for v in r["torch_rounds"]) or "-"))
print("\ncuBLAS peak (8192^3 GEMM, bench_gpu_gemm): "
      + ", ".join(f"{p} {fmt(v, '.1f')} TFLOP/s" for p, v in peak.items())
      + "\nTFLOP/s = GEMM flops per step / step time, flops per sample = sum over layers of"
      " 6*in*out, less 2*in*out of the first layer (no input gradient); other kernels not counted."
      "\nGEMM limit: samples/s if a step were only its GEMMs at cuBLAS's speed for those shapes."
      "\ndata wait: median ms per step dprun waited for its host data loader (torch's batches"
      " are already on the GPU); w/o wait: dprun's samples/s with that wait taken out.")
for r in rows:
    if r["dprun_data_ms"] > 0.1 * r["dprun_step_ms"]:
        print(f"note: {r['config']} {r['precision']}: dprun waited {r['dprun_data_ms']:.3f} of "
              f"{r['dprun_step_ms']:.3f} ms per step for data: the data loader, not the GPU, "
              "bounds that row")
if not have_torch:
    print("torch missing: no PyTorch figures (see the first lines)")
# One line for tests/gpu/run.sh's summary table (it shows the last "summary:" line).
if have_torch:
    print("summary: dprun/torch " + " ".join(
        f"{r['config']}/{r['precision']} {r['dprun_samples_per_s'] / r['torch_samples_per_s']:.2f}x"
        for r in rows))
else:
    print("summary: torch missing; dprun samples/s " + " ".join(
        f"{r['config']}/{r['precision']} {r['dprun_samples_per_s']:,.0f}" for r in rows))
PY
[[ -n "${LOG_DIR:-}" ]] && echo "logs and results.json: $OUT"
exit 0
