#!/usr/bin/env bash
# Makes ONE file to carry to a GPU machine that has neither our build dependencies nor a
# network (docs/gpu-session.md): the source tree the kit was built from (tracked files and
# untracked ones git does not ignore, so the kit's freshness check passes there) and the kit.
#   tests/gpu/bundle.sh KIT_DIR FILE.tar.gz
# On the GPU machine:
#   tar -xzf FILE.tar.gz && cd dprun-gpu && OUT=$PWD/results bash tests/gpu/kit-run.sh .gpu-kit
# and carry results/ back. Environment: BUNDLE_LIMIT_MB (default 0: no limit): a larger file
# is an error, for transports with a size limit.
# Exit status: 0 written; 1 something failed (said why).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
die() { echo "bundle.sh: $*" >&2; exit 1; }
[[ $# -eq 2 ]] || die "usage: tests/gpu/bundle.sh KIT_DIR FILE.tar.gz"
KIT=$1
FILE=$2
[[ -f "$KIT/env.sh" && -f "$KIT/MANIFEST.txt" ]] || die "no kit at $KIT (tests/gpu/pack.sh packs one)"
KIT=$(cd "$KIT" && pwd)
LIMIT_MB=${BUNDLE_LIMIT_MB:-0}
[[ "$LIMIT_MB" =~ ^[0-9]+$ ]] || die "BUNDLE_LIMIT_MB must be a whole number of MiB, not '$LIMIT_MB'"
case "$FILE" in
  /*) ;;
  *) FILE=$PWD/$FILE ;;
esac

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/dprun-bundle.XXXXXX") || die "no temporary folder"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/dprun-gpu"
# The tree as git sees it (a kit packed from uncommitted changes carries them too); links are
# copied as links, ignored files (builds, older kits) stay behind.
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' f; do [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"; done |
  tar --null -T - -cf -) | tar -xf - -C "$STAGE/dprun-gpu" ||
  die "copying the source tree of $ROOT failed (is it a git checkout?)"
cp -a "$KIT" "$STAGE/dprun-gpu/.gpu-kit" || die "copying the kit failed"
mkdir -p "$(dirname "$FILE")" || die "cannot create the folder of $FILE"
tar -czf "$FILE.tmp" -C "$STAGE" dprun-gpu || { rm -f "$FILE.tmp"; die "writing $FILE failed"; }
mv -f "$FILE.tmp" "$FILE" || die "writing $FILE failed"
BYTES=$(stat -c %s "$FILE")
if [[ $LIMIT_MB -gt 0 && $BYTES -gt $((LIMIT_MB * 1048576)) ]]; then
  rm -f "$FILE"
  die "the bundle ($BYTES bytes) is over BUNDLE_LIMIT_MB=$LIMIT_MB MiB; removed"
fi
awk -v b="$BYTES" -v f="$FILE" 'BEGIN { printf "bundle: %s (%.1f MiB)\n", f, b / 1048576 }'
echo "on the GPU machine: tar -xzf $(basename "$FILE") && cd dprun-gpu &&" \
  "OUT=\$PWD/results bash tests/gpu/kit-run.sh .gpu-kit"
