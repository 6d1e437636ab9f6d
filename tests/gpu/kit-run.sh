#!/usr/bin/env bash
# Runs a GPU kit (packed by tests/gpu/pack.sh) ON THE GPU MACHINE, from the repo root:
#   bash tests/gpu/kit-run.sh [KIT_DIR]          (default <repo>/.gpu-kit)
# No build: it sets up the kit's environment (<kit>/env.sh: PATH, LD_LIBRARY_PATH, the kit's
# Open MPI relocated, cuBLAS/NCCL found in the machine's CUDA toolkit or pip packages), checks
# that every library the kit's programs need is found, then runs the steps of tests/gpu/steps.sh
# (nvidia-smi, dprun --version, mpirun, the GPU test binary, the MPI staging tests at 2 and 4
# ranks sharing the GPU, dprun end to end, the GPU benchmarks) and, with time left, the CPU
# tests, and prints a table. Every step has a timeout; a failed step does not stop the others.
# Where $OUT is set (a folder to bring back; the device tool sets it), 5 files go there:
# kit-run.log (all it printed), summary.txt (the table), gpu-tests.xml (gtest's report),
# libraries.txt (where each library came from), logs.tar.gz (every step's log).
# Environment: KIT_BUDGET (seconds for everything, default 540: the time one command may run
# on the GPU machine, less a margin), GPU_STEPS, BENCH_TIMEOUT, GPU_TESTS_TIMEOUT,
# SANITIZER_TIMEOUT (see steps.sh), DPRUN_KIT_LIB_DIRS (folders searched first for
# cuBLAS/NCCL), KIT_CPU_TESTS=0 (skip the CPU tests at the end). docs/gpu-session.md.
# Exit status: 0 all passed on a GPU; 1 a step failed, or a library is missing; 2 no kit;
# 77 no GPU (no driver library, no nvidia-smi, or CUDA_VISIBLE_DEVICES empty): the CPU-runnable
# checks ran, the GPU steps were skipped.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KIT=${1:-$ROOT/.gpu-kit}
if [[ ! -f "$KIT/env.sh" || ! -f "$KIT/MANIFEST.txt" ]]; then
  echo "kit-run.sh: no kit at $KIT (tests/gpu/pack.sh packs one; carry it with the device tool)" >&2
  exit 2
