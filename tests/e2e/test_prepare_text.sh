#!/usr/bin/env bash
# dprun prepare-text: plain text -> llm.c token files (byte-level, vocabulary 257), checked
# byte for byte against an independent Python reading of the same text; Debian's fortunes
# when installed; every bad input gives "dprun: error:" and a non-zero exit. No MPI.
source "$(dirname "$0")/lib.sh" "$@"

# check_tokens FILE EXPECTED_COUNT: a valid header (magic, version 1, count, vocab 257 in
# header[3]), a size that matches, every token < 257. Prints the token count.
check_tokens() {
  python3 - "$1" "$2" <<'PY'
import struct, sys
path, want = sys.argv[1], int(sys.argv[2])
b = open(path, "rb").read()
h = struct.unpack("<256i", b[:1024])
assert h[0] == 20240520 and h[1] == 1, h[:4]
assert h[3] == 257, f"vocab {h[3]}"
assert all(v == 0 for v in h[4:]), "header[4..255] not zero"
assert len(b) == 1024 + 2 * h[2], (len(b), h[2])
t = struct.unpack(f"<{h[2]}H", b[1024:])
assert max(t) < 257
assert want < 0 or h[2] == want, (h[2], want)
print(h[2])
PY
}

# --- A small corpus: a directory as fortune lays it out ----------------------------------
mkdir -p "$WORK/text"
for i in $(seq 1 20); do
  printf 'Fortune %02d: caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac%d\n' "$i" "$i" >>"$WORK/text/a-quotes"
  printf '%%\n' >>"$WORK/text/a-quotes"
done
printf 'A second file, one document.\n' >"$WORK/text/b-more"
printf 'INDEX-DO-NOT-READ' >"$WORK/text/a-quotes.dat"
ln -s a-quotes "$WORK/text/a-quotes.u8"

if "$DPRUN" prepare-text --input "$WORK/text" --output "$WORK/train.bin" --val-output "$WORK/val.bin" \
    --val-fraction 0.2 --doc-separator % >"$WORK/out" 2>"$WORK/err"; then
  pass "prepare-text exits 0 without mpirun"
else
  fail "prepare-text exited non-zero"; cat "$WORK/out" "$WORK/err"
fi
grep -q "vocabulary 257" "$WORK/out" && grep -q "$WORK/train.bin" "$WORK/out" && grep -q "$WORK/val.bin" "$WORK/out" &&
  pass "prints what it wrote" || { fail "summary"; cat "$WORK/out"; }

# The expected stream, computed independently: files in name order (no .dat, no symlink),
# documents split at "%" lines, end-of-text (256) before each document.
python3 - "$WORK" <<'PY' && pass "tokens equal the text, EOT before every document, val is the last ~20% at a document start" || fail "token contents"
import struct, sys
work = sys.argv[1]
def tokens(p):
    b = open(p, "rb").read()
    n = struct.unpack("<i", b[8:12])[0]
    return list(struct.unpack(f"<{n}H", b[1024:]))
want = []
for name in ["a-quotes", "b-more"]:
    text = open(f"{work}/text/{name}", "rb").read()
    docs, cur = [], b""
    for line in text.splitlines(keepends=True):
        if line.rstrip(b"\r\n") == b"%":
            docs.append(cur); cur = b""
        else:
            cur += line
    docs.append(cur)
    for d in docs:
        if d.strip():
            want += [256] + list(d)
train, val = tokens(f"{work}/train.bin"), tokens(f"{work}/val.bin")
assert train + val == want, "train + val differ from the text"
assert 256 not in want[1:2] and want.count(256) == 21, want.count(256)
assert val[0] == 256, "validation does not start at a document"
assert 0.1 < len(val) / len(want) < 0.3, len(val) / len(want)
assert b"INDEX" not in bytes(t for t in want if t < 256)
PY
check_tokens "$WORK/train.bin" -1 >/dev/null && check_tokens "$WORK/val.bin" -1 >/dev/null &&
  pass "headers and sizes" || fail "headers and sizes"
