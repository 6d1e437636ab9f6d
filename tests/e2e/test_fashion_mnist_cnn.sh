#!/usr/bin/env bash
# The cnn on the real Fashion-MNIST with the model's own defaults, exactly as a user types it:
# 4 ranks, 5 epochs must reach 0.92 test accuracy (the dataset's "2 Conv+pooling" baseline is
# 0.916, "+BN" 0.934).
source "$(dirname "$0")/lib.sh" "$@"
DATA=/usr/share/datasets/fashion-mnist
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: $DATA not installed (apt-get install dataset-fashion-mnist)"
  exit 77
fi
cd "$WORK"
if timeout 900 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 4 "$DPRUN" --model cnn --data "idx:$DATA" \
    --epochs 5 --eval --log-json run.jsonl >out.txt 2>&1; then
  pass "trained"
else
  fail "training failed"; tail -20 out.txt
fi
python3 - <<'PY' && pass "reaches 0.92" || fail "below 0.92"
import json
recs = [json.loads(l) for l in open("run.jsonl")]
acc = [r["test_accuracy"] for r in recs if r["type"] == "eval"]
print("test accuracy per epoch:", " ".join(f"{a:.4f}" for a in acc))
assert len(acc) == 5 and acc[-1] >= 0.92
PY
finish
