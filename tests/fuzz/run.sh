#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp) in the shared ASan + UBSan build and runs
# each for a bounded time from its seeds (written by the target itself, `-write_seeds=DIR`).
# A crash, a sanitizer report, an uncaught exception, an input slower than 10 s or a check in
# the target (an error that names no file or position) fails the run; libFuzzer saves the input
# under BUILD/fuzz/artifacts/, and `BUILD/fuzz/TARGET FILE` replays it.
#   bash tests/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]    (default: 60 s, every target)
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/sanitize/common.sh
seconds=${1:-60}
# libFuzzer reads -max_total_time=fuzz_idx (a target named where SECONDS goes) or 0 as "no
# limit": the run would never end.
[[ $seconds =~ ^[1-9][0-9]*$ ]] ||
  { echo "usage: tests/fuzz/run.sh [SECONDS_PER_TARGET >= 1] [TARGET...] (got '$seconds')" >&2; exit 2; }
shift $(($# > 0 ? 1 : 0))
start=$SECONDS

sanitize_configure asan
cmake --build "$BUILD" -j"$(getconf _NPROCESSORS_ONLN)" --target dprun_fuzzers >"$BUILD/fuzz-build.log" 2>&1 ||
  { tail -50 "$BUILD/fuzz-build.log"; exit 1; }
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.cpp; do targets+=("$(basename "$src" .cpp)"); done
fi

# One fuzzer per core, each with its own corpus (kept between local runs) and log.
run_one() {
  local t=$1 dir=$BUILD/fuzz
  mkdir -p "$dir/seeds/$t" "$dir/corpus/$t" "$dir/artifacts" "$dir/logs"
  "$dir/$t" -write_seeds="$dir/seeds/$t"
  if ASAN_OPTIONS=detect_leaks=1 "$dir/$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t-" \
    "$dir/corpus/$t" "$dir/seeds/$t" >"$dir/logs/$t.log" 2>&1; then
    echo "fuzz: $t: passed, $(grep -a -m1 'stat::number_of_executed_units' "$dir/logs/$t.log" |
      awk '{print $2}') inputs in ${seconds} s"
  else
    echo "fuzz: $t: FAILED, from its log ($dir/logs/$t.log):"
    sed -n '/ERROR: \|^fuzz: \|^terminate called\|^==[0-9]*== /,$p' "$dir/logs/$t.log" |
      grep -av '^#[0-9]' | head -60
    grep -a 'Test unit written to' "$dir/logs/$t.log" || true
    return 1
  fi
}
export -f run_one
export BUILD seconds
printf '%s\n' "${targets[@]}" | xargs -P"$(getconf _NPROCESSORS_ONLN)" -I{} bash -c 'run_one {}' >"$BUILD/fuzz/summary.log" 2>&1 ||
  true
cat "$BUILD/fuzz/summary.log"
passed=$(grep -c ': passed,' "$BUILD/fuzz/summary.log" || true)
failed=$((${#targets[@]} - passed))
echo "fuzz: ${#targets[@]} targets for ${seconds} s each in $((SECONDS - start)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