fi
KIT=$(cd "$KIT" && pwd)
# A copy that lost its execute bits (or lies read-only): run a copy of it in TMPDIR instead.
if [[ -n "$(find "$KIT/bin" "$KIT/ompi/bin" -type f ! -perm -u+x -print -quit)" ]] &&
   ! chmod u+x "$KIT"/bin/* "$KIT"/ompi/bin/* 2> /dev/null; then
  copy=$(mktemp -d "${TMPDIR:-/tmp}/dprun-kit.XXXXXX")
  cp -r "$KIT/." "$copy/" && chmod u+x "$copy"/bin/* "$copy"/ompi/bin/* && KIT=$copy
  echo "kit-run.sh: the kit's programs were not executable: running a copy in $KIT"
fi
LOG=$(mktemp -d "${TMPDIR:-/tmp}/dprun-kit-run.XXXXXX")
OUTDIR=${OUT:-}
TEE_PID=""
if [[ -n "$OUTDIR" ]]; then
  mkdir -p "$OUTDIR"
  exec 3>&1 4>&2 > >(tee "$OUTDIR/kit-run.log") 2>&1
  TEE_PID=$!
fi
STEPS_BUDGET=${KIT_BUDGET:-540}
# shellcheck source=tests/gpu/steps.sh
source "$ROOT/tests/gpu/steps.sh"

# save_outputs: what goes back to the caller through $OUT (at most 5 files; kit-run.log is
# written as it goes).
save_outputs() {
  [[ -n "$OUTDIR" ]] || return 0
  cp "$LOG/summary.txt" "$OUTDIR/" 2> /dev/null
  cp "$LOG/gpu-tests.xml" "$OUTDIR/" 2> /dev/null
  cp "$LOG/libraries.txt" "$OUTDIR/" 2> /dev/null
  tar -czf "$OUTDIR/logs.tar.gz" -C "$(dirname "$LOG")" "$(basename "$LOG")" 2> /dev/null
}
finish() {
  steps_finish "dprun GPU kit check"
  local rc=$?
  save_outputs
  if [[ -n "$TEE_PID" ]]; then  # let tee write the whole log before the command returns
    exec 1>&3 2>&4
    wait "$TEE_PID" 2> /dev/null
  fi
  exit $rc
}

say "kit: $KIT"
sed -n '/^files:/q; p' "$KIT/MANIFEST.txt" | head -30
echo "machine: $(uname -n), $(nproc) cores, $(sed -n 's/^PRETTY_NAME="\(.*\)"/\1/p' /etc/os-release 2> /dev/null), $(ldd --version 2> /dev/null | head -1)"

# --- Is the kit built from the sources here? -----------------------------------------------------
t=$(now)
if (cd "$ROOT" && sha1sum --quiet -c "$KIT/sources.sha1") > "$LOG/freshness.txt" 2>&1; then
  row "kit freshness" "ok" "$(since "$t")" "built from the sources in this tree"
else
  changed=$(grep -c ': FAILED' "$LOG/freshness.txt")
  echo "STALE KIT: $changed source file(s) differ from those it was built from:"
  grep ': FAILED' "$LOG/freshness.txt" | head -10
  STEPS_NOTE="STALE KIT: built from other sources than this tree's"
  row "kit freshness" "STALE" "$(since "$t")" \
    "$changed source file(s) changed since packing: results are the packed build's"
fi

# --- The kit's environment and its libraries -----------------------------------------------------
say "environment: source $KIT/env.sh"
t=$(now)
# shellcheck source=tests/gpu/kit-env.sh
source "$KIT/env.sh"
{
  echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  echo "PATH=$PATH"
  echo "libcuda: ${DPRUN_KIT_LIBCUDA:-none}"
  echo "folders searched for what the kit leaves out:"
  kit_lib_candidates | awk '!seen[$0]++' | while read -r d; do
    [[ -d "$d" ]] && echo "  $d"
  done
  echo "libraries of the kit's programs:"
  kit_lib_report
} > "$LOG/libraries.txt" 2>&1
missing=$(kit_missing_libs)
if [[ -n "$missing" ]]; then
  echo "MISSING LIBRARIES (not in the kit, not found on this machine):"
  while read -r m; do echo "  $m"; done <<< "$missing"
  echo "searched: $(kit_lib_candidates | awk '!seen[$0]++' | tr '\n' ' ')"
  echo "fix: DPRUN_KIT_LIB_DIRS=/folder/with/them bash tests/gpu/kit-run.sh ..."
  failed_row "libraries" "$(since "$t")" "missing: $(echo "$missing" | tr '\n' ' ')"
  finish
fi
echo "from this machine (not in the kit):"
grep -vF "$KIT/" "$LOG/libraries.txt" | grep -E '^  lib(cu|nccl|nv)' || true
# Symbols: a library found but older than the one built against (an NCCL without a function):
# what the kit's own files need and do not find.
undefined=$(kit_programs | while read -r p; do ldd -r "$p" 2>&1; done |
  grep 'undefined symbol' | grep -F "($KIT/" | sed 's/[[:space:]]*(.*//' | sort -u)
if [[ -n "$undefined" ]]; then
  echo "$undefined" | head -20
  failed_row "libraries" "$(since "$t")" "$(echo "$undefined" | wc -l) undefined symbol(s): a library older than the build's"
else
  row "libraries" "ok" "$(since "$t")" \
    "all found; cuBLAS in $(kit_lib_report | awk '$1 ~ /^libcublas\.so/ { print $2; exit }' | xargs -r dirname)"
fi
if [[ -z "${DPRUN_KIT_LIBCUDA:-}" ]]; then
  NO_GPU_REASON="no CUDA driver library (libcuda.so.1)"
  row "driver" "NONE" "" "libcuda.so.1 not found"
else
  row "driver" "ok" "" "$DPRUN_KIT_LIBCUDA"
fi

step_gpu_detect

# --- CPU-runnable checks ---------------------------------------------------------------------
step_smoke "$KIT/bin/dprun"
# The kit's mpirun from a scrubbed environment: it must set itself up and load its own Open MPI.
t=$(now)
# shellcheck disable=SC2016  # expanded by the rank's shell
run_timed "kit mpirun, env -i" 60 "$LOG/mpirun-scrubbed.txt" \
  env -i HOME="${HOME:-/root}" PATH=/usr/bin:/bin TMPDIR="${TMPDIR:-/tmp}" "$KIT/ompi/bin/mpirun" \
  -np 2 sh -c 'echo "rank $OMPI_COMM_WORLD_RANK"; grep -m1 "libopen-pal" /proc/$PPID/maps'
