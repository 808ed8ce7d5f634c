#!/bin/bash
# Start one stepup-worker per allocated Slurm task; they serve builds until the job ends.
#
#   export STEPUP_DIST_REDIS_URL=redis://stepup:PASSWORD@head.example.org:6379
#   sbatch --nodes=2 --ntasks-per-node=8 worker/slurm-workers.sh
#
# sbatch passes the submitting shell's environment on, STEPUP_DIST_* included. Set
# STEPUP_WORKER to the stepup-worker of a venv that every node sees, if it is not on PATH.
# The build's folder must be on a filesystem every node mounts at the same path.
#
# Shortly before the time limit (--signal) or on `scancel --batch --signal=TERM`, this
# script gets SIGTERM and passes it on to the workers: each finishes its running step and
# exits. A plain `scancel` also sends SIGTERM to the workers, and SIGKILL after KillWait.
#SBATCH --job-name=stepup-workers
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --signal=B:TERM@300
#SBATCH --output=stepup-workers-%j.out
set -euo pipefail

: "${STEPUP_DIST_REDIS_URL:?set STEPUP_DIST_REDIS_URL to the server of the builds}"
worker="${STEPUP_WORKER:-stepup-worker}"
export STEPUP_WORKER="$worker"

# Each task names its worker after node, job and task, so `rqinfo` shows where it runs.
# exec: the worker itself receives the signals srun passes to the task.
# shellcheck disable=SC2016  # expanded by the task's shell, on its node
srun --kill-on-bad-exit=0 bash -c \
    'exec "$STEPUP_WORKER" --name "$(hostname -s).${SLURM_JOB_ID}.${SLURM_PROCID}"' &
srun_pid=$!

# shellcheck disable=SC2317  # called by the trap
stop() {
    echo "slurm-workers: stopping workers after their current step"
    kill -TERM "$srun_pid" 2>/dev/null || true
}
trap stop TERM INT

# `wait` returns early when a trapped signal arrives; wait again until srun has ended.
status=0
while kill -0 "$srun_pid" 2>/dev/null; do
    wait "$srun_pid" && status=0 || status=$?
done
exit "$status"
