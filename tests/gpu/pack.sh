#!/usr/bin/env bash
# Packs a GPU kit HERE (no GPU needed), so that a GPU session spends its device time running,
# not building: docs/gpu-session.md says how the kit travels and runs.
#   tests/gpu/pack.sh [--bundle FILE.tar.gz] [KIT_DIR]   (default <repo>/.gpu-kit, git ignores it)
# 1. configures and builds build-gpu in Release with CUDA (everything: the GPU tests, the GPU
#    benchmarks, dprun, and the CPU tests too; the CPU tests go into the kit while it stays
#    under KIT_LIMIT_MB, the CPU benchmarks and tools not at all: no step runs them);
# 2. copies into KIT_DIR, stripped: the programs (bin/), every shared library they load that is
#    neither glibc, libstdc++/libgcc nor the CUDA driver (lib/; those over KIT_GZIP_MB are
#    gzip'd and unpacked at run time), except the big CUDA libraries (cuBLAS, cuBLASLt, NCCL:
#    over KIT_EXTERNAL_MB each), which the GPU machine has in its CUDA toolkit and pip packages
#    and which env.sh finds there; and a relocatable Open MPI (ompi/: orterun behind an mpirun
#    wrapper, orted, ompi_info, the MCA plugins that need no network fabric library, help files,
#    configuration, and PMIx's plugins and help files);
# 3. writes env.sh (tests/gpu/kit-env.sh), MANIFEST.txt (what was built from what, what the
#    GPU machine must provide) and sources.sha1 (to tell a stale kit there);
# 4. checks the kit: tests/gpu/kit-selftest.sh runs tests/gpu/kit-run.sh here with this
#    machine's Open MPI and CUDA toolkit hidden (skipped with --no-check);
# 5. with --bundle FILE: tests/gpu/bundle.sh writes the source tree and the kit into one file,
#    for a GPU machine reached by copying one file (an air-gapped node).
# Environment: BUILD_DIR (default <repo>/build-gpu), JOBS (default: all cores), KIT_GZIP_MB
# (default 4), KIT_EXTERNAL_MB (default 4), KIT_LIMIT_MB (default 48: a larger kit is an error;
# set it to what your transport carries, less the source tree's few MiB), BUNDLE_LIMIT_MB.
# Exit status: 0 packed and checked; 1 something failed (said why).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHECK=1
KIT=""
BUNDLE=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-check) CHECK=0 ;;
    --bundle)
      [[ $# -ge 2 && -n "$2" ]] || { echo "pack.sh: --bundle needs a file name" >&2; exit 1; }
      BUNDLE=$2
      shift
      ;;
    -h | --help) sed -n '2,23p' "${BASH_SOURCE[0]}"; exit 0 ;;
    -*) echo "pack.sh: unknown option $1" >&2; exit 1 ;;
    *) KIT=$1 ;;
  esac
  shift
done
KIT=${KIT:-$ROOT/.gpu-kit}
mkdir -p "$KIT" && KIT=$(cd "$KIT" && pwd) || exit 1
BUILD=${BUILD_DIR:-$ROOT/build-gpu}
JOBS=${JOBS:-$(nproc)}
GZIP_BYTES=$(( ${KIT_GZIP_MB:-4} * 1048576 ))
EXTERNAL_BYTES=$(( ${KIT_EXTERNAL_MB:-4} * 1048576 ))
LIMIT_MB=${KIT_LIMIT_MB:-48}
LOG=$BUILD/pack-logs

say() { printf '\n=== %s\n' "$*"; }
die() { echo "pack.sh: $*" >&2; exit 1; }
size_of() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# --- 1. Build --------------------------------------------------------------------------------
say "configure + build (Release, CUDA on) in $BUILD, -j$JOBS"
mkdir -p "$LOG"
if ! cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDPRUN_CUDA=ON \
    > "$LOG/configure.txt" 2>&1; then
  tail -30 "$LOG/configure.txt"
  die "configure failed (see $LOG/configure.txt)"
