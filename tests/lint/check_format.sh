#!/usr/bin/env bash
# Every C++ and CUDA source of the project is as clang-format (.clang-format) writes it.
# Usage: check_format.sh SOURCE_DIR
# Fails naming each file clang-format would change; `clang-format -i FILE` fixes one. The tree
# is formatted by clang-format 14 (Debian 12's): another major version lays some code out
# differently, so there the check skips (77) rather than fail on code nobody changed.
set -euo pipefail
src=${1:?usage: check_format.sh SOURCE_DIR}
cd "$src"
command -v clang-format >/dev/null ||
  { echo "check_format.sh: clang-format is not installed (bash docker/install-deps.sh)" >&2; exit 1; }
want=14
have=$(clang-format --version | sed -n 's/.*version \([0-9]*\).*/\1/p')
if [ "$have" != "$want" ]; then
  echo "check_format.sh: skipped: clang-format $have is not the tree's $want ($(command -v clang-format))"
  exit 77
fi
# A clean clone lists its sources through git (new, not yet added files too); a source
# tarball (no .git) through find.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t listed < <(git ls-files --cached --others --exclude-standard -- \
    '*.cpp' '*.h' '*.cu' '*.cuh')
else
  mapfile -t listed < <(find runtime launcher samplers models tests \
    \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' \) | sort)
fi
files=()
for f in "${listed[@]}"; do [ -f "$f" ] && files+=("$f"); done  # deleted but still tracked: no
[ "${#files[@]}" -gt 0 ] || { echo "check_format.sh: no sources found under $src" >&2; exit 1; }
rc=0
out=$(printf '%s\0' "${files[@]}" | xargs -0 clang-format --dry-run --Werror 2>&1) || rc=$?
[ "$rc" = 0 ] && { echo "check_format.sh: ${#files[@]} files formatted as .clang-format says"; exit 0; }
bad=$(printf '%s\n' "$out" | sed -n 's/^\([^ :][^:]*\):[0-9]*:[0-9]*: \(error\|warning\): code should be clang-formatted.*/\1/p' | sort -u)
if [ -z "$bad" ]; then  # clang-format itself failed: say what it said
  printf '%s\n' "$out" | sed -n '1,50p' >&2
  echo "check_format.sh: clang-format failed (exit $rc)" >&2
  exit 1
fi
printf '%s\n' "$out" | sed -n '1,40p' >&2
echo "check_format.sh: $(printf '%s\n' "$bad" | wc -l) file(s) differ from clang-format's layout:" >&2
printf '  %s\n' $bad >&2
echo "fix with: clang-format -i FILE (the style is .clang-format)" >&2
exit 1
