#!/usr/bin/env bash
# A throw-away single-node Slurm on this machine, for testing studies/slurm_array.sh for real
# (.ci/slurm-test.sh). Needs root and Debian/Ubuntu packages (installed if missing: slurmctld
# slurmd slurm-client munge); works without systemd.
#
#   bash scripts/slurm-local.sh up      # install, configure, start, wait until the node is idle
#   export SLURM_CONF=/tmp/covlab-slurm/slurm.conf   # (what `up` prints) for sbatch, squeue, ...
#   bash scripts/slurm-local.sh down    # stop what `up` started
#
# Everything of this cluster lives in SLURM_LOCAL_DIR (default /tmp/covlab-slurm): its own
# slurm.conf (so /etc/slurm is not touched and the clients need SLURM_CONF), spool and state
# directories, logs and PID files. Loopback only: the controller and the node listen on
# 127.0.0.1-addressed ports 16817/16818 (not Slurm's 6817/6818, so a real Slurm on the
# machine is not disturbed). One node (this machine's CPUs, 90 % of the free memory), one
# partition `debug`, no accounting (no slurmdbd: `sacct` has nothing, poll `squeue`), no
# cgroups (proctrack/linuxproc, task/none). munge: a munged already answering is used as it
# is; otherwise one is started with the system key (made if missing) and stopped by `down`.
# Every wait is bounded; `up` exits 1 with the daemons' log tails when one does not come up.
set -euo pipefail

cmd=${1:-}
D=${SLURM_LOCAL_DIR:-/tmp/covlab-slurm}
[[ $D == /* && $D != *[[:space:]]* ]] || die "SLURM_LOCAL_DIR: an absolute path without spaces (slurm.conf cannot quote them), got '$D'"
CTLD_PORT=16817
SLURMD_PORT=16818

die() {
  echo "slurm-local: $*" >&2
  exit 1
}

# Running and not a zombie: without an init that reaps promptly a stopped daemon stays a
# zombie for a while, and `kill -0` succeeds on zombies. (From /proc: a minimal Debian has no ps.)
alive() {
  local st
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null) && [[ -n $st && $st != Z* && $st != X* ]]
}

# Stops the daemon whose PID is in file $1 (TERM, then KILL after 5 s).
stop() {
  local f=$1 pid
  [[ -s $f ]] || return 0
  pid=$(<"$f")
  if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$f"
}

down() {
  stop "$D/slurmd.pid"
  stop "$D/slurmctld.pid"
  if [[ -e $D/munged.ours ]]; then
    stop /run/munge/munged.pid
    rm -f "$D/munged.ours"
  fi
}

logs() {
  local f
  for f in "$D"/log/*.log; do
    [[ -e $f ]] || continue
    echo "--- $f (last 20 lines)" >&2
    tail -n 20 "$f" >&2
  done
}

case $cmd in
down)
  down
  exit 0
  ;;
up) ;;
*)
  echo "usage: bash scripts/slurm-local.sh up|down" >&2
  exit 2
  ;;
esac

[[ $EUID -eq 0 ]] || die "needs root (installs packages, starts munged, slurmctld and slurmd)"
down # whatever an earlier `up` left running

# 1. Packages.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null ||
  ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "slurmctld, slurmd, sbatch or munged missing and no apt-get"
  export DEBIAN_FRONTEND=noninteractive
  timeout 120 apt-get update -q >/dev/null || die "apt-get update failed or took over 120 s"
  timeout 180 apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge \
    >/dev/null || die "apt-get install slurmctld slurmd slurm-client munge failed or took over 180 s"
fi

# 2. munge: the credential service every Slurm RPC is signed with.
if ! timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
  if [[ ! -s /etc/munge/munge.key ]]; then
    install -d -o munge -g munge -m 0700 /etc/munge
    mungekey --create --keyfile=/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  runuser -u munge -- /usr/sbin/munged # daemonises, writes /run/munge/munged.pid
  mkdir -p "$D"
  touch "$D/munged.ours"
  ok=
  for _ in $(seq 50); do
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
      ok=1
      break
    fi
    sleep 0.1
  done
  [[ -n $ok ]] || die "munged started but a munge | unmunge round trip fails within 5 s"
fi

# 3. This cluster's configuration.
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(($(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10))
install -d -m 0755 "$D" "$D/log" "$D/slurmd"
install -d -m 0700 "$D/state"
cat >"$D/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh (a throw-away single-node cluster, loopback only).
ClusterName=covlab-local
SlurmctldHost=${HOST}(127.0.0.1)
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=${D}/state
SlurmdSpoolDir=${D}/slurmd
SlurmctldPidFile=${D}/slurmctld.pid
SlurmdPidFile=${D}/slurmd.pid
SlurmctldLogFile=${D}/log/slurmctld.log
SlurmdLogFile=${D}/log/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=60
# Finished jobs stay visible to squeue/scontrol for 5 minutes (there is no accounting).
MinJobAge=300
NodeName=${HOST} NodeAddr=127.0.0.1 NodeHostname=${HOST} CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$D/slurm.conf

# 4. The daemons (both daemonise and write their PID files; -c: no state from an earlier run).
slurmctld -c -f "$SLURM_CONF" || {
  logs
  die "slurmctld did not start"
}
up=
for _ in $(seq 100); do
  if timeout 2 scontrol ping 2>/dev/null | grep -q UP; then
    up=1
    break
  fi
  sleep 0.1
done
[[ -n $up ]] || {
  logs
  die "slurmctld not answering within 10 s"
}
slurmd -f "$SLURM_CONF" || {
  logs
  die "slurmd did not start"
}
state=
for _ in $(seq 100); do
  state=$(timeout 2 sinfo -h -N -o %T 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.1
done
[[ $state == idle ]] || {
  logs
  die "node ${HOST} is '${state}', not idle, after 10 s"
}
# One trivial job end to end (srun waits for it).
ran=$(timeout 20 srun -N1 -n1 -c1 hostname 2>&1) || {
  logs
  die "srun hostname failed: $ran"
}
[[ $ran == "$HOST" ]] || die "srun hostname printed '$ran', expected '$HOST'"
echo "slurm-local: up (node ${HOST}, ${CPUS} CPUs, ${MEM} MiB); export SLURM_CONF=${SLURM_CONF}"