fi
if ! cmake --build "$BUILD" -j "$JOBS" > "$LOG/build.txt" 2>&1; then
  grep -iE -B2 -A6 'error' "$LOG/build.txt" | head -60
  die "build failed (see $LOG/build.txt)"
fi
echo "built: $(grep -o 'CUDA/NCCL path [A-Z]*' "$LOG/configure.txt")"

# The programs: those a GPU run needs (missing one is an error), and the CPU tests and tools.
PROGRAMS=("$BUILD/dprun" "$BUILD/tests/dprun_gpu_tests")
for src in "$ROOT"/tests/bench/bench_gpu_*.cpp; do
  [[ -e "$src" ]] && PROGRAMS+=("$BUILD/$(basename "$src" .cpp)")
done
for p in "${PROGRAMS[@]}"; do [[ -x "$p" ]] || die "$p was not built"; done
# The CPU tests that kit-run.sh runs with the time left (the CPU benchmarks and tools run in
# no step: they stay here). Each program links the whole runtime with its GPU code, so these
# are most of the kit's size: they go first when the kit is over KIT_LIMIT_MB (step 5).
OPTIONAL=()
for src in "$ROOT"/tests/mpi/test_*.cpp; do
  p="$BUILD/tests/$(basename "$src" .cpp)"
  [[ -x "$p" ]] && OPTIONAL+=("$p")
done
[[ -x "$BUILD/tests/dprun_unit_tests" ]] && OPTIONAL+=("$BUILD/tests/dprun_unit_tests")
PROGRAMS+=("${OPTIONAL[@]}")

# --- 2. The kit folder -----------------------------------------------------------------------
# Only ever empty a folder that is a kit (or empty): never a wrong argument's folder.
if [[ -n "$(ls -A "$KIT")" && ! -f "$KIT/MANIFEST.txt" ]]; then
  die "$KIT is not empty and holds no MANIFEST.txt: not a kit, not touched"
fi
find "$KIT" -mindepth 1 -delete || die "cannot empty $KIT"
mkdir -p "$KIT/bin" "$KIT/lib" "$KIT/ompi/bin" "$KIT/ompi/etc" "$KIT/ompi/lib/openmpi3" \
  "$KIT/ompi/share/openmpi" "$KIT/ompi/pmix/lib/pmix" "$KIT/ompi/pmix/share/pmix"
say "programs -> $KIT/bin"
for p in "${PROGRAMS[@]}"; do
  cp "$p" "$KIT/bin/" || die "cannot copy $p"
  strip "$KIT/bin/$(basename "$p")" || die "cannot strip $p"
done
(cd "$KIT/bin" && echo *)

# --- 3. Open MPI, relocatable ----------------------------------------------------------------
say "Open MPI runtime -> $KIT/ompi"
command -v ompi_info > /dev/null || die "ompi_info not found (Open MPI's openmpi-bin)"
ompi_path() { ompi_info --path "$1" --parsable | sed "s/^path:$1://"; }
OMPI_BIN=$(ompi_path bindir)
OMPI_PKGLIB=$(ompi_path pkglibdir)
OMPI_PKGDATA=$(ompi_path pkgdatadir)
OMPI_SYSCONF=$(ompi_path sysconfdir)
OMPI_VERSION=$(ompi_info --version 2> /dev/null | head -1)
PMIX_DIR=$(ompi_info --parsable --config | grep -o "'--with-pmix=[^']*'" | sed "s/'--with-pmix=//; s/'$//")
for b in orterun orted ompi_info; do
  [[ -x "$OMPI_BIN/$b" ]] || die "$OMPI_BIN/$b not found"
  cp "$OMPI_BIN/$b" "$KIT/ompi/bin/" && strip "$KIT/ompi/bin/$b"