# The header in od's words: magic 20240520, version 1, then the count and vocab 257.
[ "$(od -An -t d4 -N 16 "$WORK/val.bin" | awk '{print $1, $2, $4}')" = "20240520 1 257" ] &&
  pass "od reads the header" || fail "od header: $(od -An -t d4 -N 16 "$WORK/val.bin")"

# --val-fraction 0: one file, every token.
if "$DPRUN" prepare-text --input "$WORK/text/b-more" --output "$WORK/all.bin" --val-fraction 0 >/dev/null 2>&1 &&
   [ "$(check_tokens "$WORK/all.bin" 30)" = 30 ]; then
  pass "--val-fraction 0 writes everything to --output"
else
  fail "--val-fraction 0"
fi

# --- Real English text -------------------------------------------------------------------
FORTUNES=/usr/share/games/fortunes
if [ -d "$FORTUNES" ]; then
  if "$DPRUN" prepare-text --input "$FORTUNES" --output "$WORK/ft.bin" --val-output "$WORK/fv.bin" \
      --doc-separator % >"$WORK/out" 2>"$WORK/err"; then
    t=$(check_tokens "$WORK/ft.bin" -1) && v=$(check_tokens "$WORK/fv.bin" -1)
    python3 -c "import sys; t, v = int(sys.argv[1]), int(sys.argv[2]); assert t > 500000 and 0.05 < v / (t + v) < 0.15" "$t" "$v" &&
      pass "fortunes: $t train + $v validation tokens" || fail "fortunes: $t / $v tokens"
  else
    fail "prepare-text on $FORTUNES"; cat "$WORK/err"
  fi
else
  echo "skip: $FORTUNES not installed"
fi

# --- Bad inputs ----------------------------------------------------------------------------
# expect NAME "message fragment" ARGS...
expect() {
  local name=$1 msg=$2
  shift 2
  local rc=0
  "$DPRUN" prepare-text "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  if [ "$rc" -eq 0 ]; then fail "$name: exit code 0"; return; fi
  if ! grep -q "^dprun: error: " "$WORK/err"; then fail "$name: no 'dprun: error:'"; cat "$WORK/err"; return; fi
  if ! grep -qi -- "$msg" "$WORK/err"; then fail "$name: message lacks '$msg'"; cat "$WORK/err"; return; fi
  if grep -qE "terminate called|Segmentation|core dumped|what\(\)" "$WORK/err"; then
    fail "$name: crashed instead of reporting"; cat "$WORK/err"; return
  fi
  pass "$name"
}
printf ' \n\n\t\n' >"$WORK/blank.txt"
printf 'ab' >"$WORK/tiny.txt"
mkdir -p "$WORK/outdir"
OUT=(--output "$WORK/o.bin" --val-output "$WORK/v.bin")
expect "missing input" "$WORK/nothing' does not exist" --input "$WORK/nothing" "${OUT[@]}"
expect "no input" "at least one --input" "${OUT[@]}"
expect "empty text" "holds no text" --input "$WORK/blank.txt" "${OUT[@]}"
expect "text too small" "too small" --input "$WORK/tiny.txt" "${OUT[@]}"
expect "unwritable output" "--output $WORK/no/such/dir/o.bin: cannot create $WORK/no/such/dir/\.o\.bin\.tmp\." --input "$WORK/text" \
  --output "$WORK/no/such/dir/o.bin" --val-output "$WORK/v.bin"
