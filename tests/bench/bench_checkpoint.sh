#!/usr/bin/env bash
# Checkpoint write speed side by side in one run, on one disk: the writer as it was (`before`:
# CRC, then write, then one fsync) and as it is (`after`: the disk writing while the writer
# checksums and copies; `+crcthr` adds the optional CRC thread), through the real
# CheckpointWriter on a gpt2-small-sized checkpoint (1493 MB), next to dd of the same size with
# fsync. Where the time goes: `crc` (CRC
# alone) and `write` (write and fsync alone).
#
#   tests/bench/bench_checkpoint.sh [BUILD_DIR] [DIR on the disk to measure] [REPEATS]
set -euo pipefail
BUILD=${1:-build}
DIR=${2:-$(mktemp -d "${TMPDIR:-/tmp}/dprun-bench-ckpt.XXXXXX")}
REPS=${3:-5}
mkdir -p "$DIR"
COUNT=$((1493 * 1000000 / 16777216 + 1))  # 16 MiB blocks: the checkpoint's size, rounded up
"$BUILD/bench_checkpoint" "$DIR" --reps "$REPS" | tee "$DIR/bench.out"
# dd REPS times too: its median.
for _ in $(seq "$REPS"); do
  start=$(date +%s.%N)
  dd if=/dev/zero of="$DIR/dd.bin" bs=16M count=$COUNT conv=fsync status=none
  end=$(date +%s.%N)
  rm -f "$DIR/dd.bin"
  awk -v a="$start" -v b="$end" 'BEGIN { print b - a }' 
done | sort -n >"$DIR/dd.times"
awk -v b=$((COUNT * 16777216)) -v reps="$REPS" '
  FNR == NR { t[FNR] = $1; all = all " " sprintf("%.3f", $1); next }
  /^(before|after) / { mbs[$1] = $8 }
  END {
    s = t[int((reps + 1) / 2)]
    dd = b / 1e6 / s
    printf "dd       %8.1f MB in %6.3f s = %7.0f MB/s  (bs=16M conv=fsync, median; sorted:%s s)\n", b / 1e6, s, dd, all
    printf "after/before %.2fx; before/dd %.2f, after/dd %.2f\n",
           mbs["after"] / mbs["before"], mbs["before"] / dd, mbs["after"] / dd
  }' "$DIR/dd.times" "$DIR/bench.out"
rm -f "$DIR/bench.out" "$DIR/dd.times"
