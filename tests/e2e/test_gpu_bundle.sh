#!/usr/bin/env bash
# The one-file bundle for an air-gapped GPU machine (tests/gpu/bundle.sh, pack.sh --bundle;
# docs/gpu-session.md): it carries the source tree and the kit, kit-run.sh runs from the
# unpacked copy and finds the kit fresh there, a changed source makes it STALE, results go to
# $OUT, and bad uses fail by name. The kit here is a stand-in (no CUDA build): the real
# env.sh and a sources.sha1 made as pack.sh makes it, no programs.
source "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# bundle.sh packs the tree as git lists it; a tree without its history (a Docker image, an
# exported archive) has nothing to bundle from.
git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 ||
  { echo "SKIP: $ROOT is not a git checkout (bundle.sh packs the files git lists)"; exit 77; }

KIT="$WORK/kit"
mkdir -p "$KIT/bin" "$KIT/ompi/bin"
cp "$ROOT/tests/gpu/kit-env.sh" "$KIT/env.sh"
echo "dprun GPU kit (a test's stand-in)" > "$KIT/MANIFEST.txt"
bash "$ROOT/tests/gpu/sources-sha1.sh" > "$KIT/sources.sha1"

if out=$(bash "$ROOT/tests/gpu/bundle.sh" "$KIT" "$WORK/out/kit.tar.gz" 2>&1) &&
  [[ -s "$WORK/out/kit.tar.gz" ]] && grep -q "tests/gpu/kit-run.sh .gpu-kit" <<< "$out"; then
  pass "bundle written, and says how to run it"
else
  fail "bundle: $out"
fi
mkdir -p "$WORK/node"
tar -xzf "$WORK/out/kit.tar.gz" -C "$WORK/node"
TREE="$WORK/node/dprun-gpu"
if [[ -f "$TREE/tests/gpu/kit-run.sh" && -f "$TREE/.gpu-kit/sources.sha1" &&
  -f "$TREE/runtime/comm/fused_check.cpp" && -f "$TREE/README.md" ]]; then
  pass "the bundle holds the tree and the kit"
else
  fail "the unpacked bundle lacks files: $(ls -A "$TREE" 2>&1 | tr '\n' ' ')"
fi
# Ignored files (builds, earlier kits) stay behind.
if [[ -d "$TREE" && -z "$(cd "$TREE" && find . -maxdepth 1 -name 'build*' -print -quit)" ]]; then
  pass "no build folder in the bundle"
else
  fail "the bundle carries a build folder"
fi

run_kit() {  # run_kit OUTDIR: kit-run.sh in the unpacked tree, CPU tests off, a short budget
  (cd "$TREE" && OUT="$1" KIT_BUDGET=20 KIT_CPU_TESTS=0 timeout 120 bash tests/gpu/kit-run.sh .gpu-kit 2>&1)
}
out=$(run_kit "$WORK/results")
if grep -qE '^kit freshness +ok' <<< "$out"; then
  pass "kit-run.sh finds the kit fresh in the unpacked tree"
else
  fail "kit freshness: $(grep -E 'kit freshness|STALE' <<< "$out" | head -3)"
fi
if [[ -s "$WORK/results/summary.txt" && -s "$WORK/results/kit-run.log" ]]; then
  pass "results in \$OUT"
else
  fail "no summary.txt or kit-run.log in \$OUT: $(ls "$WORK/results" 2>&1)"
fi
echo "// changed on the node" >> "$TREE/runtime/comm/fused_check.cpp"
out=$(run_kit "$WORK/results2")
if grep -qE '^kit freshness +STALE' <<< "$out" && grep -q "runtime/comm/fused_check.cpp" <<< "$out"; then
  pass "a changed source marks the kit STALE, by name"
else
  fail "no STALE after a change: $(grep -E 'kit freshness' <<< "$out" | head -3)"
fi

# Bad uses. refused NAME PATTERN NO_FILE CMD...: CMD fails, says PATTERN, and leaves no NO_FILE
# (- for none).
refused() {
  local name=$1 pattern=$2 no_file=$3 out
  shift 3
  if out=$("$@" 2>&1); then
    fail "$name: succeeded"
  elif grep -q -- "$pattern" <<< "$out" && [[ $no_file == - || ! -e $no_file ]]; then
    pass "$name"
  else
    fail "$name: $out"
  fi
}
refused "no kit: an error naming it" "no kit at" "$WORK/x.tar.gz" \
  env BUNDLE_LIMIT_MB=0 bash "$ROOT/tests/gpu/bundle.sh" "$WORK/nokit" "$WORK/x.tar.gz"
# Over a 1 MiB limit: a kit padded with 2 MB that gzip cannot shrink.
head -c 2000000 /dev/urandom > "$KIT/bin/padding"
refused "over BUNDLE_LIMIT_MB: an error, and no file left" "over BUNDLE_LIMIT_MB=1" \
  "$WORK/big.tar.gz" env BUNDLE_LIMIT_MB=1 bash "$ROOT/tests/gpu/bundle.sh" "$KIT" "$WORK/big.tar.gz"
refused "BUNDLE_LIMIT_MB=lots refused" "whole number" - \
  env BUNDLE_LIMIT_MB=lots bash "$ROOT/tests/gpu/bundle.sh" "$KIT" "$WORK/y.tar.gz"
refused "pack.sh --bundle needs a name" "needs a file name" - bash "$ROOT/tests/gpu/pack.sh" --bundle
finish
