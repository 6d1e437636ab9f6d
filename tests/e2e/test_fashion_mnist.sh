#!/usr/bin/env bash
# The README's training command on the real Fashion-MNIST: 4 ranks must reach at least the
# dataset's published MLP baseline (MLP 256-128-100: 0.8833 test accuracy).
source "$(dirname "$0")/lib.sh" "$@"
DATA=/usr/share/datasets/fashion-mnist
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: $DATA not installed (apt-get install dataset-fashion-mnist)"
  exit 77
fi
cd "$WORK"
if mpi 4 --model mlp --hidden 256,128 --data "idx:$DATA" --epochs 10 --batch-size 64 --optimizer sgd \
    --lr 0.05 --momentum 0.9 --eval --log-json run.jsonl --dump-params final.bin >out.txt 2>&1; then
  pass "trained"
else
  fail "training failed"; cat out.txt
fi
python3 - <<'PY' && pass "reaches the published baseline" || fail "below the published baseline"
import json
recs = [json.loads(l) for l in open("run.jsonl")]
acc = [r["test_accuracy"] for r in recs if r["type"] == "eval"][-1]
print(f"final test accuracy {acc:.4f} (baseline 0.8833)")
assert acc >= 0.8833
PY
finish
