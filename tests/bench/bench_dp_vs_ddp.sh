#!/usr/bin/env bash
# DataParallel (--mode dp: one process, N replica threads) against DDP (mpirun -np N) on the
# same model, data, per-replica batch and machine, rounds interleaved so that both see the
# same noise. Per step (the mean over the faster half of a run's steps after a warm-up, then
# the median over the rounds): total, data wait, scatter, replicate, forward+backward, the
# wait for the gradients after it (DP: gather onto replica 0; DDP: all-reduce not hidden by
# backward), the update, and replica 0's extra work (scatter + replicate + gather: what only
# DP's main thread does). BENCH_DIR=DIR keeps the JSON logs there.
#
#   tests/bench/bench_dp_vs_ddp.sh BUILD [STEPS] [ROUNDS] [REPLICAS...]
#   e.g. tests/bench/bench_dp_vs_ddp.sh build 300 3 2 4
#
# Models, on Fashion-MNIST when it is installed, else synthetic data: the mlp 784-256-128-10 at
# batch 64 per replica, the cnn (32,64 channels with BatchNorm, batch 32 per replica), and a
# wide mlp (784-2048-2048-10, 5.8M parameters) at batch 16, where copying the parameters and
# the gradients costs most against the compute.
set -euo pipefail
BUILD=${1:?usage: bench_dp_vs_ddp.sh BUILD [STEPS] [ROUNDS] [REPLICAS...]}
STEPS=${2:-300}
ROUNDS=${3:-3}
shift $(($# < 3 ? $# : 3))
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(2 4)
DPRUN=$(realpath "$BUILD/dprun")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
export CUDA_VISIBLE_DEVICES=  # the CPU path: threads against processes
if [ -n "${BENCH_DIR:-}" ]; then
  WORK=$BENCH_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/dprun-bench-dp.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
fi

DATA=idx:/usr/share/datasets/fashion-mnist
[ -e /usr/share/datasets/fashion-mnist ] || DATA=synthetic:60000
declare -A MODEL_ARGS=(
  [mlp]="--model mlp --hidden 256,128 --batch-size 64"
  [cnn]="--model cnn --batch-size 32"
  [wide]="--model mlp --hidden 2048,2048 --batch-size 16"
)
MODELS=(mlp cnn wide)
COMMON=(--data "$DATA" --steps "$STEPS" --lr-schedule constant -q)

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "data: $DATA, $STEPS steps per run, $ROUNDS rounds, replicas/ranks: ${COUNTS[*]}"
for round in $(seq 1 "$ROUNDS"); do
  for model in "${MODELS[@]}"; do
    read -r -a margs <<<"${MODEL_ARGS[$model]}"
    for n in "${COUNTS[@]}"; do
      "$DPRUN" --mode dp --replicas "$n" "${margs[@]}" "${COMMON[@]}" \
        --log-json "$WORK/$model.dp.$n.$round.jsonl" >/dev/null
      mpirun --allow-run-as-root --oversubscribe -np "$n" "$DPRUN" "${margs[@]}" "${COMMON[@]}" \
        --log-json "$WORK/$model.ddp.$n.$round.jsonl" >/dev/null
    done
  done
  echo "round $round done" >&2
done

python3 - "$WORK" "$ROUNDS" "${MODELS[*]}" "${COUNTS[@]}" <<'EOF'
import json, statistics, sys
work, rounds, models = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
counts = [int(c) for c in sys.argv[4:]]
WARMUP = 10
med = statistics.median

def steps(path):
    # The faster half of the steps after the warm-up: on a shared machine another process's
    # time slice lands in a step now and then (and in most of a run's steps when the machine
    # is busy), and a replica or rank that lost its core makes everyone wait. The faster half
    # is what the step costs without that; its parts add up to its total.
    recs = [r for r in map(json.loads, open(path)) if r["type"] == "step"]
    recs = recs[WARMUP:] if len(recs) > 2 * WARMUP else recs
    recs.sort(key=lambda r: r["step_ms"])
    return recs[: max(1, len(recs) // 2)]

# Per run: the median of each figure over its steps. DP's forward+backward is the slowest
# replica's, and "hand-off" the rest of the parallel section (starting the replica threads and
# joining them); DDP's "wait" is the all-reduce time not hidden by backward (+ other waiting).
FIGURES = {
    "dp": {
        "step": lambda r: r["step_ms"], "data": lambda r: r["data_ms"],
        "scatter": lambda r: r["scatter_ms"], "replicate": lambda r: r["replicate_ms"],
        "fb": lambda r: r["slowest_replica_ms"],
        "handoff": lambda r: r["parallel_ms"] - r["slowest_replica_ms"],
        "wait": lambda r: r["gather_ms"], "update": lambda r: r["optimizer_ms"],
        "extra": lambda r: r["extra_ms"], "sps": lambda r: r["samples_per_s"],
    },
    "ddp": {
        "step": lambda r: r["step_ms"], "data": lambda r: r["data_ms"],
        "fb": lambda r: r["forward_ms"] + r["backward_ms"],
        "wait": lambda r: r["exposed_comm_ms"] + r["other_wait_ms"],
        "comm": lambda r: r["comm_ms"], "update": lambda r: r["optimizer_ms"],
        "sps": lambda r: r["samples_per_s"],
    },
}

def run(model, mode, n, k):
    s = steps(f"{work}/{model}.{mode}.{n}.{k}.jsonl")
    out = {key: statistics.mean([f(r) for r in s]) for key, f in FIGURES[mode].items()}
    out["sps"] = statistics.mean([r["samples_per_s"] * r["step_ms"] for r in s]) / out["step"]
    return out

def over_rounds(runs):
    return {key: med([r[key] for r in runs]) for key in runs[0]}

f3 = lambda v: f"{v:.3f}"
print()
print("Per step, ms: the mean over the faster half of the steps after 10 warm-up steps (the "
      "parts add up to the step), then the median of the rounds. fwd+bwd: DP's slowest replica, DDP's rank 0; hand-off: the rest of DP's parallel "
      "section (waking the replica threads, joining them); wait for gradients: DP's gather onto "
      "replica 0, DDP's all-reduce not hidden by backward (in brackets: the all-reduce's whole "
      "time); replica 0's extra: scatter + replicate + gather; DP/DDP: the ratio of step times, "
      "per round (its range over the rounds).")
print()
print("| model | N | mode | step | samples/s | data | scatter | replicate | fwd+bwd | hand-off | "
      "wait for gradients | update | replica 0's extra | DP/DDP step |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for model in models:
    for n in counts:
        dps = [run(model, "dp", n, k) for k in range(1, rounds + 1)]
        ddps = [run(model, "ddp", n, k) for k in range(1, rounds + 1)]
        dp, ddp = over_rounds(dps), over_rounds(ddps)
        ratios = [a["step"] / b["step"] for a, b in zip(dps, ddps)]
        print(f"| {model} | {n} | dp | {f3(dp['step'])} | {dp['sps']:,.0f} | {f3(dp['data'])} | "
              f"{f3(dp['scatter'])} | {f3(dp['replicate'])} | {f3(dp['fb'])} | {f3(dp['handoff'])} | "
              f"{f3(dp['wait'])} | {f3(dp['update'])} | {f3(dp['extra'])} "
              f"({100 * dp['extra'] / dp['step']:.0f}% of the step) | "
              f"{med(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")
        print(f"| {model} | {n} | ddp | {f3(ddp['step'])} | {ddp['sps']:,.0f} | {f3(ddp['data'])} | "
              f"- | - | {f3(ddp['fb'])} | - | {f3(ddp['wait'])} ({f3(ddp['comm'])}) | "
              f"{f3(ddp['update'])} | - | 1 |")
EOF
