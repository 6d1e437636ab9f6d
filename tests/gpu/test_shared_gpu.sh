#!/usr/bin/env bash
# dprun on a GPU end to end, including several ranks SHARING one GPU (the MPI backend's host
# staging): how multi-rank GPU training is checked on a one-GPU machine.
#   tests/gpu/test_shared_gpu.sh DIR     DIR holds dprun: a build folder, or a kit's bin/
# (run by tests/gpu/steps.sh, for tests/gpu/run.sh and tests/gpu/kit-run.sh, after the MPI
# staging tests: dprun_gpu_tests --gtest_filter='MpiStaging.*' under mpirun at 2 and 4 ranks).
# Exit status: 0 passed; 1 a check failed; 77 no GPU visible.
set -uo pipefail
DIR=${1:?usage: test_shared_gpu.sh DIR (holding dprun)}
DPRUN=$DIR/dprun
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
FAILED=0
pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; FAILED=1; }

if ! nvidia-smi -L > /dev/null 2>&1; then
  echo "no GPU visible: skipped"
  exit 77
fi
[[ -x "$DPRUN" ]] || { echo "FAIL: $DPRUN not built"; exit 1; }
COMMON=(--data synthetic:4096 --synthetic-test-size 512 --batch-size 64 --steps 30 --eval
        --log-interval 10 --timeout 60)

# run NAME EXPECTED_RC PATTERN NP ARGS...: the exit status and a line of the output.
run() {
  local name=$1 want=$2 pattern=$3 np=$4
  shift 4
  local rc=0
  timeout 300 "${MPIRUN[@]}" -np "$np" "$DPRUN" "${COMMON[@]}" "$@" > "$WORK/out" 2>&1 || rc=$?
  if { [[ $want -eq 0 && $rc -eq 0 ]] || [[ $want -ne 0 && $rc -ne 0 && $rc -ne 124 ]]; } &&
     grep -q -- "$pattern" "$WORK/out"; then
    pass "$name"
  else
    fail "$name (rc $rc, expected $([[ $want -eq 0 ]] && echo 0 || echo 'non-zero'); looked for '$pattern')"
    tail -20 "$WORK/out"
  fi
}

NGPU=$(nvidia-smi -L | grep -c '^GPU ')
run "1 rank, --device cuda, nccl" 0 "backend nccl" 1 --device cuda --log-json "$WORK/gpu.jsonl"
run "1 rank, --device cuda --backend mpi (host-staged)" 0 "test accuracy" 1 --device cuda --backend mpi
# CPU runs with the same seed: the reference loss curves for fp32 and bf16.
run "1 rank on the CPU (reference)" 0 "test accuracy" 1 --device cpu --log-json "$WORK/cpu.jsonl"
run "1 rank on the CPU, bf16 (reference)" 0 "test accuracy" 1 --device cpu --precision bf16 \
  --log-json "$WORK/cpu_bf16.jsonl"
run "1 rank, --device cuda --precision bf16, nccl" 0 "bf16 mixed precision" 1 --device cuda \
  --precision bf16 --log-json "$WORK/gpu_bf16.jsonl"
run "1 rank, bf16 + --comm-hook bf16_compress, nccl" 0 "test accuracy" 1 --device cuda \
  --precision bf16 --comm-hook bf16_compress
# GPU vs CPU training of the same MLP: fp32 curves agree to float32 rounding (summation order),
# bf16 curves to bfloat16 noise.
if python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
def losses(name):
    return [r["loss"] for r in map(json.loads, open(f"{w}/{name}.jsonl")) if r["type"] == "step"]
for gpu, cpu, tol in (("gpu", "cpu", 1e-3), ("gpu_bf16", "cpu_bf16", 3e-2)):
    g, c = losses(gpu), losses(cpu)
    assert len(g) == len(c) == 30, (gpu, len(g), len(c))
    worst = max(abs(a - b) / max(abs(b), 1e-3) for a, b in zip(g, c))
    print(f"{gpu} vs {cpu}: largest relative loss difference {worst:.2e} (tolerance {tol})")
    assert worst <= tol, (gpu, worst)
