#!/usr/bin/env bash
# Scaling and overlap benchmark of the CPU path, all measured side by side in one run:
#   - OpenBLAS sgemm at the MLP's own GEMM shapes -> the compute-bound limit (samples/s)
#   - dprun with 1, 2 and 4 ranks, each with and without --no-overlap
# Rounds are interleaved (every configuration once per round) so that machine noise hits
# all of them alike; each figure is the median over rounds of the median step.
#
# Usage: tests/bench/bench_scaling.sh [BUILD_DIR] [STEPS] [ROUNDS]
# Env:   DATA (default Fashion-MNIST if installed, else synthetic), BATCH (64), HIDDEN (256,128)
set -euo pipefail
BUILD=${1:-build}
STEPS=${2:-300}
ROUNDS=${3:-3}
BATCH=${BATCH:-64}
HIDDEN=${HIDDEN:-256,128}
FMNIST=/usr/share/datasets/fashion-mnist
if [ -z "${DATA:-}" ]; then
  if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then DATA="idx:$FMNIST"; else DATA=synthetic; fi
fi
CORES=$(nproc --all)
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OUT=$(mktemp -d /tmp/dprun-bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

echo "dprun scaling benchmark: MLP 784-${HIDDEN//,/-}-10, batch $BATCH per rank, $STEPS steps x $ROUNDS rounds, data $DATA, $CORES cores, 1 BLAS thread per rank"
for round in $(seq 1 "$ROUNDS"); do
  "$BUILD/bench_sgemm" --batch "$BATCH" --layers "784,$HIDDEN,10" --json >"$OUT/sgemm.$round.json"
  for np in 1 2 4; do
    for mode in overlap no-overlap; do
      extra=()
      [ "$mode" = no-overlap ] && extra=(--no-overlap)
      mpirun --allow-run-as-root --oversubscribe -np "$np" "$BUILD/dprun" --model mlp --hidden "$HIDDEN" \
        --data "$DATA" --batch-size "$BATCH" --steps "$STEPS" --epochs 1000 --optimizer sgd --lr 0.05 \
        --momentum 0.9 --quiet --log-json "$OUT/np$np.$mode.$round.jsonl" "${extra[@]}"
    done
  done
done

python3 - "$OUT" "$ROUNDS" "$CORES" <<'PY'
import json, statistics, sys
out, rounds, cores = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
med = statistics.median
limit = med(json.load(open(f"{out}/sgemm.{r}.json"))["limit_samples_per_s"] for r in range(1, rounds + 1))
gemm_ms = med(json.load(open(f"{out}/sgemm.{r}.json"))["gemm_ms_per_step"] for r in range(1, rounds + 1))
print(f"\nsgemm at the layer shapes: {gemm_ms:.3f} ms per step -> compute-bound limit {limit:,.0f} samples/s per core")
rows = {}
for np in (1, 2, 4):
    for mode in ("overlap", "no-overlap"):
        per_round = []
        for r in range(1, rounds + 1):
            steps = [json.loads(l) for l in open(f"{out}/np{np}.{mode}.{r}.jsonl")]
            steps = [s for s in steps if s.get("type") == "step"][10:]  # skip warm-up
            # Throughput from wall-clock time (gaps between steps included), not per-step rates.
            samples = sum(s["samples_per_s"] * s["step_ms"] / 1000 for s in steps[1:])
            wall = steps[-1]["wall_s"] - steps[0]["wall_s"]
            per_round.append((samples / wall, med(s["comm_ms"] for s in steps),
                              med(s["exposed_comm_ms"] for s in steps),
                              sum(s["exposed_comm_ms"] for s in steps), sum(s["comm_ms"] for s in steps)))
        sps = med(p[0] for p in per_round)
        comm = med(p[1] for p in per_round)
        exposed = med(p[2] for p in per_round)
        overlap = max(0.0, 1 - sum(p[3] for p in per_round) / max(1e-9, sum(p[4] for p in per_round)))
        rows[(np, mode)] = (sps, comm, exposed, overlap)
base = rows[(1, "overlap")][0]
print(f"\n{'ranks':>5} {'mode':>10} {'samples/s':>11} {'vs 1 rank':>9} {'of limit':>8} {'comm ms':>8} {'exposed':>8} {'overlap':>7}")
for (np, mode), (sps, comm, exposed, overlap) in rows.items():
    lim = limit * min(np, cores)
    print(f"{np:>5} {mode:>10} {sps:>11,.0f} {sps / base:>8.2f}x {sps / lim:>8.0%} {comm:>8.3f} {exposed:>8.3f} {overlap:>7.0%}")
print(f"\ntargets: 1 rank >= 50% of the limit: {rows[(1, 'overlap')][0] / limit:.0%}; "
      f"2 ranks >= 1.8x 1 rank: {rows[(2, 'overlap')][0] / base:.2f}x")
PY
