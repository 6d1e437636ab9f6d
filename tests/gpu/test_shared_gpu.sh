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
run "1 rank, --device cuda, nccl" 0 "backend nccl" 1 --device cuda
run "1 rank, --device cuda --backend mpi (host-staged)" 0 "test accuracy" 1 --device cuda --backend mpi
# A CPU run with the same seed: the GPU run must learn as well (same test accuracy line).
run "1 rank on the CPU (reference)" 0 "test accuracy" 1 --device cpu
NP=$((NGPU + 1))
run "$NP ranks on $NGPU GPU(s) with NCCL: refused" 1 "NCCL refuses two ranks on one GPU" "$NP" \
  --device cuda
run "$NP ranks on $NGPU GPU(s), mpi without the flag: refused" 1 "--allow-device-sharing" "$NP" \
  --device cuda --backend mpi
run "2 ranks sharing a GPU (mpi, host-staged)" 0 "test accuracy" 2 --device cuda --backend mpi \
  --allow-device-sharing
run "4 ranks sharing GPUs (mpi, host-staged)" 0 "test accuracy" 4 --device cuda --backend mpi \
  --allow-device-sharing
exit $FAILED