PY
then pass "GPU loss curves follow the CPU's (fp32 and bf16)"; else fail "GPU loss curves differ from the CPU's"; fi
# The cnn and the gpt on the GPU against the CPU: same seed, same data, loss curves that agree
# to float32 rounding (every layer's kernel is summed in another order on the GPU).
python3 - "$WORK" <<'PY'
import os, random, sys
w = sys.argv[1]; rng = random.Random(4)
os.makedirs(f"{w}/cifar", exist_ok=True)
def rec(label):
    px = bytearray([label])
    for c in range(3):
        for i in range(1024):
            px.append(max(0, min(255, (label * 23 + c * 40) % 256 + rng.randint(-50, 50))))
    return bytes(px)
for name, n in [(f"data_batch_{i}.bin", 64) for i in range(1, 6)] + [("test_batch.bin", 64)]:
    with open(f"{w}/cifar/{name}", "wb") as f:
        for _ in range(n): f.write(rec(rng.randrange(10)))
words = "the quick brown fox jumps over a lazy dog while seven birds sing".split()
with open(f"{w}/text.txt", "w") as f:
    for _ in range(3000): f.write(" ".join(rng.choice(words) for _ in range(10)) + ".\n")
PY
"$DPRUN" prepare-text --input "$WORK/text.txt" --output "$WORK/train.bin" --val-output "$WORK/val.bin" > /dev/null
CNN=(--model cnn --channels 8,16 --fc-hidden 32 --data "cifar10:$WORK/cifar" --batch-size 16 --steps 30)
GPT=(--model gpt --layers 2 --heads 2 --embed 64 --context 64 --data "tokens:$WORK/train.bin"
     --val-data "tokens:$WORK/val.bin" --batch-size 8 --steps 30 --eval-batches 4)
for m in cnn gpt; do
  if [[ $m == cnn ]]; then args=("${CNN[@]}"); else args=("${GPT[@]}"); fi
  run "$m on the GPU" 0 "$m " 1 --device cuda "${args[@]}" --log-json "$WORK/$m.gpu.jsonl"
  run "$m on the CPU (reference)" 0 "$m " 1 --device cpu "${args[@]}" --log-json "$WORK/$m.cpu.jsonl"
  run "$m on the GPU, bf16" 0 "bf16 mixed precision" 1 --device cuda --precision bf16 "${args[@]}"
  run "$m, 2 ranks sharing the GPU (mpi, host-staged)" 0 "$m " 2 --device cuda --backend mpi \
    --allow-device-sharing "${args[@]}"
done
if python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
def losses(name):
    return [r["loss"] for r in map(json.loads, open(f"{w}/{name}.jsonl")) if r["type"] == "step"]
for m in ("cnn", "gpt"):
    g, c = losses(f"{m}.gpu"), losses(f"{m}.cpu")
    assert len(g) == len(c) == 30, (m, len(g), len(c))
    worst = max(abs(a - b) / max(abs(b), 1e-3) for a, b in zip(g, c))
    print(f"{m}: GPU vs CPU largest relative loss difference {worst:.2e} (tolerance 2e-3)")
    assert worst <= 2e-3, (m, worst)
PY
then pass "cnn and gpt on the GPU follow the CPU"; else fail "cnn or gpt on the GPU differ from the CPU"; fi
NP=$((NGPU + 1))
run "$NP ranks on $NGPU GPU(s) with NCCL: refused" 1 "NCCL refuses two ranks on one GPU" "$NP" \
  --device cuda
run "$NP ranks on $NGPU GPU(s), mpi without the flag: refused" 1 "--allow-device-sharing" "$NP" \
  --device cuda --backend mpi
run "2 ranks sharing a GPU (mpi, host-staged)" 0 "test accuracy" 2 --device cuda --backend mpi \
  --allow-device-sharing
run "4 ranks sharing GPUs (mpi, host-staged)" 0 "test accuracy" 4 --device cuda --backend mpi \
  --allow-device-sharing
run "2 ranks sharing a GPU, bf16 + bf16_compress (mpi, host-staged)" 0 "test accuracy" 2 \
  --device cuda --backend mpi --allow-device-sharing --precision bf16 --comm-hook bf16_compress
exit $FAILED
