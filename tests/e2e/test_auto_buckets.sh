#!/usr/bin/env bash
# --bucket-cap-mb auto / --first-bucket-mb auto and --profile-out under mpirun, and
# `dprun predict` on the profile: the choice is made once, logged, and changes nothing but
# the buckets (2 ranks: the same parameters, bit for bit, as fixed caps); the profile is
# complete and predict reads it, prints its tables and validates; bad inputs are refused.
source "$(dirname "$0")/lib.sh" "$@"

"$MAKE_IDX" "$WORK/data" --train 1200 --test 100 --seed 5 >/dev/null || { echo "make_idx failed"; exit 1; }
ARGS=(--data "idx:$WORK/data" --hidden 512,256 --batch-size 50 --steps 14 --lr 0.05 --seed 2)

# DPRUN_LINK_BURST (dprun-netns sets it to its links' tbf burst) goes into the profile.
if DPRUN_LINK_BURST=65536 mpi 2 "${ARGS[@]}" --bucket-cap-mb auto --first-bucket-mb auto --profile-out "$WORK/auto.json" \
    --log-json "$WORK/auto.jsonl" --dump-params "$WORK/auto.bin" --trace "$WORK/trace.json" \
    >"$WORK/out" 2>"$WORK/err"; then
  pass "2 ranks with auto buckets exit 0"
else
  fail "auto buckets run exited non-zero"; cat "$WORK/out" "$WORK/err"
fi
grep -Eq "^auto buckets: first [0-9.]+ MB, cap [0-9.]+ MB: [0-9]+ bucket\(s\), predicted step" "$WORK/out" &&
  pass "the choice is logged" || { fail "no 'auto buckets:' line"; cat "$WORK/out"; }
[ "$(grep -c '^auto buckets:' "$WORK/out")" = 1 ] && pass "chosen once" || fail "chosen more than once"
grep -q "all-reduce over 2 rank(s)" "$WORK/out" && pass "the measured all-reduce is logged" || fail "no all-reduce line"

# One parameter per bucket: a layout automatic sizing never picks (its smallest cap, 0.25 MB,
# holds fc3's weight and bias together). With 2 ranks every layout sums alike, bit for bit.
mpi 2 "${ARGS[@]}" --first-bucket-mb 0.001 --bucket-cap-mb 0.001 --dump-params "$WORK/fixed.bin" \
  >/dev/null 2>&1 || fail "fixed caps run"
cmp -s "$WORK/auto.bin" "$WORK/fixed.bin" && pass "same parameters as other buckets (2 ranks)" ||
  fail "auto buckets changed the training"

python3 - "$WORK" <<'PY' && pass "JSON record and profile are complete" || fail "JSON record / profile"
import json, sys
w = sys.argv[1]
recs = [json.loads(l) for l in open(f"{w}/auto.jsonl")]
auto = [r for r in recs if r["type"] == "auto_buckets"]
assert len(auto) == 1 and auto[0]["step"] == 6, auto
assert auto[0]["predicted_step_ms"] > 0 and auto[0]["bucket_mb"], auto
p = json.load(open(f"{w}/auto.json"))
assert p["type"] == "dprun-profile" and p["world_size"] == 2 and p["profiled_steps"] == [2, 6], p
assert p["buckets"]["auto"] and p["buckets"]["assignment"], p["buckets"]
assert p["link_burst_bytes"] == 65536, p["link_burst_bytes"]
assert p["hosts"] == 1, p["hosts"]  # both ranks on this host
params = p["compute"]["params"]
assert [q["name"] for q in params] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
assert params[0]["bytes"] == 784 * 512 * 4
# Backward writes the last layer first (on the slower rank too: the profile's times are the
# latest over the ranks).
assert 0 <= params[4]["ready_us"] <= params[2]["ready_us"] <= params[0]["ready_us"], params
# And when rank 0's own backward wrote them: no later than the slowest rank's.
assert all(0 <= q["own_ready_us"] <= q["ready_us"] + 1e-6 for q in params), params
assert len(p["allreduce_idle"]["samples"]) >= 2
# Steps 8..14 measured after the choice took effect.
assert p["measured"]["steps"] == 7 and p["measured"]["step_us"] > 0, p["measured"]
# From step 7 on every rank all-reduces the chosen buckets, of the chosen sizes.
spans = [e for e in json.load(open(f"{w}/trace.json"))["traceEvents"]
         if e.get("ph") == "X" and e["name"].startswith("allreduce bucket")]
for rank in (0, 1):
    for step in range(7, 15):
        mb = [e["args"]["bytes"] / 1048576 for e in spans if e["pid"] == rank and e["args"]["step"] == step]
        assert len(mb) == len(auto[0]["bucket_mb"]), (rank, step, mb, auto[0]["bucket_mb"])
        assert all(abs(a - b) < 1e-6 for a, b in zip(mb, auto[0]["bucket_mb"])), (mb, auto[0]["bucket_mb"])
