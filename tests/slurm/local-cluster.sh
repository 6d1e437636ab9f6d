#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying dprun's sbatch scripts and for the
# Slurm test: munged, slurmctld and slurmd on 127.0.0.1, with every file they use (munge
# key and socket, slurm.conf, spool and state directories, logs, pid files) in one private
# directory. Nothing under /etc, /run or /var is touched, so it does not clash with a
# system Slurm or munge.
#
#   tests/slurm/local-cluster.sh start     start it (stopping a previous or crashed one
#                                          in the same directory first), wait until the
#                                          node is idle, print how to use it
#   tests/slurm/local-cluster.sh stop      cancel its jobs, stop the daemons, kill any
#                                          job processes left over; safe to repeat
#   tests/slurm/local-cluster.sh status    is it up? (sinfo, squeue)
#   tests/slurm/local-cluster.sh env       the line to eval: export SLURM_CONF=DIR/slurm.conf
#   tests/slurm/local-cluster.sh logs      the tail of each daemon's log
#   tests/slurm/local-cluster.sh run CMD   start, run CMD with SLURM_CONF set, always stop
#
# DPRUN_SLURM_DIR picks the directory (default /tmp/dprun-slurm.<uid>). Needs root (slurmd
# starts jobs as their user) and Debian's slurm-wlm and munge (docker/install-deps.sh).
# The Slurm commands find this cluster through SLURM_CONF; the daemons' ports are 6817 and
# 6818 unless those are taken, then the next free pair.
set -Eeuo pipefail

DIR=${DPRUN_SLURM_DIR:-/tmp/dprun-slurm.$(id -u)}
CONF=$DIR/slurm.conf
NODE=$(hostname -s)
# The CPUs slurmd finds (a node configured with more is drained, with fewer is a warning);
# not nproc, which OMP_NUM_THREADS=1 (the test environment) turns into 1.
CPUS=$( (slurmd -C 2>/dev/null || true) | sed -n 's/.* CPUs=\([0-9]*\).*/\1/p')
CPUS=${CPUS:-$(getconf _NPROCESSORS_ONLN)}
START_TIMEOUT=${DPRUN_SLURM_START_TIMEOUT:-60}

STARTING=no

say() { echo "local-cluster: $*" >&2; }
die() {
  trap - ERR
  say "error: $*"
  show_logs
  # A half-started cluster is stopped again: nothing is left running after a failed start.
  if [ "$STARTING" = yes ]; then STARTING=no; do_stop; fi
  exit 1
}

show_logs() {
  local f
  for f in "$DIR/log/munged.log" "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log"; do
    [ -s "$f" ] || continue
    echo "----- $f (last 40 lines) -----" >&2
    tail -n 40 "$f" >&2
  done
}

need_tools() {
  local t missing=()
  for t in munged slurmctld slurmd sinfo squeue scancel sbatch srun scontrol; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "missing: ${missing[*]} (install slurm-wlm and munge: bash docker/install-deps.sh)"
    return 1
  fi
  if [ "$(id -u)" != 0 ]; then
    say "needs root: slurmd runs every job as its submitting user"
    return 1
  fi
}

# pid_of NAME: the pid recorded in NAME's pid file, if that process is still NAME (a stale
# pid file from a crashed run may name a pid that now belongs to something else).
pid_of() {
  local name=$1 file pid
  file=$DIR/run/$name.pid
  [ -r "$file" ] || return 1
  pid=$(tr -dc 0-9 <"$file")
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || return 1
  echo "$pid"
}

# stop_pids PID...: SIGTERM to all, up to 10 s for them to end, then SIGKILL.
stop_pids() {
  local pid i alive
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 50); do
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 1 ] || return 0
    sleep 0.2
  done
  for pid in "$@"; do
    kill -0 "$pid" 2>/dev/null || continue
    say "pid $pid ignored SIGTERM for 10 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  done
}

# Processes that belong to this cluster's jobs, by pid: its slurmstepd daemons and the
# batch shells and tasks they start all carry SLURM_CONF=$CONF in their environment (the
# daemons too, but they are stopped through their pid files, and carry no SLURM_JOB_ID).
# This shell and its ancestors are never listed.
job_processes() {
  local p pid env mine=" " q=$$
  while [ -n "$q" ] && [ "$q" != 0 ]; do
    mine+="$q "
    q=$(awk '/^PPid:/ {print $2}' "/proc/$q/status" 2>/dev/null || true)
  done
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [[ $mine == *" $pid "* ]] && continue
    env=$({ tr '\0' '\n' <"$p/environ"; } 2>/dev/null) || continue
    grep -qxF "SLURM_CONF=$CONF" <<<"$env" || continue
    if [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || grep -q '^SLURM_JOB_ID=' <<<"$env"; then
      echo "$pid"
    fi
  done
}

cluster_up() {
  pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null && pid_of munged >/dev/null || return 1
  case "$(SLURM_CONF=$CONF timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null)" in
    idle | mix | alloc) return 0 ;;
    *) return 1 ;;
  esac
}

# kill_jobs SIGNAL: send SIGNAL to every process of this cluster's jobs, by pid.
kill_jobs() {
  local left pid
  left=$(job_processes)
  [ -n "$left" ] || return 0
  say "sending SIG$1 to job processes $(echo $left)"
  for pid in $left; do kill "-$1" "$pid" 2>/dev/null || true; done
}

jobs_active() { [ -n "$(SLURM_CONF=$CONF timeout 5 squeue -h -t R,CG,S 2>/dev/null)" ]; }