done
for w in mpirun mpiexec; do cp "$ROOT/tests/gpu/kit-mpirun.sh" "$KIT/ompi/bin/$w"; done
chmod +x "$KIT/ompi/bin/mpirun" "$KIT/ompi/bin/mpiexec"
cp "$OMPI_PKGDATA"/help-*.txt "$KIT/ompi/share/openmpi/" || die "no Open MPI help files"
{
  echo "# The GPU kit's Open MPI settings: those of $OMPI_SYSCONF/openmpi-mca-params.conf here,"
  echo "# then the kit's own (env.sh adds more through OMPI_MCA_* variables)."
  grep -Ev '^[[:space:]]*(#|$)' "$OMPI_SYSCONF/openmpi-mca-params.conf" 2> /dev/null
  grep -q '^btl_base_warn_component_unused' "$OMPI_SYSCONF/openmpi-mca-params.conf" 2> /dev/null ||
    echo "btl_base_warn_component_unused = 0"
  echo "mca_base_component_show_load_errors = 0"
} > "$KIT/ompi/etc/openmpi-mca-params.conf"
if [[ -n "$PMIX_DIR" && -d "$PMIX_DIR/lib/pmix" ]]; then
  cp "$PMIX_DIR"/lib/pmix/*.so "$KIT/ompi/pmix/lib/pmix/"
  [[ -d "$PMIX_DIR/share/pmix" ]] && cp "$PMIX_DIR"/share/pmix/*.txt "$KIT/ompi/pmix/share/pmix/"
else
  echo "note: Open MPI has no external PMIx here ('$PMIX_DIR'): nothing of PMIx to copy"
fi

# --- 4. Shared libraries ---------------------------------------------------------------------
# Left to the machine: the C library, the C++ runtime and the CUDA driver (always there, and
# they must match the machine); the big CUDA libraries (too big to carry: found by env.sh).
is_system_lib() {
  [[ "$1" =~ ^(linux-vdso|linux-gate|ld-linux.*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libnsl|libanl|libmvec|libBrokenLocale|libstdc\+\+|libgcc_s)\.so ]]
}
is_driver_lib() { [[ "$1" =~ ^(libcuda\.so|libnvidia-|libnvcuvid|libnvoptix) ]]; }
is_cuda_lib() { [[ "$1" =~ ^(libcu|libnccl|libnv) ]]; }

# deps FILE...: "soname path" for each library the files load (ldd's whole closure).
deps() {
  local f
  for f in "$@"; do ldd "$f" 2> /dev/null; done |
    awk '$2 == "=>" && $3 != "not" { print $1, $3 } $2 == "=>" && $3 == "not" { print $1, "NOTFOUND" }' |
    sort -u
}
# Core: what the programs, orterun, orted and PMIx's plugins load. An MCA plugin is kept only
# if all it loads is core, system, or one of Open MPI's own libmca_common_* that is itself so:
# the verbs, libfabric, UCX and PSM plugins (network fabrics, of no use on one node) stay out.
CORE_FILES=("$KIT"/bin/* "$KIT/ompi/bin/orterun" "$KIT/ompi/bin/orted" "$KIT/ompi/bin/ompi_info")
for f in "$KIT"/ompi/pmix/lib/pmix/*.so; do [[ -e "$f" ]] && CORE_FILES+=("$f"); done
declare -A CORE=()
while read -r so path; do
  [[ "$path" == NOTFOUND ]] && die "$so, needed here by the kit's programs, is not found"
  CORE[$so]=$path
done < <(deps "${CORE_FILES[@]}")
only_core() {  # only_core FILE: all FILE loads is core or system (prints the first that is not)
  local so path
  while read -r so path; do
    if [[ -z "${CORE[$so]:-}" ]] && ! is_system_lib "$so" && [[ "$so" != libmca_common_* ]]; then
      echo "$so"
      return 1
    fi
  done < <(deps "$1")
  local common
  for common in $(deps "$1" | awk '$1 ~ /^libmca_common_/ { print $2 }'); do
    only_core "$common" > /dev/null || { basename "$common"; return 1; }
  done
}
kept=0
declare -a LEFT_OUT=()
for c in "$OMPI_PKGLIB"/*.so; do
  if why=$(only_core "$c"); then
    cp "$c" "$KIT/ompi/lib/openmpi3/"
    kept=$((kept + 1))
  else
    LEFT_OUT+=("$(basename "$c" .so) ($why)")
  fi
done
echo "MCA plugins: $kept kept; ${#LEFT_OUT[@]} left out (each loads a library the kit leaves out: fabrics, OpenSHMEM):"
printf '  %s\n' "${LEFT_OUT[@]}" | head -30

say "shared libraries -> $KIT/lib"
declare -a EXTERNAL=()
while read -r so path; do
  [[ "$path" == NOTFOUND ]] && die "$so is not found here"
  if is_system_lib "$so" || is_driver_lib "$so"; then continue; fi
  real=$(readlink -f "$path")
  if is_cuda_lib "$so" && [[ $(size_of "$real") -gt $EXTERNAL_BYTES ]]; then
    EXTERNAL+=("$so $real $(mib "$(size_of "$real")")")
    continue
  fi
  cp "$real" "$KIT/lib/$so" || die "cannot copy $real"
  chmod u+w "$KIT/lib/$so"
  strip --strip-unneeded "$KIT/lib/$so" 2> /dev/null || true
done < <(deps "${CORE_FILES[@]}" "$KIT"/ompi/lib/openmpi3/*.so)
for f in "$KIT"/ompi/lib/openmpi3/*.so "$KIT"/ompi/pmix/lib/pmix/*.so; do
  strip --strip-unneeded "$f" 2> /dev/null || true
done
for f in "$KIT"/lib/*; do
  if [[ $(size_of "$f") -gt $GZIP_BYTES ]]; then
    echo "gzip: $(basename "$f") ($(mib "$(size_of "$f")"))"
    gzip -9n "$f" || die "gzip $f failed"
  fi
done
echo "left to the GPU machine (env.sh finds them there):"
printf '  %s\n' "${EXTERNAL[@]}"

# --- 5. Fit KIT_LIMIT_MB, then env.sh, MANIFEST.txt, sources.sha1 ----------------------------
# Over the limit, the CPU tests leave the kit, the MPI tests first (the GPU steps need none of
# them; kit-run.sh runs the CPU tests only where they are).
SHED=()
for p in "${OPTIONAL[@]}"; do
  [[ $(du -sb "$KIT" | cut -f1) -le $((LIMIT_MB * 1048576 - 262144)) ]] && break
  rm -f "$KIT/bin/$(basename "$p")"
  SHED+=("$(basename "$p")")
done
[[ ${#SHED[@]} -gt 0 ]] &&
  echo "left out to fit KIT_LIMIT_MB=$LIMIT_MB: ${SHED[*]} (CPU tests: kit-run.sh skips them)"
cp "$ROOT/tests/gpu/kit-env.sh" "$KIT/env.sh"
glibc_needs() {  # the highest symbol versions of glibc and libstdc++ that the kit's ELF files need
  find "$KIT" -type f ! -name '*.gz' -exec sh -c 'head -c4 "$1" | grep -q ELF' _ {} \; -print0 |
    xargs -0 objdump -T 2> /dev/null | grep -oE '\((GLIBC|GLIBCXX|CXXABI)_[0-9.]+\)' | tr -d '()' |
    sort -t_ -k1,1 -k2V | awk -F_ '{ last[$1] = $0 } END { for (k in last) print last[k] }' |
    sort | tr '\n' ' '
}
header_version() {  # header_version FILE PREFIX: MAJOR.MINOR.PATCH from #defines
  awk -v p="$2" '$1 == "#define" && $2 ~ "^" p "(MAJOR|MINOR|PATCH)$" { v[$2] = $3 }
    END { printf "%s.%s.%s", v[p "MAJOR"], v[p "MINOR"], v[p "PATCH"] }' "$1" 2> /dev/null
}
cmake_cuda() {  # cmake_cuda VAR: a value from CMake's record of the CUDA compiler
  sed -n "s/^set($1 \"\(.*\)\")$/\1/p" "$BUILD"/CMakeFiles/*/CMakeCUDACompiler.cmake | head -1
}
NVCC=$(cmake_cuda CMAKE_CUDA_COMPILER)
CUDA_INC=$(dirname "$(dirname "$NVCC")")/include
NCCL_H=$(awk -F= '$1 == "NCCL_INCLUDE_DIR:PATH" { print $2 }' "$BUILD/CMakeCache.txt")/nccl.h
ARCHES=$(grep -ho 'generate-code=arch=[a-z_0-9]*,code=\[[a-z_0-9]*\]' \
  "$BUILD"/runtime/CMakeFiles/dprun_runtime.dir/flags.make 2> /dev/null | sed 's/.*code=\[//; s/\]//' |
  sort -u | tr '\n' ' ')
