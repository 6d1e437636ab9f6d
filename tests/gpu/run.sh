#!/usr/bin/env bash
# The GPU check in one command, building on a machine with a GPU (one is enough):
#   tests/gpu/run.sh            configure + build (Release), then the steps of tests/gpu/steps.sh:
#                               dprun --version and mpirun, the GPU test binary, the MPI staging
#                               tests at 2 and 4 ranks, dprun end to end
#                               (tests/gpu/test_shared_gpu.sh), the GPU benchmarks
# Where the GPU machine lacks the build's dependencies (Open MPI, Boost, OpenBLAS, gtest...),
# pack a kit here instead and run that there: tests/gpu/pack.sh, tests/gpu/kit-run.sh
# (docs/gpu-session.md).
# Environment: BUILD_DIR (default <repo>/build-gpu), JOBS (default: all cores),
# BENCH_TIMEOUT (seconds per benchmark, default 240), GPU_TESTS_TIMEOUT (default 300).
# Exit status: 0 all passed on a GPU; 1 a step failed; 77 no GPU visible (the build and the
# tests still ran, and every GPU test skipped: that is not a GPU verification).
# Fits in 10 minutes on a 16-core H100 machine: the build is the longest step.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
JOBS=${JOBS:-$(nproc)}
LOG=$BUILD/run-logs
mkdir -p "$LOG"
# shellcheck source=tests/gpu/steps.sh
source "$ROOT/tests/gpu/steps.sh"

step_gpu_detect

# --- Configure ---------------------------------------------------------------------------------
say "configure (Release) in $BUILD"
t=$(now)
if cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDPRUN_CUDA=ON \
    > "$LOG/configure.txt" 2>&1; then
  row "configure" "ok" "$(since "$t")" "$(grep -o 'CUDA/NCCL path [A-Z]*' "$LOG/configure.txt")"
else
  tail -30 "$LOG/configure.txt"
  failed_row "configure" "$(since "$t")" "see $LOG/configure.txt"
fi

# --- Build dprun, the GPU test binary and the GPU benchmarks -------------------------------------
if [[ $STEPS_FAILED -eq 0 ]]; then
  say "build: dprun dprun_gpu_tests ${GPU_BENCHES[*]} (-j$JOBS)"
  t=$(now)
  if cmake --build "$BUILD" -j "$JOBS" --target dprun dprun_gpu_tests "${GPU_BENCHES[@]}" \
      > "$LOG/build.txt" 2>&1; then
    row "build" "ok" "$(since "$t")" "$(grep -ci 'warning' "$LOG/build.txt") warning line(s)"
  else
    grep -iE -B2 -A6 'error' "$LOG/build.txt" | head -60
    failed_row "build" "$(since "$t")" "see $LOG/build.txt"
  fi
fi

if [[ $STEPS_FAILED -eq 0 ]]; then
  step_smoke "$BUILD/dprun"
  run_gpu_steps "$BUILD/dprun" "$BUILD/tests/dprun_gpu_tests" "$BUILD"
fi
steps_finish "dprun GPU check"
exit $?