rc=$?
ranks=$(grep -c '^rank [01]$' "$LOG/mpirun-scrubbed.txt")
pal=$(grep -o '/[^ ]*libopen-pal[^ ]*' "$LOG/mpirun-scrubbed.txt" | sort -u | head -1)
ours=0
[[ $ranks -eq 2 && "$pal" == "$KIT"/* ]] && ours=1
smoke_row "kit mpirun, env -i" $rc "$t" "$LOG/mpirun-scrubbed.txt" $ours \
  "$ranks of 2 ranks; mpirun's libopen-pal: ${pal/#$KIT/<kit>}"

# --- GPU steps -------------------------------------------------------------------------------
run_gpu_steps "$KIT/bin/dprun" "$KIT/bin/dprun_gpu_tests" "$KIT/bin"

# --- CPU tests, with the time left ---------------------------------------------------------------
# (extras: too little time left skips them, it does not fail the run)
cpu_tests=0
[[ "${KIT_CPU_TESTS:-1}" != 0 && -x "$KIT/bin/dprun_unit_tests" ]] && cpu_tests=1
if [[ $cpu_tests -eq 1 && $(step_time 90) -eq 0 ]]; then
  row "cpu tests" "skipped" "" "too little of KIT_BUDGET left"
  cpu_tests=0
fi
if [[ $cpu_tests -eq 1 ]]; then
  say "CPU tests (unit; MPI at 1, 2 and 4 ranks) with the kit's Open MPI"
  # The unit tests read tests/data at the path of the tree they were built in.
  src=$(sed -n 's/^source: *//p' "$KIT/MANIFEST.txt")
  made_link=""
  if [[ -n "$src" && "$src" != "$ROOT" && ! -e "$src" ]] && mkdir -p "$(dirname "$src")" &&
     ln -s "$ROOT" "$src" 2> /dev/null; then
    made_link=$src
  fi
  t=$(now)
  OPENBLAS_NUM_THREADS=1 run_timed "cpu unit tests" 120 "$LOG/cpu-unit-tests.txt" \
    "$KIT/bin/dprun_unit_tests"
  rc=$?
  if [[ $rc -eq 0 ]]; then
    row "cpu unit tests" "ok" "$(since "$t")" "$(gtest_counts "$LOG/cpu-unit-tests.txt")"
  elif [[ $rc -ne 125 ]]; then
    grep '^\[  FAILED  \] [A-Za-z]' "$LOG/cpu-unit-tests.txt" | sort -u | head -10
    failed_row "cpu unit tests" "$(since "$t")" "exit $rc$(timed_out $rc): $(gtest_counts "$LOG/cpu-unit-tests.txt")"
  fi
  [[ -n "$made_link" ]] && rm -f "$made_link"
  t=$(now)
  runs=0
  bad=()
  for exe in "$KIT"/bin/test_*; do
    [[ -x "$exe" ]] || continue
    for np in 1 2 4; do
      name="$(basename "$exe") np$np"
      OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 run_timed "cpu $name" 60 "$LOG/cpu-mpi.txt.part" \
        "${MPIRUN[@]}" -np "$np" "$exe"
      rc=$?
      [[ $rc -eq 125 ]] && break 2
      { echo "=== $name: exit $rc"; cat "$LOG/cpu-mpi.txt.part"; } >> "$LOG/cpu-mpi-tests.txt"
      runs=$((runs + 1))
      [[ $rc -eq 0 ]] || bad+=("$name (exit $rc)")
    done
  done
  rm -f "$LOG/cpu-mpi.txt.part"
  if [[ ${#bad[@]} -eq 0 && $runs -gt 0 ]]; then
    row "cpu mpi tests" "ok" "$(since "$t")" "$runs runs (1, 2 and 4 ranks) passed"
  elif [[ $runs -gt 0 ]]; then
    failed_row "cpu mpi tests" "$(since "$t")" "${#bad[@]} of $runs failed: ${bad[*]}"
  fi
fi

finish
