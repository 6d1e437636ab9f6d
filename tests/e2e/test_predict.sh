#!/usr/bin/env bash
# `dprun predict` on handmade profiles (no training, no MPI): the extrapolation keeps one GPU at
# 100% whatever skew between ranks the profiled run saw; bad profile fields or files, GPU counts,
# bucket caps and options of another --network are refused by name before anything is printed;
# the validation names the runs' profiled steps.
source "$(dirname "$0")/lib.sh" "$@"

# A 2-rank profile of a small MLP whose slower peer wrote fc1 430 us after this rank's backward
# (378 us) ended, as measured on a loaded machine. KEY=VALUE arguments edit it (a JSON path with
# dots, a JSON value); "old" drops own_ready_us (profiles written before it).
profile() {  # profile FILE [old] [KEY=VALUE...]
  python3 - "$@" <<'PY'
import json, sys
out, edits = sys.argv[1], sys.argv[2:]
ready = [808, 808, 92, 92, 13, 13]
own = [370, 371, 80, 80, 10, 10]
names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"]
sizes = [1605632, 2048, 524288, 1024, 10240, 40]
fit = {"world_size": 2, "alpha_us": 3, "us_per_byte": 2.6e-5, "samples": [{"bytes": 65536, "us": 5}, {"bytes": 1048576, "us": 30}]}
p = {"type": "dprun-profile", "version": 1, "world_size": 2, "backend": "mpi", "model": "mlp 784-512-256-10",
     "batch_size": 50, "grad_accum": 1, "overlap": True, "wire_ratio": 1.0, "link_burst_bytes": 0, "hosts": 1,
     "profiled_steps": [2, 6],
     "compute": {"pre_backward_us": 536, "backward_us": 378, "post_backward_us": 272, "data_us": 20,
                 "forward_us": 435, "optimizer_us": 268,
                 "params": [{"name": n, "bytes": b, "ready_us": r, "own_ready_us": o}
                            for n, b, r, o in zip(names, sizes, ready, own)]},
     "allreduce_idle": fit, "allreduce_busy": fit,
     "buckets": {"first_mb": 0.5, "cap_mb": 0.5, "auto": True, "assignment": [[5, 4, 3], [2], [1], [0]],
                 "predicted_step_us": 1665, "predicted_exposed_us": 478},
     "measured": {"steps": 7, "step_us": 2553, "backward_us": 384, "comm_us": 1062, "exposed_us": 898,
                  "other_wait_us": 14}}
for e in edits:
    if e == "old":
        for q in p["compute"]["params"]:
            del q["own_ready_us"]
        continue
    key, value = e.split("=", 1)
    *path, last = [int(k) if k.isdigit() else k for k in key.split(".")]
    d = p
    for k in path:
        d = d[k]
    d[last] = json.loads(value)
json.dump(p, open(out, "w"))
PY
}

profile "$WORK/p.json"
profile "$WORK/old.json" old
profile "$WORK/late.json" profiled_steps=[12,16]

# One GPU has nothing to wait for: 100%, none exposed, with own ready times or without them.
for f in p old; do
  for net in h100-nvlink-ib emulated measured; do
    if "$DPRUN" predict --profile "$WORK/$f.json" --network "$net" --gpus 1,2 >"$WORK/out" 2>"$WORK/err" &&
      grep -Eq "^ +1 +1 +[a-z]+ +[0-9.]+ +0\.00 +0\.00 +100\.0% " "$WORK/out"; then
      pass "$f profile, $net: 1 GPU at 100%"
    else
      fail "$f profile, $net: 1 GPU not at 100%"; cat "$WORK/out" "$WORK/err"
    fi
  done
done
"$DPRUN" predict --profile "$WORK/p.json" --gpus 1 >"$WORK/out" 2>&1 &&
  grep -q "a slower rank had gradients up to 0.44 ms after rank 0: that run's, not carried" "$WORK/out" &&
  pass "the profiled skew is reported" || { fail "no skew line"; cat "$WORK/out"; }
# The skew is the profiled run's, not the model's: a free network leaves nothing exposed at 64.
"$DPRUN" predict --profile "$WORK/p.json" --network emulated --link-gbit 1e9 --link-latency-us 0 \
  --gpus 64 >"$WORK/out" 2>&1 && grep -Eq "^ +64 +64 +[a-z]+ +[0-9.]+ +0\.00 " "$WORK/out" &&
  pass "no skew carried to 64 GPUs" || { fail "skew carried to 64 GPUs"; cat "$WORK/out"; }
# --validate predicts the measured run with what it waited for: fc1 at 808 us, 430 us after
# backward, exposed.
"$DPRUN" predict --profile "$WORK/p.json" --gpus 2 --validate "$WORK/p.json" --validate "$WORK/p.json" \
  >"$WORK/out" 2>&1 && grep -q "own:  the run's own profiled compute (steps 2..6)" "$WORK/out" &&
  pass "validation names the runs' steps" || { fail "validation steps"; cat "$WORK/out"; }
