#!/usr/bin/env bash
# The GPU check in one command, for a machine with a GPU (one is enough):
#   tests/gpu/run.sh            configure + build (Release), ctest -L gpu, dprun end to end
#                               (tests/gpu/test_shared_gpu.sh), GPU benchmarks
# Environment: BUILD_DIR (default <repo>/build-gpu), JOBS (default: all cores),
# BENCH_TIMEOUT (seconds per benchmark, default 240).
# Exit status: 0 all passed on a GPU; 1 a step failed; 77 no GPU visible (the build and the
# tests still ran, and every GPU test skipped: that is not a GPU verification).
# Fits in 10 minutes on a 16-core H100 machine: the build is the longest step.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
JOBS=${JOBS:-$(nproc)}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-240}
LOG=$BUILD/run-logs
mkdir -p "$LOG"

declare -a ROWS=()
FAILED=0
BUILT=0
row() { ROWS+=("$(printf '%-28s %-8s %7s  %s' "$1" "$2" "$3" "$4")"); }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
say() { printf '\n=== %s\n' "$*"; }

# --- 1. Is there a GPU? -------------------------------------------------------------------
NGPU=0
if command -v nvidia-smi > /dev/null 2>&1 && nvidia-smi -L > "$LOG/nvidia-smi.txt" 2>&1; then
  NGPU=$(grep -c '^GPU ' "$LOG/nvidia-smi.txt" || true)
fi
if [[ -n "${CUDA_VISIBLE_DEVICES+x}" && -z "${CUDA_VISIBLE_DEVICES}" ]]; then NGPU=0; fi
if [[ "$NGPU" -gt 0 ]]; then
  say "GPUs visible: $NGPU"
  cat "$LOG/nvidia-smi.txt"
  row "gpu" "yes" "" "$NGPU visible: $(head -1 "$LOG/nvidia-smi.txt" | cut -c1-60)"
else
  say "NO GPU VISIBLE (nvidia-smi missing or failing, or CUDA_VISIBLE_DEVICES empty)"
  echo "Building and running anyway: every GPU test will SKIP, nothing GPU-side is verified."
  row "gpu" "NONE" "" "no GPU visible: GPU tests skip; exit status 77"
fi

# --- 2. Configure -------------------------------------------------------------------------
say "configure (Release) in $BUILD"
t=$(now)
if cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDPRUN_CUDA=ON \
    > "$LOG/configure.txt" 2>&1; then
  row "configure" "ok" "$(since "$t")" "$(grep -o 'CUDA/NCCL path [A-Z]*' "$LOG/configure.txt")"
else
  tail -30 "$LOG/configure.txt"
  row "configure" "FAILED" "$(since "$t")" "see $LOG/configure.txt"
  FAILED=1
fi

# --- 3. Build the GPU test binary and the GPU benchmarks -----------------------------------
BENCHES=()
for src in "$ROOT"/tests/bench/bench_gpu_*.cpp; do
  [[ -e "$src" ]] && BENCHES+=("$(basename "$src" .cpp)")
done
if [[ $FAILED -eq 0 ]]; then
  say "build: dprun dprun_gpu_tests ${BENCHES[*]} (-j$JOBS)"
  t=$(now)
  if cmake --build "$BUILD" -j "$JOBS" --target dprun dprun_gpu_tests "${BENCHES[@]}" \
      > "$LOG/build.txt" 2>&1; then
    row "build" "ok" "$(since "$t")" "$(grep -ci 'warning' "$LOG/build.txt") warning line(s)"
    BUILT=1
  else
    grep -iE -B2 -A6 'error' "$LOG/build.txt" | head -60
    row "build" "FAILED" "$(since "$t")" "see $LOG/build.txt"
    FAILED=1
  fi
fi

