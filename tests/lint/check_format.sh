#!/usr/bin/env bash
# Every C++ and CUDA source of the project is as clang-format (.clang-format) writes it.
# Usage: check_format.sh SOURCE_DIR
# Fails naming each file and line clang-format would change; `clang-format -i FILE` fixes one.
set -euo pipefail
src=${1:?usage: check_format.sh SOURCE_DIR}
cd "$src"
command -v clang-format >/dev/null ||
  { echo "check_format.sh: clang-format is not installed (bash docker/install-deps.sh)" >&2; exit 1; }
# A clean clone lists its sources through git; a source tarball (no .git) through find.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -- '*.cpp' '*.h' '*.cu' '*.cuh')
else
  mapfile -t files < <(find runtime launcher samplers models tests \
    \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sort)
fi
[ "${#files[@]}" -gt 0 ] || { echo "check_format.sh: no sources found under $src" >&2; exit 1; }
out=$(printf '%s\0' "${files[@]}" | xargs -0 clang-format --dry-run --Werror 2>&1) && rc=0 || rc=$?
if [ "$rc" != 0 ]; then
  printf '%s\n' "$out" | grep -E '^[^ ].*: (error|warning):' | head -50 >&2
  bad=$(printf '%s\n' "$out" | grep -oE '^[^:]+:[0-9]+:[0-9]+: (error|warning)' | cut -d: -f1 | sort -u)
  echo "check_format.sh: $(printf '%s\n' "$bad" | grep -c .) file(s) differ from clang-format's layout:" >&2
  printf '  %s\n' $bad >&2
  echo "fix with: clang-format -i FILE (the style is .clang-format)" >&2
  exit 1
fi
echo "check_format.sh: ${#files[@]} files formatted as .clang-format says"