bash "$ROOT/tests/gpu/sources-sha1.sh" > "$KIT/sources.sha1" || die "hashing the sources failed"
{
  echo "dprun GPU kit"
  echo "packed:       $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -n) ($(uname -m))"
  echo "source:       $ROOT"
  echo "commit:       $(git -C "$ROOT" describe --always --dirty 2> /dev/null || echo unknown)"
  echo "compilers:    $(c++ --version | head -1); nvcc $(cmake_cuda CMAKE_CUDA_COMPILER_VERSION)"
  echo "GPU code:     $ARCHES(sm_80 and sm_90 machine code, compute_90 PTX)"
  echo "headers:      cuBLAS $(header_version "$CUDA_INC/cublas_api.h" CUBLAS_VER_)," \
    "NCCL $(header_version "$NCCL_H" NCCL_)"
  echo "open mpi:     $OMPI_VERSION (PMIx from ${PMIX_DIR:-none})"
  echo "needs:        $(glibc_needs)"
  echo "left out:     ${SHED[*]:-nothing} (to fit KIT_LIMIT_MB=$LIMIT_MB)"
  echo "from the GPU machine (the kit leaves these out; env.sh finds them):"
  echo "  libcuda.so.1 (the driver; CUDA 13 wants 580 or newer)"
  printf '  %s\n' "${EXTERNAL[@]}"
  echo "NCCL functions the programs call (the machine's NCCL must have them all):"
  nm -D --undefined-only "$KIT"/bin/* 2> /dev/null | awk '$2 ~ /^nccl/ { print $2 }' | sort -u |
    tr '\n' ' ' | fold -s -w 96 | sed 's/^/  /'
  echo
  echo "files:"
  (cd "$KIT" && find . -type f ! -name MANIFEST.txt -printf '%s %p\n' | LC_ALL=C sort -k2 |
    awk '{ printf "  %10d  %s\n", $1, $2 }')
} > "$KIT/MANIFEST.txt"

TOTAL=$(du -sb "$KIT" | cut -f1)
say "kit: $KIT"
echo "size: $(mib "$TOTAL") ($TOTAL bytes) in $(find "$KIT" -type f | wc -l) files;" \
  "largest:"
find "$KIT" -type f -printf '%s %P\n' | sort -rn | head -5 |
  awk '{ printf "  %8.1f MiB  %s\n", $1 / 1048576, $2 }'
if [[ $TOTAL -gt $((LIMIT_MB * 1048576)) ]]; then
  die "the kit is over KIT_LIMIT_MB=$LIMIT_MB MiB (what the transport to the GPU machine carries, less the source tree)"
fi

# --- 6. Check ------------------------------------------------------------------------------
if [[ $CHECK -eq 1 ]]; then
  say "check: tests/gpu/kit-selftest.sh $KIT"
  bash "$ROOT/tests/gpu/kit-selftest.sh" "$KIT" || die "the kit's check failed (above)"
fi
say "packed: $KIT ($(mib "$TOTAL")). On the GPU machine: bash tests/gpu/kit-run.sh ${KIT#"$ROOT"/}"
if [[ -n "$BUNDLE" ]]; then
  say "bundle: tests/gpu/bundle.sh $KIT $BUNDLE"
  bash "$ROOT/tests/gpu/bundle.sh" "$KIT" "$BUNDLE" || die "the bundle failed (above)"
fi
