"""Slurm's side of `stepup-dist workers`: `sbatch`, `squeue` and `scancel`, run as programs.

Each job runs the compute-node kit's batch script (`slurm-workers.sh`, shipped in this
package; `worker/slurm-workers.sh` links to it) on one node. A missing command, a command
that fails or prints what we cannot read: each becomes a one-line `UserError` that quotes
the command's own error.
"""

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import UserError

__all__ = (
    "ENDED",
    "FINISHED",
    "JOB_NAME",
    "PENDING",
    "JobState",
    "SubmitOptions",
    "cancel",
    "job_states",
    "submit",
)

JOB_NAME = "stepup-workers"
"""The name of every job `stepup-dist workers --slurm` submits, as `squeue` shows it."""

ENDED = "ENDED"
"""The state of a job that `squeue` no longer knows."""

FINISHED = frozenset({
    ENDED, "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
    "OUT_OF_MEMORY", "REVOKED", "TIMEOUT",
})  # fmt: skip
"""States of a job whose workers are gone. (A PREEMPTED job may come back as PENDING.)"""

PENDING = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
"""States in which the batch script has not started: cancelling loses no step."""

_TIMEOUT = 60.0
"""Seconds a Slurm command may take; slurmctld answers in well under one."""


@dataclass(frozen=True)
class SubmitOptions:
    """How each worker job is shaped; every job gets one node."""

    cpus: int = 1
    """CPUs the job asks for on its node."""

    per_node: bool = False
    """One worker using every CPU of the job, instead of one worker per CPU."""

    partition: str | None = None
    """`sbatch --partition`; None: the cluster's default."""

    time: str | None = None
    """`sbatch --time`, in any format Slurm reads; None: the script's 4 hours."""

    resources: str | None = None
    """What each node offers to steps with `resources=` (`--resources` of the script)."""

    extra: tuple[str, ...] = ()
    """More `sbatch` options, as given (e.g. `--gres=gpu:2`, `--account=lab`)."""


@dataclass(frozen=True)
class JobState:
    """A job as `squeue` shows it."""

    state: str
    """PENDING, RUNNING, COMPLETING, ..., or `ENDED` when Slurm has forgotten it."""

    where: str
    """The node it runs on, or why it is pending, e.g. `(Priority)`."""


def _run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    path = (env or os.environ).get("PATH")
    exe = shutil.which(argv[0], path=path)
    if exe is None:
        raise UserError(f"{argv[0]} is not on PATH: is this a Slurm login node?")
    try:
        return subprocess.run(
            [exe, *argv[1:]],
            capture_output=True,
            text=True,
            env=None if env is None else dict(env),
            timeout=_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UserError(f"{argv[0]} did not answer within {_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise UserError(f"cannot run {exe}: {exc.strerror}") from None


def _complaint(proc: subprocess.CompletedProcess) -> str:
    """The line of a failed command's output that says what went wrong."""
    lines = [line.strip() for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    if not lines:
        return f"exit code {proc.returncode}"
    line = next((x for x in reversed(lines) if "error" in x.lower()), lines[-1])
    for noise in (f"{proc.args[0]}: ", os.path.basename(proc.args[0]) + ": ", "error: "):
        line = line.removeprefix(noise)
    return line


def submit(options: SubmitOptions, output: Path, env: Mapping[str, str]) -> str:
    """Submit one worker job; its id. `env` reaches the workers (`--export=ALL`)."""
    if options.per_node:
        shape = ["--ntasks=1", f"--cpus-per-task={options.cpus}"]
    else:
        shape = [f"--ntasks={options.cpus}"]
    argv = [
        "sbatch", "--parsable", f"--job-name={JOB_NAME}", "--export=ALL", "--nodes=1",
        *shape, f"--output={output}",
    ]  # fmt: skip
    if options.partition:
        argv.append(f"--partition={options.partition}")
    if options.time:
        argv.append(f"--time={options.time}")
    argv.extend(options.extra)
    script = resources.files(__package__) / "slurm-workers.sh"
    with resources.as_file(script) as path:
        argv.append(str(path))
        argv.append("--per-node" if options.per_node else "--per-cpu")
        if options.resources:
            argv.append(f"--resources={options.resources}")
        proc = _run(argv, env)
    if proc.returncode != 0:
        raise UserError(f"sbatch failed: {_complaint(proc)}")
    # --parsable prints "JOBID" or "JOBID;CLUSTER", after any warnings.
    lines = proc.stdout.strip().splitlines()
    job_id = lines[-1].split(";")[0].strip() if lines else ""
    if not job_id.isdigit():
        raise UserError(f"sbatch printed {proc.stdout.strip()[:80]!r}, not a job id")
    return job_id


def job_states(job_ids: Sequence[str]) -> dict[str, JobState]:
    """The state of each job; `ENDED` for those Slurm no longer knows."""
    if not job_ids:
        return {}
    argv = ["squeue", "--noheader", "--states=all", "--format=%i|%T|%R"]
    proc = _run([*argv, f"--jobs={','.join(job_ids)}"])
    found: dict[str, JobState] = {}
    if proc.returncode != 0:
        # squeue refuses a list in which it knows no job at all.
        if "invalid job id" not in (proc.stderr + proc.stdout).lower():
            raise UserError(f"squeue failed: {_complaint(proc)}")
    else:
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|", 2)
            if len(parts) == 3 and parts[0] in job_ids:
                found[parts[0]] = JobState(parts[1].strip(), parts[2].strip())
    return {job: found.get(job, JobState(ENDED, "")) for job in job_ids}


def cancel(job_ids: Sequence[str], *, drain: bool) -> None:
    """Cancel jobs; with `drain`, SIGTERM to their batch script, which relays it to the
    workers alone, so that each finishes its running step (see `slurm-workers.sh`)."""
    if not job_ids:
        return
    argv = ["scancel", "--batch", "--signal=TERM"] if drain else ["scancel"]
    proc = _run([*argv, *job_ids])
    if proc.returncode != 0:
        raise UserError(f"scancel failed: {_complaint(proc)}")