"$DPRUN" predict --profile "$WORK/p.json" --gpus 2 --validate "$WORK/late.json" >"$WORK/out" 2>&1 &&
  grep -q "own:  the run's own profiled compute (steps 12..16)" "$WORK/out" &&
  pass "validation names a resumed run's later steps" || { fail "validation steps 12..16"; cat "$WORK/out"; }
"$DPRUN" predict --profile "$WORK/p.json" --gpus 2 --validate "$WORK/late.json" --validate "$WORK/p.json" \
  >"$WORK/out" 2>&1 && grep -q "own:  the run's own profiled compute (each run's profiled steps)" "$WORK/out" &&
  pass "validation of runs profiled at different steps" || { fail "validation mixed steps"; cat "$WORK/out"; }
awk '/p\.json +2 .* base$/ {found = 1; ok = $(NF - 2) + 0 >= 0.4} END {exit !(found && ok)}' "$WORK/out" &&
  pass "validation keeps the measured skew (exposed >= 0.4 ms)" || { fail "validation lost the skew"; cat "$WORK/out"; }

predict_refuses() {  # predict_refuses MESSAGE ARGS...: exit 1, MESSAGE on stderr, nothing on stdout
  local msg=$1
  shift
  if "$DPRUN" predict "$@" >"$WORK/out" 2>"$WORK/err"; then
    fail "predict accepted: $*"
  elif grep -qF -- "$msg" "$WORK/err" && [ ! -s "$WORK/out" ]; then
    pass "predict refuses $* before printing: $msg"
  else
    fail "predict $*: want '$msg' and no output"; cat "$WORK/out" "$WORK/err"
  fi
}
P=(--profile "$WORK/p.json")
predict_refuses "--gpus 8,16,: '' is not a count" "${P[@]}" --gpus 8,16,
predict_refuses "--gpus 8,,16: '' is not a count" "${P[@]}" --gpus 8,,16
predict_refuses "--gpus ,8: '' is not a count" "${P[@]}" --gpus ,8
predict_refuses "--gpus +8: '+8' is not a count" "${P[@]}" --gpus +8
predict_refuses "--gpus 8,9,16: 9 GPUs are not a whole number of nodes of 8" "${P[@]}" --gpus 8,9,16
predict_refuses "--gpus 3: 3 GPUs are not a whole number of nodes of 2" "${P[@]}" --network emulated \
  --ranks-per-host 2 --gpus 3
# The default GPU counts on nodes that do not divide 8: 1, 2, 4, ... whole nodes up to 1024 GPUs
# (the default 8,16,... was refused as if the user had given it).
"$DPRUN" predict "${P[@]}" --network emulated --ranks-per-host 3 >"$WORK/out" 2>&1 &&
  [ "$(awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9]+$/ {printf "%s/%s ", $1, $2}' "$WORK/out")" = \
    "3/1 6/2 12/4 24/8 48/16 96/32 192/64 384/128 768/256 " ] &&
  pass "default --gpus on 3-GPU nodes: 1 to 256 nodes" || { fail "default --gpus, 3 a node"; cat "$WORK/out"; }
# --json: the printed table and validation, as JSON.
"$DPRUN" predict "${P[@]}" --gpus 8,16,64 --validate "$WORK/p.json" --json "$WORK/pred.json" >"$WORK/out" 2>&1 &&
  python3 - "$WORK/out" "$WORK/pred.json" <<'PY' && pass "--json: the table and the validation as JSON" || { fail "--json"; cat "$WORK/out"; }
import json, sys
text = open(sys.argv[1]).read().splitlines()
d = json.load(open(sys.argv[2]))
rows = [l.split() for l in text if l.split()[:1] and l.split()[0] in ("8", "16", "64")]
assert [r["gpus"] for r in d["rows"]] == [8, 16, 64] and len(rows) == 3, (d["rows"], rows)
for r, j in zip(rows, d["rows"]):
    assert int(r[1]) == j["nodes"] and r[2] == j["algorithm"], (r, j)
    assert abs(float(r[3]) - j["auto"]["step_ms"]) <= 0.005 + 1e-9, (r, j)
    assert abs(float(r[4]) - j["auto"]["exposed_ms"]) <= 0.005 + 1e-9, (r, j)
    assert abs(float(r[6].rstrip("%")) - 100 * j["efficiency"]) <= 0.05 + 1e-9, (r, j)
    assert int(r[-3]) == j["fixed"]["buckets"] and abs(float(r[-2]) - j["fixed"]["step_ms"]) <= 0.005 + 1e-9
v = d["validation"]
assert len(v["runs"]) == 1 and v["runs"][0]["network"] == "base", v
err = [l for l in text if l.startswith("step time error over 1 run(s)")][0]
assert f"pred mean |error| {100 * v['pred_mean_abs_error']:.1f}%" in err, (err, v)
PY
predict_refuses "--json $WORK/no/p.json: the directory $WORK/no does not exist" "${P[@]}" --json "$WORK/no/p.json"
predict_refuses "--json /dev/null: exists and is not a regular file" "${P[@]}" --json /dev/null
predict_refuses "--ranks-per-host must be 1 to 16777216 (got 16777217)" "${P[@]}" --network emulated \
  --ranks-per-host 16777217
