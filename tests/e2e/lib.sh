# Shared by the end-to-end tests: `source lib.sh DPRUN MPIEXEC`.
set -uo pipefail
DPRUN=${1:?usage: test.sh PATH/TO/dprun PATH/TO/mpiexec}
MPIEXEC=${2:-mpirun}
BUILD=$(dirname "$DPRUN")
MAKE_IDX="$BUILD/make_idx"
WORK=$(mktemp -d /tmp/dprun-e2e.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
# These are the CPU path's end-to-end tests: hide any GPU, or --device auto would pick CUDA and
# NCCL on a GPU machine (and refuse 4 ranks on one GPU), and "--device cuda without a GPU"
# could not be checked there. The GPU end to end lives in tests/gpu/test_shared_gpu.sh.
export CUDA_VISIBLE_DEVICES=
FAILURES=0

mpi() {  # mpi NP ARGS...: dprun under mpirun, with a hard time limit so a hang fails the test
  local np=$1
  shift
  timeout 120 "$MPIEXEC" --allow-run-as-root --oversubscribe -np "$np" "$DPRUN" "$@"
}

fail() {
  echo "FAIL: $*"
  FAILURES=$((FAILURES + 1))
}

pass() { echo "ok: $*"; }

finish() {
  if [ "$FAILURES" -gt 0 ]; then
    echo "$FAILURES check(s) failed"
    exit 1
  fi
  echo "all checks passed"
}
