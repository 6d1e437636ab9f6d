#!/usr/bin/env bash
# clang-tidy's bug and performance checks (.clang-tidy) over the project's C++ sources, with the
# flags the build used (BUILD/compile_commands.json).
# Usage: run_tidy.sh BUILD [FILE...]   (no FILE: every .cpp of runtime/ launcher/ samplers/
# models/ and tests/ but tests/fuzz/; CUDA sources are left out: clang-tidy cannot take nvcc's
# flags). TIDY_JOBS clang-tidy processes at once (default: one per core).
# Exits non-zero and lists the findings when there is any, and when clang-tidy itself failed
# (a file missing from the compilation database, a crash). A finding that is deliberate gets
# `// NOLINT(check-name): why` on its line.
set -euo pipefail
build=${1:?usage: run_tidy.sh BUILD [FILE...]}
shift
src=$(cd "$(dirname "$0")/../.." && pwd)
db=$(cd "$build" && pwd)/compile_commands.json
[ -f "$db" ] || { echo "run_tidy.sh: no $db (configure the build with cmake first)" >&2; exit 1; }
command -v clang-tidy >/dev/null ||
  { echo "run_tidy.sh: clang-tidy is not installed (bash docker/install-deps.sh)" >&2; exit 1; }
files=()
if [ $# -eq 0 ]; then
  mapfile -t files < <(cd "$src" && find runtime launcher samplers models tests -name '*.cpp' |
    grep -v '^tests/fuzz/' | sort | sed "s|^|$src/|")
else
  for f in "$@"; do  # as the caller named them
    [ -f "$f" ] || { echo "run_tidy.sh: no such file: $f" >&2; exit 1; }
    files+=("$(cd "$(dirname "$f")" && pwd)/$(basename "$f")")
  done
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Findings go to stdout, clang-tidy's own failures to stderr: both are kept. --quiet drops the
# "N warnings generated" count of the system headers' suppressed warnings.
rc=0
printf '%s\n' "${files[@]}" |
  xargs -P "${TIDY_JOBS:-$(nproc)}" -n 4 clang-tidy -p "$(dirname "$db")" --quiet >"$log" 2>&1 ||
  rc=$?
findings=$(grep -E '(warning|error): ' "$log" | sort -u || true)
if [ -n "$findings" ]; then
  printf '%s\n' "$findings" >&2
  echo "run_tidy.sh: $(printf '%s\n' "$findings" | wc -l) finding(s) in ${#files[@]} file(s)" >&2
  exit 1
fi
if [ "$rc" != 0 ]; then
  sed -n '1,40p' "$log" >&2
  echo "run_tidy.sh: clang-tidy failed (exit $rc) with no finding to show" >&2
  exit 1
fi
echo "run_tidy.sh: ${#files[@]} files, no findings"