predict_refuses "--gpus 2147483647: 2147483647 is more than 16777216 GPUs (2^24)" "${P[@]}" --gpus 2147483647
predict_refuses "--gpus 8,99999999999: 99999999999 is more than 16777216 GPUs" "${P[@]}" --gpus 8,99999999999
predict_refuses "--bucket-cap-mb 1e+30 MB is more than 1073741824 MB (2^50 bytes)" "${P[@]}" --bucket-cap-mb 1e30
predict_refuses "--first-bucket-mb 20000000000000 MB is more than 1073741824 MB" "${P[@]}" --first-bucket-mb 2e13
# A directory where a profile belongs: its path and the option, not the C++ library's
# "basic_filebuf::underflow error reading the file: Is a directory".
predict_refuses "--profile $WORK: is a directory, not a profile" --profile "$WORK"
predict_refuses "--validate $WORK: is a directory, not a profile" "${P[@]}" --validate "$WORK"
# An option the chosen network does not read is refused with both names: it was ignored, and
# the table was the H100 preset's whatever --link-gbit said.
predict_refuses "--link-gbit is for --network emulated, not --network h100-nvlink-ib" "${P[@]}" \
  --gpus 16 --link-gbit 1 --link-latency-us 1000
predict_refuses "--link-latency-us is for --network emulated, not --network measured" "${P[@]}" \
  --network measured --link-latency-us 1000
predict_refuses "--nics-per-node is for --network h100-nvlink-ib, not --network emulated" "${P[@]}" \
  --network emulated --nics-per-node 4
predict_refuses "--nics-per-node is for --network h100-nvlink-ib, not --network measured" "${P[@]}" \
  --network measured --nics-per-node 8
predict_refuses "--ranks-per-host is for --network emulated (or --validate), not --network measured" \
  "${P[@]}" --network measured --ranks-per-host 2
predict_refuses "--link-burst-kib is for --network emulated or measured (or --validate), not --network h100-nvlink-ib" \
  "${P[@]}" --link-burst-kib 64
# --validate reads --ranks-per-host and --link-burst-kib on any network.
"$DPRUN" predict "${P[@]}" --gpus 2 --ranks-per-host 2 --link-burst-kib 64 --validate "$WORK/p.json" \
  >"$WORK/out" 2>&1 && pass "--validate takes --ranks-per-host and --link-burst-kib" ||
  { fail "--validate with --ranks-per-host and --link-burst-kib"; cat "$WORK/out"; }
# A one-rank profile's all-reduce crossed no link: --network measured has nothing to model.
profile "$WORK/one.json" world_size=1 allreduce_idle.world_size=1 allreduce_busy.world_size=1
predict_refuses "predict: --network measured: $WORK/one.json was measured on 1 rank(s): its all-reduce crossed no link (use a profile of 2 or more ranks, or --network h100-nvlink-ib or emulated)" \
  --profile "$WORK/one.json" --network measured
"$DPRUN" predict "${P[@]}" --gpus 16777216 --bucket-cap-mb 1073741824 >"$WORK/out" 2>&1 &&
  grep -Eq "^ *16777216 +2097152 " "$WORK/out" && pass "2^24 GPUs and a 2^50-byte cap are predicted" ||
  { fail "the largest values"; cat "$WORK/out"; }

# Profile fields predict divides by, scales by or indexes with, in --profile and --validate.
bad() {  # bad NAME MESSAGE EDIT...
  local name=$1 msg=$2
  shift 2
  profile "$WORK/$name.json" "$@"
  predict_refuses "$WORK/$name.json: $msg" --profile "$WORK/$name.json"
  predict_refuses "--validate $WORK/$name.json: $msg" "${P[@]}" --validate "$WORK/$name.json"
}
bad wire0 "wire_ratio must be > 0 (bytes on the wire per gradient byte; got 0)" wire_ratio=0
bad wireneg "wire_ratio must be > 0" wire_ratio=-1
bad world0 "world_size must be at least 1 (got 0)" world_size=0
bad missing "buckets.assignment is not a partition of the 6 parameters" "buckets.assignment=[[5,4,3],[2],[1]]"
bad twice "buckets.assignment is not a partition of the 6 parameters" "buckets.assignment=[[5,4,3],[2],[1],[0,0]]"
bad range "buckets.assignment is not a partition of the 6 parameters" "buckets.assignment=[[5,4,3],[2],[1],[0,6]]"
bad step0 "measured.step_us must be > 0 when measured.steps is 7 (got 0)" measured.step_us=0
bad own "compute.params[0].own_ready_us must be finite and not negative (got -1)" compute.params.0.own_ready_us=-1
# The table is predict's result: a failed write of it is an error, as in coreutils.
rc=0
"$DPRUN" predict "${P[@]}" >/dev/full 2>"$WORK/full.err" || rc=$?
[ "$rc" = 1 ] && grep -q "predict: writing the table to stdout failed" "$WORK/full.err" &&
  pass "the table onto a full disk: exit 1, named" || { fail "predict >/dev/full (exit $rc)"; cat "$WORK/full.err"; }
finish