do_stop() {
  local pid i
  if [ ! -d "$DIR" ]; then
    return 0
  fi
  if pid_of slurmctld >/dev/null; then
    # Cancel every job (Slurm sends SIGTERM, and SIGKILL only KillWait seconds later); after
    # 3 s SIGKILL whatever is left of them: slurmd does not take running steps down with it.
    SLURM_CONF=$CONF timeout 10 scancel --quiet --partition=local 2>/dev/null || true
    for i in $(seq 15); do jobs_active || break; sleep 0.2; done
    if jobs_active; then
      kill_jobs KILL
      for i in $(seq 25); do jobs_active || break; sleep 0.2; done
    fi
  fi
  local daemons=()
  for name in slurmd slurmctld munged; do
    if pid=$(pid_of "$name"); then daemons+=("$pid"); fi
  done
  [ ${#daemons[@]} -eq 0 ] || stop_pids "${daemons[@]}"
  # Whatever is left of jobs (a crashed run's, whose daemons are gone).
  kill_jobs KILL
  rm -f "$DIR"/run/*.pid
}

# A free TCP port pair (P, P+1) on 127.0.0.1, starting at 6817.
free_ports() {
  local p
  for p in $(seq 6817 2 6899); do
    if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! (: <"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

write_conf() {
  local port=$1
  cat >"$CONF" <<EOF
# Written by dprun's tests/slurm/local-cluster.sh: a one-node cluster on 127.0.0.1.
ClusterName=dprun-local
# Job ids of their own for each cluster running at once (they have different ports): Open MPI
# under srun names its shared-memory segments after the job and step id, and two clusters'
# job 2 on one host would map each other's segments (and crash).
FirstJobId=$(((port - 6817) / 2 * 100000 + 1))
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
# Everyone is root here (containers, CI).
SlurmUser=root
SlurmdUser=root
# A private munged. cred_expire is also how long a requeued job waits before it may start
# again (default 120 s).
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=5
# Look at pending jobs every second (a requeued job becomes eligible later, without an event
# that would wake the scheduler; the defaults are 60 s and 30 s).
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
# No cgroups in a container: track job processes through /proc, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Requeue is allowed (the sbatch scripts ask for it with --requeue).
JobRequeue=1
# Seconds between SIGTERM and SIGKILL when a job is cancelled or reaches its time limit.
KillWait=10
MailProg=/bin/true
PlugStackConfig=$DIR/plugstack.conf
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
TmpFS=$DIR/tmp
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=local Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

do_start() {
  need_tools || exit 1
  if cluster_up; then
    say "already running in $DIR"
    print_usage
    return 0
  fi
  # Two clusters starting at once (two test runs) must not pick the same free ports: one
  # start at a time, until its daemons listen. The daemons are started without this fd.
  exec 9>"/tmp/dprun-slurm-start.lock"
  flock -w 120 9 || die "another local cluster has been starting for 120 s (/tmp/dprun-slurm-start.lock)"
  # A previous run that crashed or was half started: stop what is left, start clean.
  do_stop
  rm -rf "$DIR"
  mkdir -p "$DIR"/{munge,state,spool,tmp,run,log}
  chmod 711 "$DIR" "$DIR/munge"  # the socket in munge/ must be reachable by every user
  STARTING=yes
  trap 'die "start failed (line $LINENO)"' ERR

  # munge: a fresh key, a private socket. --force: munged refuses to run as root (and
  # frowns at /tmp's permissions) without it.
  head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
  chmod 400 "$DIR/munge/munge.key"
  munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" 9>&- ||
    die "munged did not start"

  local port
  port=$(free_ports) || die "no free port pair in 6817..6900"
  : >"$DIR/plugstack.conf"
  write_conf "$port"
  export SLURM_CONF=$CONF
  # -c: start with no saved state (the directory is new) rather than look for it
  slurmctld -f "$CONF" -c 9>&- || die "slurmctld did not start"
  slurmd -f "$CONF" -N "$NODE" 9>&- || die "slurmd did not start"

  local deadline=$((SECONDS + START_TIMEOUT)) state=""
  while [ $SECONDS -lt $deadline ]; do
    state=$(timeout 10 sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.5
  done
  if [ "$state" != idle ]; then
    timeout 10 sinfo -N -l >&2 || true
    timeout 10 scontrol show node "$NODE" >&2 || true
    die "node $NODE not idle after ${START_TIMEOUT}s (state '${state:-no answer}')"
  fi
  trap - ERR
  STARTING=no
  exec 9>&-
  say "up: node $NODE ($CPUS CPUs) in partition 'local', slurmctld port $port, files in $DIR"
  print_usage
}

print_usage() {
  cat >&2 <<EOF
local-cluster: use it with
  export SLURM_CONF=$CONF
  sbatch ...; squeue; sinfo
local-cluster: stop it with: $0 stop   (logs: $DIR/log)
EOF
}

do_status() {
  if cluster_up; then
    echo "up ($DIR)"
    SLURM_CONF=$CONF sinfo
    SLURM_CONF=$CONF squeue
  else
    echo "down ($DIR)"
    return 1
  fi
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop; say "stopped ($DIR)" ;;
  status) do_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  logs) show_logs ;;
  run)
    shift
    [ $# -gt 0 ] || { say "usage: $0 run COMMAND [ARGS...]"; exit 2; }
    trap 'do_stop' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    do_start
    SLURM_CONF=$CONF "$@"
    ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
