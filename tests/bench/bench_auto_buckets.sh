#!/usr/bin/env bash
# Automatic bucket sizing against fixed caps, and the cost model's predictions against what
# the runs measured. Every configuration runs once per round, rounds interleaved and every
# other one reversed (machine noise hits all alike); each run writes a profile (--profile-out) and a JSON log. Prints per
# configuration the median step, communication, exposed communication and the fraction of
# communication hidden (steps after the automatic choice took effect), then
# `dprun predict --validate` over every run (compute from the first default-caps run).
#
# Usage: tests/bench/bench_auto_buckets.sh [BUILD_DIR] [STEPS] [ROUNDS]
# Env:   LAUNCHER  the launcher, word-split (default: mpirun -np 2 on this host); for two
#                emulated hosts, a script that runs mpirun across network namespaces
#        CAPS    fixed --bucket-cap-mb values to compare (default "25 4 1")
#        HIDDEN  (1024,1024,1024), BATCH (256), DATA (Fashion-MNIST if installed, else synthetic)
#        EXTRA   more dprun options (e.g. --no-shm)
set -euo pipefail
BUILD=${1:-build}
STEPS=${2:-80}
ROUNDS=${3:-3}
LAUNCHER=${LAUNCHER:-mpirun --allow-run-as-root --oversubscribe -np 2}
CAPS=${CAPS:-25 4 1}
HIDDEN=${HIDDEN:-1024,1024,1024}
BATCH=${BATCH:-256}
EXTRA=${EXTRA:-}
FMNIST=/usr/share/datasets/fashion-mnist
if [ -z "${DATA:-}" ]; then
  if [ -f "$FMNIST/train-images-idx3-ubyte.gz" ]; then DATA="idx:$FMNIST"; else DATA=synthetic; fi
fi
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OUT=${OUT:-$(mktemp -d /tmp/dprun-auto-buckets.XXXXXX)}
mkdir -p "$OUT"
echo "auto buckets benchmark: MLP 784-${HIDDEN//,/-}-10, batch $BATCH per rank, $STEPS steps x $ROUNDS rounds, $LAUNCHER; files in $OUT"

configs=()
for cap in $CAPS; do configs+=("cap$cap"); done
configs+=(auto)
for round in $(seq 1 "$ROUNDS"); do
  # Every other round in reverse: a machine that slows down over a round then favours no one.
  order=("${configs[@]}")
  if [ $((round % 2)) = 0 ]; then
    order=()
    for ((i = ${#configs[@]} - 1; i >= 0; i--)); do order+=("${configs[$i]}"); done
  fi
  for c in "${order[@]}"; do
    if [ "$c" = auto ]; then caps=(--bucket-cap-mb auto --first-bucket-mb auto); else caps=(--bucket-cap-mb "${c#cap}"); fi
    # shellcheck disable=SC2086
    $LAUNCHER "$BUILD/dprun" --model mlp --hidden "$HIDDEN" --data "$DATA" --batch-size "$BATCH" \
      --steps "$STEPS" --epochs 1000 --quiet "${caps[@]}" $EXTRA \
      --profile-out "$OUT/$c.$round.json" --log-json "$OUT/$c.$round.jsonl"
  done
done

python3 - "$OUT" "$ROUNDS" "${configs[@]}" <<'PY'
import json, statistics, sys
out, rounds, configs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
med = statistics.median
print(f"\n{'config':>8} {'buckets':>8} {'step ms':>8} {'comm ms':>8} {'exposed':>8} {'hidden':>7}   per round: step ms / hidden")
for c in configs:
    rows = []
    for r in range(1, rounds + 1):
        prof = json.load(open(f"{out}/{c}.{r}.json"))
        first = prof["profiled_steps"][1] + 2  # after the choice took effect
        steps = [s for s in map(json.loads, open(f"{out}/{c}.{r}.jsonl")) if s.get("type") == "step" and s["step"] >= first]
        comm = sum(s["comm_ms"] for s in steps)
        exposed = sum(s["exposed_comm_ms"] for s in steps)
        rows.append((med(s["step_ms"] for s in steps), med(s["comm_ms"] for s in steps),
                     med(s["exposed_comm_ms"] for s in steps), 1 - exposed / comm if comm else 1,
                     len(prof["buckets"]["assignment"])))
    print(f"{c:>8} {med(x[4] for x in rows):>8} {med(x[0] for x in rows):>8.1f} {med(x[1] for x in rows):>8.1f} "
          f"{med(x[2] for x in rows):>8.1f} {med(x[3] for x in rows):>6.0%}   "
          + "  ".join(f"{x[0]:.1f}/{x[3]:.0%}" for x in rows))
PY
first=$(echo "$CAPS" | awk '{print $1}')
runs=()
for round in $(seq 1 "$ROUNDS"); do for c in "${configs[@]}"; do runs+=(--validate "$OUT/$c.$round.json"); done; done
# The measured network needs a profile of several ranks; one rank's is predicted on the H100 preset.
"$BUILD/dprun" predict --profile "$OUT/cap$first.1.json" --network measured --gpus 2,4,8 "${runs[@]}" 2>/dev/null ||
  "$BUILD/dprun" predict --profile "$OUT/cap$first.1.json" "${runs[@]}"
