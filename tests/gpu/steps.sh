# shellcheck shell=bash
# The steps of the GPU check, shared by tests/gpu/run.sh (builds on the GPU machine) and
# tests/gpu/kit-run.sh (runs a kit that tests/gpu/pack.sh packed elsewhere). Sourced after
# the caller has set ROOT (the repo root) and LOG (a folder for the logs, one file a step);
# optional: STEPS_BUDGET (seconds for all the steps together, counted from the sourcing; 0, the
# default: no limit), BENCH_TIMEOUT (seconds a benchmark, default 240), GPU_TESTS_TIMEOUT
# (default 300), NO_GPU_REASON (set: the GPU is taken as absent, e.g. no driver library),
# STEPS_NOTE (said after the result, e.g. that the kit is stale).
# Each step runs under `timeout`, logs to $LOG, adds a row to the table and never stops the
# steps after it. steps_finish prints the table and returns the exit status: 0 all passed on
# a GPU; 1 a step failed (or was left no time); 77 no GPU (nothing failed, GPU steps skipped).

declare -a STEP_ROWS=()
STEPS_FAILED=0
NGPU=0
STEPS_T0=$(date +%s)
STEPS_BUDGET=${STEPS_BUDGET:-0}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-240}
GPU_TESTS_TIMEOUT=${GPU_TESTS_TIMEOUT:-300}
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# mpirun gives its ranks a terminal, and gtest would colour the lines the steps count.
export GTEST_COLOR=no