PY

if "$DPRUN" predict --profile "$WORK/auto.json" --validate "$WORK/auto.json" >"$WORK/pred" 2>"$WORK/perr"; then
  pass "predict exits 0 without mpirun"
else
  fail "predict exited non-zero"; cat "$WORK/pred" "$WORK/perr"
fi
for n in 8 16 32 64 128 256 512 1024; do
  grep -Eq "^ +$n +[0-9]+ +(ring|tree|hierarchical) " "$WORK/pred" || { fail "no row for $n GPUs"; cat "$WORK/pred"; }
done
grep -q "network h100-nvlink-ib" "$WORK/pred" && grep -q "step time error over 1 run" "$WORK/pred" &&
  pass "predict prints 8..1024 GPUs and the validation" || { fail "predict output"; cat "$WORK/pred"; }
# One GPU waits for no peer, however far behind the profiled run's slower rank was.
"$DPRUN" predict --profile "$WORK/auto.json" --gpus 1 >"$WORK/pred1" 2>&1 &&
  grep -Eq "^ +1 +1 +[a-z]+ +[0-9.]+ +0\.00 +0\.00 +100\.0% " "$WORK/pred1" && pass "predict: 1 GPU at 100%" ||
  { fail "predict: 1 GPU"; cat "$WORK/pred1"; }
"$DPRUN" predict --profile "$WORK/auto.json" --network emulated --link-gbit 2 --gpus 2,4 >"$WORK/pred2" 2>&1 &&
  grep -Eq "^ +4 +4 " "$WORK/pred2" && pass "predict --network emulated" || { fail "emulated"; cat "$WORK/pred2"; }

# The profile's token bucket shapes the measured network unless --link-burst-kib says otherwise.
"$DPRUN" predict --profile "$WORK/auto.json" --network measured --gpus 2 --validate "$WORK/auto.json" >"$WORK/pred3" 2>&1 &&
  grep -q "(token bucket 64 KiB)" "$WORK/pred3" && pass "predict models the profile's link burst" ||
  { fail "link burst"; cat "$WORK/pred3"; }
"$DPRUN" predict --profile "$WORK/auto.json" --network measured --gpus 2 --link-burst-kib 0 >"$WORK/pred3" 2>&1 &&
  ! grep -q "token bucket" "$WORK/pred3" && pass "--link-burst-kib 0: line rate" || { fail "--link-burst-kib 0"; cat "$WORK/pred3"; }

# Too short for the profile: a warning, the fixed caps, exit 0.
mpi 2 "${ARGS[@]}" --steps 4 --bucket-cap-mb auto >"$WORK/out" 2>"$WORK/err" &&
  grep -q "ended before its profile" "$WORK/err" && pass "a run shorter than the profile says so" ||
  { fail "short run"; cat "$WORK/out" "$WORK/err"; }

printf 'bucket-cap-mb = auto\n' >"$WORK/run.cfg"
mpi 1 "${ARGS[@]}" --config "$WORK/run.cfg" >"$WORK/out" 2>&1 && grep -q "^auto buckets:" "$WORK/out" &&
  pass "--config bucket-cap-mb = auto" || { fail "config auto"; cat "$WORK/out"; }

# A resumed run profiles the steps after its checkpoint, and its header says which (it said
# "steps 2-6" whatever the checkpoint's step).
"$DPRUN" "${ARGS[@]}" --steps 4 --checkpoint-dir "$WORK/ck" >/dev/null 2>&1 || fail "checkpointed run"
"$DPRUN" "${ARGS[@]}" --checkpoint-dir "$WORK/ck" --resume auto --bucket-cap-mb auto >"$WORK/out" 2>&1 &&
  grep -q "(auto: until the profile of steps 6-10 chooses the caps)" "$WORK/out" &&
  grep -q "(steps 6..10: backward" "$WORK/out" && pass "a resumed run's header names its profiled steps" ||
  { fail "resumed run's profiled steps"; cat "$WORK/out"; }

# A checkpoint written with auto buckets before their profile ended holds the fixed caps'
# buckets: the resumed run still chooses (it kept them to the end, without a word).
"$DPRUN" "${ARGS[@]}" --steps 4 --bucket-cap-mb auto --checkpoint-dir "$WORK/ck2" >/dev/null 2>&1 ||
  fail "checkpointed auto run"
"$DPRUN" "${ARGS[@]}" --checkpoint-dir "$WORK/ck2" --resume auto --bucket-cap-mb auto >"$WORK/out" 2>&1 &&
  grep -q "(auto: until the profile of steps 6-10 chooses the caps)" "$WORK/out" &&
  grep -q "^auto buckets:" "$WORK/out" && pass "a checkpoint from before the choice: the resumed run chooses" ||
  { fail "auto buckets after a resume from before the choice"; cat "$WORK/out"; }

