#!/usr/bin/env bash
# Multi-host training on a Cloud TPU VM slice (e.g. v4-32 = 4 hosts): the same command on every worker,
# joined by JAX's TPU detection; run from your workstation with gcloud.
#
#   bash launch/tpu_pod.sh NAME ZONE setup                                  # once: venv + jax[tpu] + tljax
#   bash launch/tpu_pod.sh NAME ZONE train configs/finetune_all.py /mnt/shared/runs/ft [flags...]
#
# The code is copied to ~/tljax on every worker by `setup` (scp of this checkout). The workdir must be a
# directory every host mounts (Filestore/NFS, or a gcsfuse mount): checkpoints are written collectively. Relaunching the
# same `train` command resumes from the newest checkpoint.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 TPU_NAME ZONE setup | train CONFIG WORKDIR [flags...]" >&2
  exit 2
fi
NAME=$1
ZONE=$2
ACTION=$3
shift 3
ssh_all() {
  gcloud compute tpus tpu-vm ssh "$NAME" --zone="$ZONE" --worker=all --command "$1"
}
case "$ACTION" in
  setup)
    gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" --worker=all \
      "$(cd "$(dirname "$0")/.." && pwd)" "$NAME":~/tljax
    ssh_all "cd ~/tljax && python3 -m venv .venv && .venv/bin/pip install -q -U pip \
      && .venv/bin/pip install -q 'jax[tpu]' -e ."
    ;;
  train)
    [ $# -ge 2 ] || { echo "train needs CONFIG WORKDIR" >&2; exit 2; }
    CONFIG=$1
    WORKDIR=$2
    shift 2
    ssh_all "cd ~/tljax && .venv/bin/python -m tljax.main --config=$CONFIG --workdir=$WORKDIR $*"
    ;;
  *)
    echo "unknown action $ACTION: use setup or train" >&2
    exit 2
    ;;
esac
