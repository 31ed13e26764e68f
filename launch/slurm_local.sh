#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (Debian's slurm-wlm + munge), for the sweep tests and
# for trying the SLURM backend without a cluster. Runs as root, without systemd.
#
#   bash launch/slurm_local.sh start     # install (apt, idempotent), start munged/slurmctld/slurmd
#   bash launch/slurm_local.sh status    # exit 0 if the cluster answers and its node is usable
#   bash launch/slurm_local.sh env       # prints `export SLURM_CONF=...` for sbatch/squeue/scontrol
#   bash launch/slurm_local.sh stop      # cancel all jobs, stop the daemons (by their pid files)
#
# Ports 6817/6818 are fixed, so there is one such cluster per machine: `start` reuses a running one
# (printing "reused") and a lock serialises concurrent starts. State lives in $TLJAX_SLURM_DIR
# (default /tmp/tljax-slurm) and is wiped at each fresh start, so job ids restart from 1.
set -euo pipefail
DIR=${TLJAX_SLURM_DIR:-/tmp/tljax-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF
HOST=$(hostname -s)

log() { echo "slurm_local: $*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v munged >/dev/null; then return; fi
  log "installing slurm-wlm and munge (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

up() {  # the controller answers and the node is usable
  [ -f "$CONF" ] || return 1
  scontrol ping 2>/dev/null | grep -q UP || return 1
  sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated|completing)'
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq $((seconds * 10))); do "$@" && return 0; sleep 0.1; done
  log "timed out waiting for $what"; return 1
}

stop_pid() {  # stop_pid PIDFILE: TERM, then wait for the process to exit
  local file=$1 pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

write_conf() {
  local cpus memory
  cpus=$(nproc)
  memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)  # MB, below the real size
  cat >"$CONF" <<EOF
ClusterName=tljax-local
SlurmUser=root
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MailProg=/bin/true
ReturnToService=2
DependencyParameters=kill_invalid_depend
MinJobAge=300
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  install
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock 9
  if up; then log "reused the running cluster ($CONF)"; echo reused; return; fi
  # A half-started or dead cluster of ours: clean it up first.
  stop_pid "$DIR/slurmd.pid"; stop_pid "$DIR/slurmctld.pid"
  rm -rf "$DIR/state" "$DIR/spool"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge" /run/munge
  chown munge:munge /run/munge "$DIR/munge"  # munged runs as munge and writes only here
  write_conf
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --log-file="$DIR/munge/munged.log" \
      --seed-file="$DIR/munge/munged.seed" --pid-file="$DIR/munge/munged.pid" 9>&-
  fi
  wait_for 10 munged test -S /run/munge/munge.socket.2
  slurmctld -f "$CONF" -i 9>&-  # the daemons must not inherit the start lock
  wait_for 30 "slurmctld (scontrol ping UP)" sh -c 'scontrol ping 2>/dev/null | grep -q UP'
  slurmd -f "$CONF" 9>&-
  wait_for 60 "the node to become idle" sh -c "sinfo -h -o %T 2>/dev/null | grep -q '^idle'"
  log "started ($CONF)"
  echo started
}

stop() {
  [ -f "$CONF" ] || { log "not running"; return; }
  scancel --user=root 2>/dev/null || true
  stop_pid "$DIR/slurmd.pid"
  stop_pid "$DIR/slurmctld.pid"
  stop_pid "$DIR/munge/munged.pid"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) up ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