expect "output is a directory" "not a regular file" --input "$WORK/text" --output "$WORK/outdir" --val-output "$WORK/v.bin"
expect "missing --val-output" "--val-output is required" --input "$WORK/text" --output "$WORK/o.bin"
expect "bad fraction" "must be in \[0, 1)" --input "$WORK/text" "${OUT[@]}" --val-fraction 1.5
expect "unknown option" "unrecognised option\|unrecognized option" --input "$WORK/text" "${OUT[@]}" --frobnicate
# A text file reached twice would count twice and could be both trained on and validated on.
expect "a file of a directory named again" "input file '$WORK/text/b-more' comes twice (--input $WORK/text --input $WORK/text/b-more)" \
  --input "$WORK/text" --input "$WORK/text/b-more" "${OUT[@]}"
expect "one file spelled two ways" "input files '$WORK/text/b-more' and '$WORK/text/../text/b-more' are the same file" \
  --input "$WORK/text/b-more" --input "$WORK/text/../text/b-more" "${OUT[@]}"
ln "$WORK/text/b-more" "$WORK/hardlink.txt"
expect "a hard link to an input" "are the same file" --input "$WORK/text" --input "$WORK/hardlink.txt" "${OUT[@]}"
rm "$WORK/hardlink.txt"
# One file spelled two ways: the validation tokens would overwrite the training tokens.
expect "same output, ./ spelling" "--output '$WORK/./o.bin' and --val-output '$WORK/o.bin' are the same file" \
  --input "$WORK/text" --output "$WORK/./o.bin" --val-output "$WORK/o.bin"
expect "same output, .. spelling" "are the same file" \
  --input "$WORK/text" --output "$WORK/o.bin" --val-output "$WORK/outdir/../o.bin"
cd "$WORK" || exit 1  # not a subshell: expect counts the failures in this one
expect "same output, relative and ./" "are the same file" --input text --output o.bin --val-output ./o.bin
cd - >/dev/null || exit 1
cp "$WORK/text/b-more" "$WORK/keep.txt"
expect "output is an input" "--output '$WORK/./keep.txt' would overwrite the --input file '$WORK/keep.txt'" \
  --input "$WORK/keep.txt" --output "$WORK/./keep.txt" --val-output "$WORK/v.bin"
expect "val-output is an input" "--val-output '$WORK/keep.txt' would overwrite the --input file" \
  --input "$WORK/keep.txt" --output "$WORK/o.bin" --val-output "$WORK/keep.txt"
cmp -s "$WORK/keep.txt" "$WORK/text/b-more" && pass "the input survived" || fail "the input was overwritten"
expect "a token file named as input" "is an llm.c token file (magic 20240520)" --input "$WORK/train.bin" "${OUT[@]}"
# llm.c's LLaMA-3 token files (magic 20240801, version 7) are no more text than GPT-2's.
python3 -c "import struct, sys; open(sys.argv[1], 'wb').write(struct.pack('<256i', 20240801, 7, *[0] * 254))" "$WORK/llama3.bin"
expect "a LLaMA-3 token file named as input" "is an llm.c token file (magic 20240801)" --input "$WORK/llama3.bin" "${OUT[@]}"
expect "empty --doc-separator" "--doc-separator is empty" --input "$WORK/text" "${OUT[@]}" --doc-separator ''
# --val-output fails after --output could have been written: neither may change.
expect "unwritable val-output" "--val-output $WORK/no/such/dir/v.bin: cannot create" --input "$WORK/text" \
  --output "$WORK/o.bin" --val-output "$WORK/no/such/dir/v.bin"
[ ! -e "$WORK/o.bin" ] && ! ls -a "$WORK" | grep -q '^\.o\.bin\.tmp\.' && pass "no output left behind by failures" ||
  fail "a failed run left $WORK/o.bin or its .tmp"

# An output named like text of an input directory: refused, the text untouched. (Outputs are
# staged in hidden files of this process's own, .NAME.tmp.HOST.PID, which no input is.)
mkdir -p "$WORK/d2"
printf 'first document text\n' >"$WORK/d2/a.txt"
printf 'precious second text\n' >"$WORK/d2/b.txt"
expect "--output is text of an input directory" \
  "--output '$WORK/d2/b.txt' would overwrite '$WORK/d2/b.txt', a text file of the --input directory '$WORK/d2'" \
  --input "$WORK/d2" --output "$WORK/d2/b.txt" --val-fraction 0
