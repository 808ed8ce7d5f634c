#!/bin/bash
# Start stepup-worker on every node of a Slurm allocation: one per allocated CPU (default)
# or one per node (--per-node). They serve builds until the job is told to end.
#
#   export STEPUP_DIST_REDIS_URL=redis://stepup:PASSWORD@head.example.org:6379
#   sbatch --nodes=2 --ntasks-per-node=8 slurm-workers.sh            # 16 workers
#   sbatch --nodes=2 --exclusive slurm-workers.sh --per-node --resources gpu:4
#
# Arguments (or environment):
#   --per-cpu | --per-node      one worker per allocated CPU, or one per node
#                               (STEPUP_WORKERS_PER=cpu|node; default cpu)
#   --resources NAME:UNITS,...  what each node offers to steps with resources=
#                               (STEPUP_DIST_RESOURCES; ask Slurm for them too, e.g. --gres)
# STEPUP_WORKER names the stepup-worker to run (default: the one on PATH), from a venv that
# every node sees. sbatch passes the submitting shell's environment on, STEPUP_DIST_*
# included. The builds' folders must be mounted at the same path on every node.
#
# Stopping: SIGTERM to this script (at the time limit minus 300 s through --signal=B:, or
# `scancel --batch --signal=TERM JOBID` at any time) reaches the workers alone: each finishes
# its running step and exits. Not through srun, which turns SIGTERM into SIGKILL for its
# tasks ("forcing job termination"), nor `scancel --signal=TERM` without --batch, which
# signals every process of the step, the steps' own commands included.
#SBATCH --job-name=stepup-workers
#SBATCH --time=04:00:00
#SBATCH --signal=B:TERM@300
#SBATCH --output=stepup-workers-%j.out
set -euo pipefail

per="${STEPUP_WORKERS_PER:-cpu}"
while (($#)); do
    case "$1" in
        --per-cpu) per=cpu ;;
        --per-node) per=node ;;
        --resources=*) export STEPUP_DIST_RESOURCES="${1#*=}" ;;
        --resources)
            (($# >= 2)) || { echo "slurm-workers: --resources needs NAME:UNITS,..." >&2; exit 2; }
            export STEPUP_DIST_RESOURCES="$2"
            shift
            ;;
        *)
            echo "slurm-workers: unknown argument $1 (use --per-cpu, --per-node, --resources)" >&2
            exit 2
            ;;
    esac
    shift
done
case "$per" in
    cpu | node) ;;
    *) echo "slurm-workers: STEPUP_WORKERS_PER must be cpu or node, not $per" >&2; exit 2 ;;
esac
: "${STEPUP_DIST_REDIS_URL:?set STEPUP_DIST_REDIS_URL to the server of the builds}"
: "${SLURM_JOB_ID:?run this script with sbatch}"

# SLURM_JOB_CPUS_PER_NODE reads like "8(x2),4": two nodes with 8 CPUs, then one with 4.
total=0
least=0
IFS=, read -ra groups <<<"${SLURM_JOB_CPUS_PER_NODE:?run this script with sbatch}"
for group in "${groups[@]}"; do
    cpus="${group%%(*}"
    reps=1
    if [[ "$group" == *"(x"* ]]; then
        reps="${group#*(x}"
        reps="${reps%)}"
    fi
    total=$((total + cpus * reps))
    if ((least == 0 || cpus < least)); then least="$cpus"; fi
done
nodes="${SLURM_JOB_NUM_NODES:-${#groups[@]}}"
if [[ "$per" == cpu ]]; then
    # Each worker's step is confined to the one CPU of its task.
    layout=(--ntasks="$total" --cpus-per-task=1)
else
    # Each worker's step may use every CPU the job has on its node (the fewest, if they differ).
    layout=(--nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 --cpus-per-task="$least")
fi

export STEPUP_WORKER="${STEPUP_WORKER:-stepup-worker}"
# Node-local: each task leaves its worker's pid here, so that stop() can signal the worker
# alone. Every step of a job sees the same TMPDIR (Slurm's job_container/tmpfs included).
export STEPUP_WORKERS_RUNDIR="${TMPDIR:-/tmp}/stepup-workers.${SLURM_JOB_ID}"
echo "slurm-workers: job ${SLURM_JOB_ID}: ${layout[*]}, resources ${STEPUP_DIST_RESOURCES:-none}"

# Each worker is named NODE.JOBID.TASK, so `stepup-dist status` shows where it runs.
# exec: the pid written is the worker's own.
# shellcheck disable=SC2016  # expanded by the task's shell, on its node
srun --kill-on-bad-exit=0 "${layout[@]}" bash -c '
    mkdir -p "$STEPUP_WORKERS_RUNDIR"
    echo "$$" >"$STEPUP_WORKERS_RUNDIR/$SLURM_PROCID.pid"
    exec "$STEPUP_WORKER" --name "$(hostname -s).$SLURM_JOB_ID.$SLURM_PROCID"' &
srun_pid=$!

# shellcheck disable=SC2317  # called by the trap
stop() {
    echo "slurm-workers: stopping the workers after their current step"
    # One task on each node signals the workers recorded there, if the pid still is one
    # of them (its command line holds its name).
    # shellcheck disable=SC2016  # expanded on each node
    srun --overlap --nodes="$nodes" --ntasks="$nodes" --ntasks-per-node=1 bash -c '
        for file in "$STEPUP_WORKERS_RUNDIR"/*.pid; do
            [[ -e "$file" ]] || continue
            task="$(basename "$file" .pid)"
            pid="$(cat "$file")"
            if tr "\0" " " <"/proc/$pid/cmdline" 2>/dev/null |
                grep -qF -- ".$SLURM_JOB_ID.$task"; then
                kill -TERM "$pid" 2>/dev/null || true
            fi
            rm -f "$file"
        done' ||
        echo "slurm-workers: could not reach every node; its workers stop at the time limit"
}
trap stop TERM INT

# `wait` returns early when a trapped signal arrives; wait again until srun has ended.
while kill -0 "$srun_pid" 2>/dev/null; do
    wait "$srun_pid" || true
done
# bash keeps the status of a reaped child: srun's, not that of the interrupted `wait`.
wait "$srun_pid" && status=0 || status=$?
exit "$status"
