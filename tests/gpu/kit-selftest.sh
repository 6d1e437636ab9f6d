#!/usr/bin/env bash
# Checks a GPU kit HERE, on a machine without a GPU, the way the GPU machine will use it
# (tests/gpu/pack.sh runs it last):
#   tests/gpu/kit-selftest.sh [KIT_DIR]          (default <repo>/.gpu-kit)
# In a private mount namespace (unshare -m, as root) it hides this machine's Open MPI (programs,
# plugins, help files, configuration, PMIx, and its libraries that the kit carries) and the
# CUDA toolkit's library folder, which it shows instead the way pip lays it out
# (<tmp>/site/nvidia/cu13/lib, found through PYTHONPATH, as on the GPU machine); then it runs
#   env -i ... CUDA_VISIBLE_DEVICES= OUT=<tmp>/out bash tests/gpu/kit-run.sh KIT_DIR
# which must find every library, pass its CPU-runnable checks, fail nothing, return 77 (no GPU)
# and leave at most 8 plain files in $OUT. Where unshare is refused, the same run happens with
# nothing hidden (a weaker check), and it says so.
# Exit status: 0 the kit passed; 1 it did not.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KIT=${1:-$ROOT/.gpu-kit}
[[ -f "$KIT/env.sh" ]] || { echo "kit-selftest.sh: no kit at $KIT" >&2; exit 1; }
KIT=$(cd "$KIT" && pwd)

# --- Inside the namespace: hide, then run kit-run.sh ------------------------------------------
if [[ "${2:-}" == "--inside" ]]; then
  TMP=$3
  # Nothing done here may reach the machine's own mounts (unshare makes them private already).
  mount --make-rprivate / || exit 1
  hide_dir() { [[ -d "$1" ]] && mount -t tmpfs -o size=1m,mode=0755 none "$1"; }
  hide_file() { [[ -e "$1" ]] && mount --bind /dev/null "$(readlink -f "$1")"; }
  ompi_path() { ompi_info --path "$1" --parsable 2> /dev/null | sed "s/^path:$1://"; }
  OMPI_BIN=$(ompi_path bindir)
  OMPI_LIBDIR=$(ompi_path libdir)
  PKGDATA=$(ompi_path pkgdatadir)
  SYSCONF=$(ompi_path sysconfdir)
  PMIX_DIR=$(ompi_info --parsable --config 2> /dev/null | grep -o "'--with-pmix=[^']*'" |
    sed "s/'--with-pmix=//; s/'$//")
  # The CUDA libraries, seen only where pip puts them.
  CUDA_LIB=$(readlink -f /usr/local/cuda/lib64)
  mkdir -p "$TMP/site/nvidia/cu13/lib"
  mount --bind "$CUDA_LIB" "$TMP/site/nvidia/cu13/lib" || exit 1
  # The system copies of every library the kit carries (the loader must never reach them),
  # Open MPI's and PMIx's folders and programs, and the CUDA toolkit's libraries.
  for f in "$KIT"/lib/*; do
    so=$(basename "$f" .gz)
    case "$so" in libz.so.* | libudev.so.*) continue ;; esac  # the tools here need them
    for p in /usr/lib/x86_64-linux-gnu/"$so" /lib/x86_64-linux-gnu/"$so"; do hide_file "$p"; done
  done
  for p in "$OMPI_BIN"/orterun "$OMPI_BIN"/orted "$OMPI_BIN"/ompi_info; do hide_file "$p"; done
  for d in "$(dirname "$OMPI_LIBDIR")" "$PKGDATA" "$SYSCONF" "$PMIX_DIR" \
           /usr/lib/x86_64-linux-gnu/hwloc "$CUDA_LIB"; do
    hide_dir "$d"
  done
  if /usr/bin/mpirun --version > /dev/null 2>&1 || [[ -e "$CUDA_LIB/libcublas.so.13" ]]; then
    echo "kit-selftest.sh: hiding the system's Open MPI or CUDA libraries did not work" >&2
    exit 1
  fi
  echo "hidden: the system's Open MPI ($OMPI_BIN/orterun, $PKGDATA, $SYSCONF, ${PMIX_DIR:-})," \
    "its libraries that the kit carries, and $CUDA_LIB (shown as $TMP/site/nvidia/cu13/lib)"
  exec env -i HOME="${HOME:-/root}" PATH=/usr/bin:/bin TMPDIR="$TMP" PYTHONPATH="$TMP/site" \
    CUDA_VISIBLE_DEVICES= OUT="$TMP/out" KIT_BUDGET=300 bash "$ROOT/tests/gpu/kit-run.sh" "$KIT"
fi

# --- Outside: set up, run, judge ------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dprun-kit-selftest.XXXXXX")
# Removed only when nothing is mounted below it (a bind mount of the CUDA libraries was, inside).
trap 'grep -q " $TMP/" /proc/mounts || rm -rf "$TMP"' EXIT
mkdir -p "$TMP/out"
if unshare -m true 2> /dev/null; then
  unshare -m bash "${BASH_SOURCE[0]}" "$KIT" --inside "$TMP"
  rc=$?
  how="system Open MPI and CUDA toolkit hidden"
else
  echo "NOTE: unshare -m is refused here: running with nothing hidden (a weaker check)"
  env -i HOME="${HOME:-/root}" PATH=/usr/bin:/bin TMPDIR="$TMP" CUDA_VISIBLE_DEVICES= \
    OUT="$TMP/out" KIT_BUDGET=300 bash "$ROOT/tests/gpu/kit-run.sh" "$KIT"
  rc=$?
  how="nothing hidden"
fi

problems=()
[[ $rc -eq 77 ]] || problems+=("kit-run.sh exited $rc, not 77 (no GPU)")
if grep -qE '^[^ ]+.* (FAILED|NO TIME) ' "$TMP/out/summary.txt" 2> /dev/null; then
  problems+=("a step failed: $(grep -E ' (FAILED|NO TIME) ' "$TMP/out/summary.txt" | cut -c1-60 | tr '\n' ';')")
fi
nfiles=$(find "$TMP/out" -type f | wc -l)
ndirs=$(find "$TMP/out" -mindepth 1 -type d | wc -l)
[[ $nfiles -le 8 && $ndirs -eq 0 ]] || problems+=("\$OUT holds $nfiles files and $ndirs folders (8 files, no folder, at most)")
for f in kit-run.log summary.txt libraries.txt logs.tar.gz; do
  [[ -s "$TMP/out/$f" ]] || problems+=("\$OUT/$f missing or empty")
done
echo
echo "kit-selftest ($how): kit-run.sh exit $rc; \$OUT: $(cd "$TMP/out" && echo *)"
if [[ ${#problems[@]} -gt 0 ]]; then
  printf 'KIT CHECK FAILED: %s\n' "${problems[@]}"
  exit 1
fi
echo "KIT CHECK PASSED: libraries found, CPU-runnable checks passed, GPU steps skipped (no GPU here)"
