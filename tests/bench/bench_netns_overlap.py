#!/usr/bin/env python3
"""How much of the gradient all-reduce backward hides, on emulated hosts (launcher/netns).

Runs dprun on H hosts x R ranks (dprun-netns) for each configuration, interleaved (A B C A B C ...)
so that a change in the machine's load hits every configuration alike, and prints per
configuration the medians over runs of: step time, communication and exposed communication per
step, overlap (1 - exposed / communication), global samples/s, backward time; plus what the CPUs
did meanwhile (from /proc/stat: busy share, the part in softirq, i.e. moving packets through the
veths and tc; the load average) and how much CPU each rank used (user + system, over its wall time:
1.0 = one core all the time).

  sudo python3 tests/bench/bench_netns_overlap.py --build build [--reps 3] [--steps 60] \
      [--rate 2gbit] [--config 'default=' --config 'cap4=--bucket-cap-mb 4' \
      --config 'unshaped=;--rate none' ...] [--json out.json]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NETNS = os.path.join(HERE, "..", "..", "launcher", "netns", "dprun-netns")

DEFAULT_CONFIGS = [
    ("default buckets", ""),
    ("--bucket-cap-mb 4", "--bucket-cap-mb 4"),
    ("--no-overlap", "--no-overlap"),
]


# Runs one rank and prints its CPU use in one line: "cpu HOST WALL_S USER_S SYS_S".
RANK_WRAPPER = """
import os, resource, socket, subprocess, sys, time
t0 = time.time()
rc = subprocess.call(sys.argv[1:])
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print("cpu %s %.3f %.3f %.3f" % (socket.gethostname(), time.time() - t0, ru.ru_utime, ru.ru_stime), flush=True)
sys.exit(rc)
"""


def cpu_times():
    """(user, system, softirq, total) jiffies over all CPUs, from /proc/stat's first line.
    Where the kernel does not account interrupt time apart (CONFIG_IRQ_TIME_ACCOUNTING off, as
    in this VM), softirq work (the veths, tc, TCP) lands in system, and softirq stays near 0."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return user + nice, system + irq, softirq, sum(v[:8])