expect_error() {  # expect_error PATTERN CMD...: exit 1 and the pattern on stderr
  local pattern=$1
  shift
  if "$@" >"$WORK/out" 2>"$WORK/err"; then
    fail "accepted: $*"
  elif grep -q "$pattern" "$WORK/err"; then
    pass "refused: $pattern"
  else
    fail "wrong message for $*"; cat "$WORK/err"
  fi
}
expect_error "bucket-cap-mb fast: expected a number of MiB or auto" "$DPRUN" "${ARGS[@]}" --bucket-cap-mb fast
expect_error "first-bucket-mb 1x: expected a number of MiB or auto" "$DPRUN" "${ARGS[@]}" --first-bucket-mb 1x
expect_error "bucket-cap-mb must be a number of MB of at least one float" "$DPRUN" "${ARGS[@]}" --bucket-cap-mb 0
expect_error "bucket-cap-mb must be a number of MB of at least one float (4 bytes) and at most 1073741824 MB (2^50 bytes), got 20000000000000" \
  "$DPRUN" "${ARGS[@]}" --bucket-cap-mb 2e13
expect_error "profile-out /dev/null: exists and is not a regular file" "$DPRUN" "${ARGS[@]}" --profile-out /dev/null
expect_error "cannot open the profile" "$DPRUN" predict --profile "$WORK/missing.json"
expect_error "not a dprun profile" "$DPRUN" predict --profile "$WORK/auto.jsonl"
expect_error "predict: --profile FILE is required" "$DPRUN" predict
expect_error "predict: unexpected word 'extra'" "$DPRUN" predict --profile "$WORK/missing.json" extra
expect_error "expected h100-nvlink-ib, emulated or measured" "$DPRUN" predict --profile "$WORK/auto.json" --network wifi
expect_error "'x' is not a count" "$DPRUN" predict --profile "$WORK/auto.json" --gpus 8,x
expect_error "link-burst-kib must be 0 or more (got -5)" "$DPRUN" predict --profile "$WORK/auto.json" --link-burst-kib=-5
expect_error "DPRUN_LINK_BURST='4MB': expected the links' token bucket in bytes" env DPRUN_LINK_BURST=4MB \
  "$DPRUN" "${ARGS[@]}" --profile-out "$WORK/burst.json"

# predict checks every value before it prints anything, and names the flag and the problem
# (emulated_link's "emulated link: rate 0 Gbit/s, ..." did not; bucket caps and --validate
# files failed only after the profile summary and the table header were out).
predict_refuses() {  # predict_refuses MESSAGE ARGS...: exit 1, MESSAGE on stderr, nothing on stdout
  local msg=$1
  shift
  if "$DPRUN" predict --profile "$WORK/auto.json" "$@" >"$WORK/out" 2>"$WORK/err"; then
    fail "predict accepted: $*"
  elif grep -qF -- "$msg" "$WORK/err" && [ ! -s "$WORK/out" ]; then
    pass "predict refuses $* before printing: $msg"
  else
    fail "predict $*: want '$msg' and no output"; cat "$WORK/out" "$WORK/err"
  fi
}
predict_refuses "--link-gbit must be > 0 (got 0)" --network emulated --link-gbit 0
predict_refuses "--link-gbit must be > 0 (got -1)" --network emulated --link-gbit=-1
predict_refuses "--link-gbit must be > 0 (got nan)" --network emulated --link-gbit nan
predict_refuses "--link-latency-us must be 0 or more (got -5)" --network emulated --link-latency-us=-5
predict_refuses "--ranks-per-host must be 1 to 16777216 (got 0)" --network emulated --ranks-per-host 0
predict_refuses "--nics-per-node must be at least 1 (got 0)" --nics-per-node 0
predict_refuses "--compute-scale must be > 0 (got 0)" --compute-scale 0
predict_refuses "--algo fast: expected best, ring, tree or hierarchical" --algo fast
predict_refuses "--bucket-cap-mb must be > 0 MB (got 0)" --bucket-cap-mb 0
predict_refuses "--first-bucket-mb must be > 0 MB (got -3)" --first-bucket-mb=-3
predict_refuses "--bucket-cap-mb 1e-06 MB is smaller than one float" --bucket-cap-mb 0.000001
predict_refuses "--validate $WORK/nonexistent.json: cannot open the profile" --validate "$WORK/nonexistent.json"
predict_refuses "--validate $WORK/auto.jsonl: not a dprun profile" --validate "$WORK/auto.json" --validate "$WORK/auto.jsonl"
finish