row() { STEP_ROWS+=("$(printf '%-26s %-8s %7s  %s' "$1" "$2" "$3" "$4")"); }
failed_row() { row "$1" "FAILED" "$2" "$3"; STEPS_FAILED=1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
say() { printf '\n=== %s\n' "$*"; }
timed_out() { [[ $1 -eq 124 || $1 -eq 137 ]] && echo " (timed out)"; }

# step_time WANT: the seconds a step may run: WANT, or less when STEPS_BUDGET has less left
# (keeping 20 s for the table and the logs); 0 when under 10 s would be left.
step_time() {
  local want=$1 left
  if [[ $STEPS_BUDGET -gt 0 ]]; then
    left=$((STEPS_BUDGET - ($(date +%s) - STEPS_T0) - 20))
    [[ $left -lt $want ]] && want=$left
  fi
  [[ $want -lt 10 ]] && want=0
  echo "$want"
}

# run_timed NAME WANT LOGFILE CMD...: CMD under timeout (TERM, then KILL 10 s later), its output
# in LOGFILE; returns CMD's status (124: timed out). With no time left: row "NO TIME", status 125.
run_timed() {
  local name=$1 secs logf=$3
  secs=$(step_time "$2")
  shift 3
  if [[ $secs -eq 0 ]]; then
    row "$name" "NO TIME" "" "the time budget (STEPS_BUDGET=${STEPS_BUDGET}s) ran out first"
    STEPS_FAILED=1
    return 125
  fi
  timeout -k 10 "$secs" "$@" > "$logf" 2>&1
}

# gtest_counts FILE: "N passed, N skipped, N failed" from a gtest console log (one process).
gtest_counts() {
  awk '/^\[  PASSED  \] [0-9]+ test/ { p = $4 } /^\[  SKIPPED \] [0-9]+ test/ { s = $4 }
       /^\[  FAILED  \] [0-9]+ test/ { f = $4 }
       END { printf "%d passed, %d skipped, %d failed", p, s, f }' "$1"
}

# --- Is there a GPU? ---------------------------------------------------------------------------
step_gpu_detect() {
  NGPU=0
  if [[ -z "${NO_GPU_REASON:-}" ]] && command -v nvidia-smi > /dev/null 2>&1 &&
     timeout 60 nvidia-smi -L > "$LOG/nvidia-smi.txt" 2>&1; then
    NGPU=$(grep -c '^GPU ' "$LOG/nvidia-smi.txt" || true)
  fi
  if [[ -n "${CUDA_VISIBLE_DEVICES+x}" && -z "${CUDA_VISIBLE_DEVICES}" ]]; then
    NGPU=0
    NO_GPU_REASON=${NO_GPU_REASON:-CUDA_VISIBLE_DEVICES is empty}
  fi
  if [[ "$NGPU" -gt 0 ]]; then
    say "GPUs visible: $NGPU"
    cat "$LOG/nvidia-smi.txt"
    timeout 60 nvidia-smi --query-gpu=driver_version,memory.total --format=csv,noheader \
      >> "$LOG/nvidia-smi.txt" 2>&1
    row "gpu" "yes" "" "$NGPU visible: $(head -1 "$LOG/nvidia-smi.txt" | cut -c1-60)"
  else
    NO_GPU_REASON=${NO_GPU_REASON:-nvidia-smi missing or failing}
    say "NO GPU VISIBLE ($NO_GPU_REASON)"
    echo "no GPU: GPU steps skipped; nothing GPU-side is verified."
    row "gpu" "NONE" "" "no GPU ($NO_GPU_REASON): GPU steps skipped; exit status 77"
  fi
}

# --- CPU-runnable checks: dprun starts, mpirun starts two ranks, dprun trains on the CPU ---------
# smoke_row NAME RC T LOGFILE OK DETAIL: the row of a smoke check (nothing when it had no time).
smoke_row() {
  local name=$1 rc=$2 t=$3 logf=$4 ok=$5 detail=$6
  [[ $rc -eq 125 ]] && return
  if [[ $rc -eq 0 && $ok -eq 1 ]]; then
    row "$name" "ok" "$(since "$t")" "$detail"
  else
    tail -15 "$logf"
    failed_row "$name" "$(since "$t")" "exit $rc$(timed_out "$rc"): $detail"
  fi
}

step_smoke() {
  local dprun=$1 t rc ranks acc
  t=$(now)
  run_timed "dprun --version" 30 "$LOG/dprun-version.txt" "$dprun" --version
  smoke_row "dprun --version" $? "$t" "$LOG/dprun-version.txt" 1 \
    "$(head -1 "$LOG/dprun-version.txt" | cut -c1-70)"

  t=$(now)
  # shellcheck disable=SC2016  # expanded by each rank's shell
  run_timed "mpirun -np 2" 60 "$LOG/mpirun-np2.txt" \
    "${MPIRUN[@]}" -np 2 sh -c 'echo "rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE"'
  rc=$?
  ranks=$(grep -c '^rank [0-9] of 2$' "$LOG/mpirun-np2.txt")
  smoke_row "mpirun -np 2" $rc "$t" "$LOG/mpirun-np2.txt" $((ranks == 2)) \
    "$ranks of 2 ranks ran ($(command -v mpirun))"

  # dprun trains on the CPU: alone (MPI started without mpirun), then as 2 ranks.
  local -a train=("$dprun" --device cpu --data synthetic:2048 --synthetic-test-size 256
    --batch-size 64 --steps 20 --eval --log-interval 10 --timeout 60)
  t=$(now)
  OPENBLAS_NUM_THREADS=1 run_timed "dprun cpu, no mpirun" 90 "$LOG/dprun-cpu-np1.txt" "${train[@]}"
  rc=$?
  acc=$(grep -o 'test accuracy *[0-9.]*' "$LOG/dprun-cpu-np1.txt" | tail -1 | tr -s ' ')
  smoke_row "dprun cpu, no mpirun" $rc "$t" "$LOG/dprun-cpu-np1.txt" $((${#acc} > 0)) \
    "1 rank (MPI singleton): ${acc:-no test accuracy line}"
  t=$(now)
  OPENBLAS_NUM_THREADS=1 run_timed "dprun cpu, mpirun -np 2" 90 "$LOG/dprun-cpu-np2.txt" \
    "${MPIRUN[@]}" -np 2 "${train[@]}"
  rc=$?
  acc=$(grep -o 'test accuracy *[0-9.]*' "$LOG/dprun-cpu-np2.txt" | tail -1 | tr -s ' ')
  smoke_row "dprun cpu, mpirun -np 2" $rc "$t" "$LOG/dprun-cpu-np2.txt" $((${#acc} > 0)) \
    "2 ranks: ${acc:-no test accuracy line}"
}

# --- The GPU test binary, every test in one process ----------------------------------------------
step_gpu_tests() {
  local bin=$1 t rc xml=$LOG/gpu-tests.xml detail="no test report"
  say "gpu tests: $bin"
  rm -f "$xml"
  t=$(now)
  run_timed "gpu tests" "$GPU_TESTS_TIMEOUT" "$LOG/gpu-tests.txt" "$bin" "--gtest_output=xml:$xml"
  rc=$?
  [[ $rc -eq 125 ]] && return
  if [[ -f "$xml" ]]; then
    local total failures skipped
    total=$(grep -o '<testsuites tests="[0-9]*"' "$xml" | grep -o '[0-9][0-9]*')
    failures=$(grep -o '<testsuites tests="[0-9]*" failures="[0-9]*"' "$xml" | grep -o '[0-9]*"$' |
      tr -d '"')
    skipped=$(grep -c 'result="skipped"' "$xml")
    total=${total:-0} failures=${failures:-0} skipped=${skipped:-0}
    detail="$total tests: $((total - failures - skipped)) passed, $skipped skipped, $failures failed"
    # The skip reasons, once each: "no GPU: ..." must be visible, not just counted.
    grep -o '<skipped message="[^"]*"' "$xml" | sed 's/^<skipped message="//; s/"$//; s/.*&#x0A;//' |
      sort | uniq -c | sed 's/^/skipped: /' | head -5
  else
    detail="$(gtest_counts "$LOG/gpu-tests.txt") (no XML report)"
  fi
  grep '^\[  FAILED  \] [A-Za-z]' "$LOG/gpu-tests.txt" | sort -u | head -20
  if [[ "$NGPU" -gt 0 ]] && grep -q '<skipped message="[^"]*no GPU' "$xml" 2> /dev/null; then
    failed_row "gpu tests" "$(since "$t")" "$detail; nvidia-smi sees a GPU, CUDA does not: tests skipped 'no GPU'"
  elif [[ $rc -eq 0 ]]; then
    row "gpu tests" "ok" "$(since "$t")" "$detail"
  else
    tail -5 "$LOG/gpu-tests.txt"
    failed_row "gpu tests" "$(since "$t")" "exit $rc$(timed_out $rc): $detail"
  fi
}

# --- compute-sanitizer memcheck over the kernel and layer tests (out-of-bounds and misaligned
# accesses, leaks, errors hidden by asynchronous launches). Slow (10-100x), so a subset and last.
step_sanitizer() {
  local bin=$1 t rc san
  san=$(command -v compute-sanitizer ||
    find /usr/local -maxdepth 3 -path '*/bin/compute-sanitizer' 2> /dev/null | head -1)
  if [[ "$NGPU" -eq 0 ]]; then row "compute-sanitizer" "skipped" "" "no GPU"; return; fi
  if [[ -z "$san" ]]; then row "compute-sanitizer" "skipped" "" "not installed"; return; fi
  say "compute-sanitizer memcheck: $(basename "$bin") (kernels, bf16 ops, layers)"
  t=$(now)
  run_timed "compute-sanitizer" "${SANITIZER_TIMEOUT:-180}" "$LOG/sanitizer.txt" \
    "$san" --tool memcheck --leak-check full --error-exitcode 3 "$bin" \
    --gtest_filter='CudaElementwise*:CudaOptim*:CudaCrossEntropy*:CudaBf16*:CudaLayers*:CudaMixedPrecision*:PinnedLoader*'
  rc=$?
  [[ $rc -eq 125 ]] && return
  grep -E '^========= (ERROR SUMMARY|Invalid|Program hit|Leaked)' "$LOG/sanitizer.txt" | sort | uniq -c | head -10
  if [[ $rc -eq 0 ]]; then
    row "compute-sanitizer" "ok" "$(since "$t")" "$(grep -m1 'ERROR SUMMARY' "$LOG/sanitizer.txt" | sed 's/^=* *//')"
  else
    failed_row "compute-sanitizer" "$(since "$t")" "exit $rc$(timed_out $rc): see $LOG/sanitizer.txt"
  fi
}

# --- The MPI backend's host staging of CUDA tensors: NP ranks sharing the GPU(s) ------------------
step_mpi_staging() {
  local bin=$1 np=$2 t rc name="MpiStaging np$2"
  if [[ "$NGPU" -eq 0 ]]; then row "$name" "skipped" "" "no GPU"; return; fi
  say "$name: ${MPIRUN[*]} -np $np $(basename "$bin") --gtest_filter='MpiStaging.*'"
  t=$(now)
  run_timed "$name" 180 "$LOG/mpi-staging-np$np.txt" \
    "${MPIRUN[@]}" -np "$np" "$bin" --gtest_filter='MpiStaging.*'
  rc=$?
  [[ $rc -eq 125 ]] && return
  local passed skipped detail
  passed=$(grep -c '^\[  PASSED  \] [1-9]' "$LOG/mpi-staging-np$np.txt")
  skipped=$(grep -c '^\[  SKIPPED \] [1-9]' "$LOG/mpi-staging-np$np.txt")
  detail="$passed of $np ranks passed on $NGPU GPU(s)"
  [[ $skipped -gt 0 ]] && detail+=", $skipped skipped"
  if [[ $rc -eq 0 && $passed -eq $np ]]; then
    row "$name" "ok" "$(since "$t")" "$detail"
  else
    grep -E '^\[  FAILED  \]|Failure|rror' "$LOG/mpi-staging-np$np.txt" | sort -u | head -20
    tail -10 "$LOG/mpi-staging-np$np.txt"
    failed_row "$name" "$(since "$t")" "exit $rc$(timed_out $rc): $detail"
  fi
}

# --- dprun on the GPU end to end, ranks sharing one GPU (tests/gpu/test_shared_gpu.sh) ----------
step_shared_gpu() {
  local bindir=$1 t rc
  if [[ "$NGPU" -eq 0 ]]; then row "e2e shared GPU" "skipped" "" "no GPU"; return; fi
  say "end to end: tests/gpu/test_shared_gpu.sh $bindir"
  t=$(now)
  run_timed "e2e shared GPU" 300 "$LOG/shared-gpu.txt" bash "$ROOT/tests/gpu/test_shared_gpu.sh" "$bindir"
  rc=$?
  [[ $rc -eq 125 ]] && return
  grep -E '^(PASS|FAIL)' "$LOG/shared-gpu.txt"
  local detail
  detail="$(grep -c '^PASS' "$LOG/shared-gpu.txt") passed, $(grep -c '^FAIL' "$LOG/shared-gpu.txt") failed"
  if [[ $rc -eq 0 ]]; then
    row "e2e shared GPU" "ok" "$(since "$t")" "$detail"
  else
    failed_row "e2e shared GPU" "$(since "$t")" "exit $rc$(timed_out $rc): $detail"
  fi
}

# --- GPU benchmarks: each bench_gpu_* in BINDIR, one rank per GPU --------------------------------
step_benchmarks() {
  local bindir=$1 exe b t rc
  local -a launch
  for b in "${GPU_BENCHES[@]}"; do
    exe=$bindir/$b
    if [[ ! -x "$exe" ]]; then failed_row "$b" "" "not built"; continue; fi
    if [[ "$NGPU" -eq 0 ]]; then row "$b" "skipped" "" "no GPU"; continue; fi
    launch=("$exe")
    [[ "$NGPU" -ge 2 ]] && launch=("${MPIRUN[@]}" -np "$NGPU" "$exe")
    say "benchmark: ${launch[*]}"
    t=$(now)
    run_timed "$b" "$BENCH_TIMEOUT" "$LOG/$b.txt" "${launch[@]}"
    rc=$?
    [[ $rc -eq 125 ]] && continue
    cat "$LOG/$b.txt"
    local summary
    summary=$(grep '^summary:' "$LOG/$b.txt" | tail -1 | sed 's/^summary: //' | cut -c1-110)
    if [[ $rc -eq 0 ]] && grep -q 'no GPU' "$LOG/$b.txt"; then
      failed_row "$b" "$(since "$t")" "it found no GPU, nvidia-smi one"
    elif [[ $rc -eq 0 ]]; then
      row "$b" "ok" "$(since "$t")" "${summary:-ran}"
    else
      failed_row "$b" "$(since "$t")" "exit $rc$(timed_out $rc)"
    fi
  done
}

# --- dprun bench-allreduce with its NCCL column (--nccl on: an error if NCCL cannot run), one rank
# per GPU; with one GPU a 1-rank NCCL group (latency of issue + wait, no traffic) -----------------
step_bench_allreduce() {
  local dprun=$1 t rc
  if [[ "$NGPU" -eq 0 ]]; then row "bench-allreduce nccl" "skipped" "" "no GPU"; return; fi
  say "benchmark: dprun bench-allreduce --nccl on"
  t=$(now)
  run_timed "bench-allreduce nccl" "$BENCH_TIMEOUT" "$LOG/bench_allreduce_nccl.txt" \
    "${MPIRUN[@]}" -np "$NGPU" "$dprun" bench-allreduce --nccl on -b 1K -e 256M -f 4 -n 10 -w 3 -d all
  rc=$?
  [[ $rc -eq 125 ]] && return
  cat "$LOG/bench_allreduce_nccl.txt"
  # A wrong sum exits non-zero; the footer is the second guard (an older binary exited 0).
  if [[ $rc -eq 0 ]] && grep -q "^# Out of bounds values : 0 OK" "$LOG/bench_allreduce_nccl.txt"; then
    row "bench-allreduce nccl" "ok" "$(since "$t")" "$(grep -c '^ ' "$LOG/bench_allreduce_nccl.txt") sizes"
  else
    failed_row "bench-allreduce nccl" "$(since "$t")" "exit $rc$(timed_out $rc)"
  fi
}

# --- dprun vs PyTorch on one GPU (tests/bench/bench_gpu_vs_torch.sh), BINDIR holding dprun and
# bench_gpu_gemm ------------------------------------------------------------------------------
step_vs_torch() {
  local bindir=$1 t rc
  if [[ "$NGPU" -eq 0 ]]; then row "bench_gpu_vs_torch" "skipped" "" "no GPU"; return; fi
  say "benchmark: dprun vs PyTorch"
  t=$(now)
  run_timed "bench_gpu_vs_torch" "$BENCH_TIMEOUT" "$LOG/bench_gpu_vs_torch.txt" \
    env ROUNDS="${VS_TORCH_ROUNDS:-2}" bash "$ROOT/tests/bench/bench_gpu_vs_torch.sh" "$bindir"
  rc=$?
  [[ $rc -eq 125 ]] && return
  cat "$LOG/bench_gpu_vs_torch.txt"
  local summary
  summary=$(grep '^summary:' "$LOG/bench_gpu_vs_torch.txt" | tail -1 | sed 's/^summary: //' | cut -c1-110)
  if [[ $rc -eq 0 ]]; then
    row "bench_gpu_vs_torch" "ok" "$(since "$t")" "${summary:-ran}"
  else
    failed_row "bench_gpu_vs_torch" "$(since "$t")" "exit $rc$(timed_out $rc)"
  fi
}

# The GPU benchmarks: one per tests/bench/bench_gpu_*.cpp.
GPU_BENCHES=()
for _src in "$ROOT"/tests/bench/bench_gpu_*.cpp; do
  [[ -e "$_src" ]] && GPU_BENCHES+=("$(basename "$_src" .cpp)")
done
unset _src

# run_gpu_steps DPRUN GPU_TESTS BENCH_DIR: the GPU test binary (without a GPU too: its CPU
# tests run, its GPU tests skip visibly), the MPI staging tests at 2 and 4 ranks, dprun end to
# end, the GPU benchmarks.
# GPU_STEPS (default: all of them) picks some, to split the work over two device calls that
# each fit in one command's 10 minutes: "tests staging e2e" then "bench vs_torch sanitizer".
run_gpu_steps() {
  local dprun=$1 gpu_tests=$2 bench_dir=$3
  local steps=" ${GPU_STEPS:-tests staging e2e bench vs_torch sanitizer} "
  [[ "$NGPU" -eq 0 ]] && say "no GPU: GPU steps skipped (the GPU test binary still runs: its CPU tests pass, its GPU tests skip)"
  [[ $steps == *" tests "* ]] && step_gpu_tests "$gpu_tests"
  if [[ $steps == *" staging "* ]]; then
    step_mpi_staging "$gpu_tests" 2
    step_mpi_staging "$gpu_tests" 4
  fi
  [[ $steps == *" e2e "* ]] && step_shared_gpu "$(dirname "$dprun")"
  if [[ $steps == *" bench "* ]]; then
    step_benchmarks "$bench_dir"
    step_bench_allreduce "$dprun"
  fi
  [[ $steps == *" vs_torch "* ]] && step_vs_torch "$bench_dir"
  [[ $steps == *" sanitizer "* ]] && step_sanitizer "$gpu_tests"
  return 0
}

# steps_finish TITLE: the table (also in $LOG/summary.txt); returns 0, 1 or 77 (see the top).
steps_finish() {
  local rc=0 result
  if [[ $STEPS_FAILED -ne 0 ]]; then
    rc=1 result="FAILED"
  elif [[ "$NGPU" -eq 0 ]]; then
    rc=77 result="NO GPU - GPU steps skipped, nothing GPU-side verified (exit 77)"
  else
    result="PASSED on $NGPU GPU(s)"
  fi
  {
    echo
    printf '================================ %s ================================\n' "$1"
    printf '%-26s %-8s %7s  %s\n' "step" "status" "time" "detail"
    local r
    for r in "${STEP_ROWS[@]}"; do echo "$r"; done
    echo "total: $(( $(date +%s) - STEPS_T0 ))s; logs: $LOG"
    echo "RESULT: $result${STEPS_NOTE:+ - $STEPS_NOTE}"
  } | tee "$LOG/summary.txt"
  return $rc
}