# --- 4. ctest -L gpu ------------------------------------------------------------------------
if [[ $FAILED -eq 0 ]]; then
  say "ctest -L gpu"
  t=$(now)
  XML="$LOG/gpu-tests.xml"
  rm -f "$XML"
  GTEST_OUTPUT="xml:$XML" ctest --test-dir "$BUILD" -L gpu --output-on-failure \
    2>&1 | tee "$LOG/ctest.txt"
  rc=${PIPESTATUS[0]}
  detail="no test report"
  if [[ -f "$XML" ]]; then
    total=$(grep -o '<testsuites tests="[0-9]*"' "$XML" | grep -o '[0-9][0-9]*')
    failures=$(grep -o '<testsuites tests="[0-9]*" failures="[0-9]*"' "$XML" | grep -o '[0-9]*"$' |
      tr -d '"')
    skipped=$(grep -c 'result="skipped"' "$XML")
    total=${total:-0} failures=${failures:-0} skipped=${skipped:-0}
    detail="$total tests: $((total - failures - skipped)) passed, $skipped skipped, $failures failed"
    # The skip reasons, once each: "no GPU: ..." must be visible, not just counted.
    grep -o '<skipped message="[^"]*"' "$XML" | sed 's/^<skipped message="//; s/"$//; s/.*&#x0A;//' |
      sort | uniq -c | sed 's/^/skipped: /' | head -5
  fi
  if [[ $rc -eq 0 ]]; then
    row "ctest -L gpu" "ok" "$(since "$t")" "$detail"
  else
    row "ctest -L gpu" "FAILED" "$(since "$t")" "$detail (see $LOG/ctest.txt)"
    FAILED=1
  fi
fi

# --- 4b. dprun on the GPU end to end, and ranks sharing one GPU (tests/gpu/test_shared_gpu.sh)
if [[ $BUILT -eq 1 && "$NGPU" -gt 0 ]]; then
  say "end to end: tests/gpu/test_shared_gpu.sh"
  t=$(now)
  bash "$ROOT/tests/gpu/test_shared_gpu.sh" "$BUILD" 2>&1 | tee "$LOG/shared-gpu.txt"
  rc=${PIPESTATUS[0]}
  detail="$(grep -c '^PASS' "$LOG/shared-gpu.txt") passed, $(grep -c '^FAIL' "$LOG/shared-gpu.txt") failed"
  if [[ $rc -eq 0 ]]; then
    row "e2e shared GPU" "ok" "$(since "$t")" "$detail"
  else
    row "e2e shared GPU" "FAILED" "$(since "$t")" "$detail (see $LOG/shared-gpu.txt)"
    FAILED=1
  fi
fi

# --- 5. GPU benchmarks -----------------------------------------------------------------------
if [[ $BUILT -eq 1 ]]; then
  for b in "${BENCHES[@]}"; do
    exe="$BUILD/$b"
    if [[ ! -x "$exe" ]]; then
      row "$b" "MISSING" "" "not built"
      FAILED=1
      continue
    fi
    if [[ "$NGPU" -eq 0 ]]; then
      row "$b" "skipped" "" "no GPU"
      continue
    fi
    launch=("$exe")
    if [[ "$NGPU" -ge 2 ]] && command -v mpirun > /dev/null 2>&1; then
      launch=(mpirun --allow-run-as-root --oversubscribe -np "$NGPU" "$exe")
    fi
    say "benchmark: ${launch[*]}"
    t=$(now)
    timeout "$BENCH_TIMEOUT" "${launch[@]}" 2>&1 | tee "$LOG/$b.txt"
    rc=${PIPESTATUS[0]}
    summary=$(grep '^summary:' "$LOG/$b.txt" | tail -1 | sed 's/^summary: //' | cut -c1-110)
    if [[ $rc -eq 0 ]]; then
      row "$b" "ok" "$(since "$t")" "${summary:-ran}"
    else
      row "$b" "FAILED" "$(since "$t")" "exit $rc$([[ $rc -eq 124 ]] && echo ' (timeout)')"
      FAILED=1
    fi
  done
fi

# --- Summary ---------------------------------------------------------------------------------
echo
echo "================================ dprun GPU check ================================"
printf '%-28s %-8s %7s  %s\n' "step" "status" "time" "detail"
for r in "${ROWS[@]}"; do echo "$r"; done
echo "logs: $LOG"
if [[ $FAILED -ne 0 ]]; then
  echo "RESULT: FAILED"
  exit 1
fi
if [[ "$NGPU" -eq 0 ]]; then
  echo "RESULT: NO GPU - built and ran, but every GPU test skipped (exit 77)"
  exit 77
fi
echo "RESULT: PASSED on $NGPU GPU(s)"
exit 0