def run_one(args, label, extra, work, i):
    log = os.path.join(work, f"run{i}.jsonl")
    extra, _, netns_extra = extra.partition(";")
    dprun = [os.path.join(args.build, "dprun"), "--model", "mlp", "--hidden", args.hidden,
             "--data", args.data, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
             "--log-interval", "1000", "--log-json", log] + extra.split()
    wrapped = [sys.executable, "-c", RANK_WRAPPER] + dprun
    cmd = [NETNS, "-q", "--hosts", str(args.hosts), "--ranks-per-host", str(args.ranks_per_host),
           "--rate", args.rate, "--timeout", str(args.timeout)] + args.netns_arg + netns_extra.split() + \
        ["--"] + wrapped
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    load = os.getloadavg()[0]
    u0, y0, s0, t0 = cpu_times()
    w0 = time.time()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=args.timeout + 60)
    wall = time.time() - w0
    u1, y1, s1, t1 = cpu_times()
    if p.returncode != 0:
        sys.exit(f"run failed ({label}), exit {p.returncode}:\n{p.stdout}")
    steps = [r for r in map(json.loads, open(log)) if r["type"] == "step"][args.skip:]
    if not steps:
        sys.exit(f"no steps after the first {args.skip} ({label})")

    def med(k):
        return statistics.median(r[k] for r in steps)

    comm = sum(r["comm_ms"] for r in steps)
    exposed = sum(r["exposed_comm_ms"] for r in steps)
    ranks = []
    for m in re.finditer(r"^cpu (\S+) ([\d.]+) ([\d.]+) ([\d.]+)$", p.stdout, re.M):
        wall_r = float(m.group(2))
        ranks.append(((float(m.group(3)) + float(m.group(4))) / wall_r, float(m.group(4)) / wall_r))
    m = re.search(r"^reducer .*?(\d+) buckets?", p.stdout, re.M)
    return {
        "label": label, "buckets": int(m.group(1)) if m else 0, "step_ms": med("step_ms"), "comm_ms": med("comm_ms"),
        "exposed_ms": med("exposed_comm_ms"), "overlap": 1 - exposed / comm if comm > 0 else 0.0,
        "samples_per_s": med("samples_per_s"), "backward_ms": med("backward_ms"),
        "forward_ms": med("forward_ms"), "cpu_user": (u1 - u0) / max(t1 - t0, 1),
        "cpu_system": (y1 - y0) / max(t1 - t0, 1),
        "cpu_softirq": (s1 - s0) / max(t1 - t0, 1), "load": load, "wall_s": wall,
        "rank_cpu": ranks,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--ranks-per-host", type=int, default=1)
    ap.add_argument("--rate", default="2gbit")
    ap.add_argument("--netns-arg", action="append", default=[], help="passed to dprun-netns")
    ap.add_argument("--hidden", default="1024,1024,1024")
    ap.add_argument("--data", default="idx:/usr/share/datasets/fashion-mnist")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--skip", type=int, default=10, help="first steps left out (warm-up)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=300, help="per run, seconds")
    ap.add_argument("--config", action="append", default=[],
                    help="LABEL=DPRUN OPTIONS[;DPRUN-NETNS OPTIONS] (repeatable; default: default "
                         "buckets, --bucket-cap-mb 4, --no-overlap), e.g. 'unshaped=;--rate none'")
    ap.add_argument("--json", help="write every run's figures here")
    args = ap.parse_args()
    configs = [tuple(c.split("=", 1)) for c in args.config] or DEFAULT_CONFIGS

    results = {label: [] for label, _ in configs}
    with tempfile.TemporaryDirectory(prefix="dprun-netns-bench.") as work:
        i = 0
        for rep in range(args.reps):
            for label, extra in configs:
                r = run_one(args, label, extra, work, i)
                i += 1
                results[label].append(r)
                print(f"rep {rep + 1} {label:20s} {r['buckets']} bkt  step {r['step_ms']:6.1f} ms  comm {r['comm_ms']:6.1f}"
                      f"  exposed {r['exposed_ms']:6.1f}  overlap {r['overlap']:4.0%}"
                      f"  {r['samples_per_s']:6.0f} samples/s  load {r['load']:.1f}", flush=True)

    print(f"\n{args.hosts} host(s) x {args.ranks_per_host} rank(s), links {args.rate} "
          f"{' '.join(args.netns_arg)}, mlp {args.hidden}, batch {args.batch_size}/rank, "
          f"{args.steps} steps (first {args.skip} left out), medians of {args.reps} interleaved runs")
    print(f"{'config':20s} {'bkt':>3s} {'step ms':>8s} {'comm ms':>8s} {'exposed':>8s} {'overlap':>8s} "
          f"{'samples/s':>10s} {'fwd ms':>7s} {'bwd ms':>7s} {'cpu user':>9s} {'system':>7s} {'softirq':>8s} "
          f"{'rank cpu':>9s} {'of it sys':>9s} {'load':>5s}")
    base = None
    for label, _ in configs:
        rs = results[label]

        def m(k):
            return statistics.median(r[k] for r in rs)

        rank_cpu = statistics.median(c for r in rs for c, _ in r["rank_cpu"]) if rs[0]["rank_cpu"] else 0
        rank_sys = statistics.median(y for r in rs for _, y in r["rank_cpu"]) if rs[0]["rank_cpu"] else 0
        sps = m("samples_per_s")
        base = base or sps
        print(f"{label:20s} {rs[0]['buckets']:3d} {m('step_ms'):8.1f} {m('comm_ms'):8.1f} {m('exposed_ms'):8.1f} "
              f"{m('overlap'):8.0%} {sps:10.0f} {m('forward_ms'):7.1f} {m('backward_ms'):7.1f} "
              f"{m('cpu_user'):9.0%} {m('cpu_system'):7.0%} {m('cpu_softirq'):8.1%} {rank_cpu:9.2f} {rank_sys:9.2f} {m('load'):5.1f}"
              f"   ({sps / base:.2f}x)")
    print(f"cpu user / system / softirq: share of all {os.cpu_count()} CPUs during the runs, every "
          "process on the machine (softirq near 0: counted in system on this kernel); rank cpu: "
          "one rank's user+system time over its wall time (1.00 = a whole core; its life, data loading "
          "included), of it sys: the kernel's part (TCP, veth, tc on its behalf); load: the 1-minute "
          "load average when the run started (2 = both cores busy)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
