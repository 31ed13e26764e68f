#!/usr/bin/env bash
# Multi-node training on SLURM: one tljax process per GPU (default) or per node, all joined by JAX's
# SLURM detection (coordinator = the first node of the step, process id = SLURM_PROCID).
#
#   sbatch --nodes=2 launch/slurm_multinode.sh configs/finetune_all.py /shared/runs/ft         # 2 × 8 GPUs
#   sbatch --nodes=4 --ntasks-per-node=1 --gpus-per-task=8 launch/slurm_multinode.sh CONFIG WORKDIR
#   sbatch ... launch/slurm_multinode.sh CONFIG WORKDIR --config.train.batch_size=1024
#
# WORKDIR must be on a filesystem every node sees (checkpoints are written collectively). The batch size
# in the config is global: it must divide by the number of GPUs (an error says so before training).
# Resubmitting the same command resumes from the newest checkpoint; `--requeue` makes SLURM do that
# itself after a preemption (tljax saves on SIGTERM and exits 75). `--kill-on-bad-exit` stops the other
# tasks at once when one fails; a task killed outright is detected by JAX's heartbeat (100 s default,
# --distributed_heartbeat) and the others exit with an error instead of hanging.
#SBATCH --job-name=tljax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --signal=B:TERM@120
#SBATCH --requeue
#SBATCH --output=%x-%j.out
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: sbatch [sbatch options] $0 CONFIG WORKDIR [tljax.main flags...]" >&2
  exit 2
fi
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
VENV=${TLJAX_VENV:-.venv}
CONFIG=$1
WORKDIR=$2
shift 2
# Decode threads per process: pass --config.data.num_workers=$SLURM_CPUS_PER_TASK among the flags.
exec srun --kill-on-bad-exit=1 "$VENV/bin/python" -m tljax.main \
  --config="$CONFIG" --workdir="$WORKDIR" "$@"