[ "$(cat "$WORK/d2/b.txt")" = "precious second text" ] && pass "the text survived" ||
  fail "a text was overwritten"

# Run again on a directory that holds its own earlier outputs and another token file: the
# same tokens as a run on the text alone, the foreign token file skipped with a note.
cp -r "$WORK/text" "$WORK/again"
PT=(--doc-separator % --val-fraction 0.2)
"$DPRUN" prepare-text --input "$WORK/again" --output "$WORK/again/t.bin" --val-output "$WORK/again/v.bin" "${PT[@]}" \
  >/dev/null 2>&1 || fail "prepare-text into its input directory"
cp "$WORK/again/t.bin" "$WORK/first-t.bin"
cp "$WORK/again/v.bin" "$WORK/first-v.bin"
cp "$WORK/train.bin" "$WORK/again/other-tokens"
cp "$WORK/llama3.bin" "$WORK/again/llama3-tokens"
if "$DPRUN" prepare-text --input "$WORK/again" --output "$WORK/again/./t.bin" --val-output "$WORK/again/v.bin" "${PT[@]}" \
    >"$WORK/out" 2>"$WORK/err" && cmp -s "$WORK/again/t.bin" "$WORK/first-t.bin" &&
   cmp -s "$WORK/again/v.bin" "$WORK/first-v.bin"; then
  pass "a re-run does not read its own outputs"
else
  fail "a re-run read its own outputs"; cat "$WORK/out" "$WORK/err"
fi
grep -q "skipping '$WORK/again/other-tokens': an llm.c token file" "$WORK/out" &&
  grep -q "skipping '$WORK/again/llama3-tokens': an llm.c token file" "$WORK/out" &&
  pass "token files (GPT-2's, LLaMA-3's) in an input directory are skipped with a note" ||
  { fail "no note on a token file"; cat "$WORK/out"; }

# Two jobs writing one --output at the same time: each stages its own temporary, so both
# succeed and the file is one job's whole output (with one shared NAME.tmp, one job's rename
# took the other's half-written bytes and the other then failed).
python3 -c "import sys; open(sys.argv[1], 'w').write('a' * 6000000)" "$WORK/big-a.txt"
python3 -c "import sys; open(sys.argv[1], 'w').write('b' * 7000000)" "$WORK/big-b.txt"
for x in a b; do
  "$DPRUN" prepare-text --input "$WORK/big-$x.txt" --output "$WORK/alone-$x.bin" --val-fraction 0 >/dev/null
done
rc_a=0 rc_b=0
"$DPRUN" prepare-text --input "$WORK/big-a.txt" --output "$WORK/both.bin" --val-fraction 0 >"$WORK/a.out" 2>&1 &
pid_a=$!
"$DPRUN" prepare-text --input "$WORK/big-b.txt" --output "$WORK/both.bin" --val-fraction 0 >"$WORK/b.out" 2>&1 || rc_b=$?
wait "$pid_a" || rc_a=$?
if [ "$rc_a" = 0 ] && [ "$rc_b" = 0 ] &&
   { cmp -s "$WORK/both.bin" "$WORK/alone-a.bin" || cmp -s "$WORK/both.bin" "$WORK/alone-b.bin"; } &&
   ! ls -a "$WORK" | grep -q '^\.both\.bin\.tmp'; then
  pass "two writers of one --output: both succeed, the file is one of them whole"
else
  fail "two writers of one --output (exit $rc_a and $rc_b)"; cat "$WORK/a.out" "$WORK/b.out"
fi

"$DPRUN" prepare-text --help >"$WORK/out" 2>&1 && grep -q -- "--doc-separator" "$WORK/out" &&
  pass "--help" || fail "--help"
finish
