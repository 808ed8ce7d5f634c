"""What a worker does with a job: run a step's command, or hash files. No Redis here.

A step runs as `sh -c command` in its workdir, in a session of its own (so the whole process
tree can be stopped), with stdin closed and stdout/stderr captured in temporary files.

A worker given roots (`stepup-worker --root DIR`) refuses a step whose workdir, and a check
or an output whose folder, lies outside all of them once symlinks are resolved. Roots say
where work starts and which files are hashed; they are no sandbox for the command itself.
With path maps (`--path-map`, see pathmap.py) a job is first put in local terms, and roots
are checked on the local paths.
"""

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Protocol

from ..hashing import file_state
from ..messages import LEASE_LOST, NOT_STARTED, Checked, CheckJob, FileState, RunJob, StepDone
from ..pathmap import PathMap
from .cache import materialize_step, store_outputs
from .inputs import DEFAULT_FS_WAIT, wait_for_inputs

__all__ = (
    "LEASE_LOST",
    "MAX_CAPTURE",
    "Guard",
    "WorkerContext",
    "check_files",
    "fenced_out",
    "lease_lost",
    "outside_roots",
    "run_step",
    "step_environment",
)


MAX_CAPTURE = 1 << 20
"""Bytes of stdout and of stderr kept per step; the rest is cut with a note."""

SHIM_DIR = Path(__file__).resolve().parents[1] / "_shim"
"""Holds `stepup/core/api.py`, so plans written for StepUp import our API unchanged."""


@dataclass(frozen=True)
class WorkerContext:
    """Who runs the job, how its steps reach the planner, and where it may work."""

    host: str
    name: str
    step_vars: Mapping[str, str] = field(default_factory=dict)
    """`STEPUP_DIST_*` variables a step needs for its API calls (server, prefix, secret)."""
    roots: tuple[str, ...] = ()
    """Resolved directories this worker serves; empty: any."""
    resources: dict[str, int] = field(default_factory=dict)
    """What this host offers to steps that ask for resources."""
    fs_wait: float = DEFAULT_FS_WAIT
    """Seconds to wait for inputs that the shared filesystem does not show yet."""
    path_map: PathMap = field(default_factory=PathMap)
    """Where this host mounts the planner's paths; empty: at the same paths."""
    cache: str | None = None
    """The shared step cache's folder (`--cache`); None: hits are misses, nothing is stored."""


def outside_roots(path: str, roots: tuple[str, ...], *, follow: bool = True) -> str | None:
    """`path` resolved, when it lies outside every root; None when it lies inside one.

    With `follow=False` the last component is not resolved: a declared output may be a
    symlink, and hashing reads the link, not its target.
    """
    if not roots:
        return None
    if follow:
        real = os.path.realpath(path)
    else:
        head, tail = os.path.split(path.rstrip("/") or "/")
        real = os.path.join(os.path.realpath(head or "."), tail)
    for root in roots:
        if real == root or real.startswith(root.rstrip("/") + "/"):
            return None
    return real


def _refusal(what: str, place: str, ctx: WorkerContext) -> str:
    roots = ", ".join(ctx.roots)
    return f"refused: {what} {place} lies outside the roots {ctx.name} serves ({roots})"


def step_environment(job: RunJob, ctx: WorkerContext) -> dict[str, str]:
    """The worker's environment plus what StepUp gives a step and the declared variables."""
    env = dict(os.environ)
    # The interpreter running this worker comes first, so `#!/usr/bin/env python` in a plan
    # finds the stepup_dist API, and the shim answers `import stepup.core.api`.
    bindir = os.path.dirname(sys.executable)
    paths = env.get("PATH", "").split(os.pathsep)
    if paths[0] != bindir:
        env["PATH"] = os.pathsep.join([bindir, *paths])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SHIM_DIR), env.get("PYTHONPATH", "")) if p)
    workdir = job.workdir
    folder = os.path.normpath(os.path.join(job.root, workdir))
    env.update(
        # The shell's `pwd` shows the folder as the job names it, not the one symlinks lead to.
        PWD=folder,
        STEPUP_ROOT=job.root,
        # As StepUp gives them: `sub` and `..` (`.` and `.` in the root folder).
        HERE=os.path.relpath(folder, job.root),
        ROOT=os.path.relpath(job.root, folder),
        STEPUP_STEP_KEY=job.step,
        STEPUP_DIST_BUILD=job.build,
    )
    env.update(ctx.step_vars)
    for name, value in job.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _read_capture(fh: IO[bytes]) -> str:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(0)
    data = fh.read(MAX_CAPTURE)
    text = data.decode("utf-8", "replace")
    if size > MAX_CAPTURE:
        text += f"\n[stepup-dist: {size - MAX_CAPTURE} more bytes not shown]\n"
    return text


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Guard(Protocol):
    """Watches over a running step on behalf of its pool leases and the worker's health."""

    interval: float
    """Seconds between calls of `check`."""

    def started(self, pgid: int) -> bool:
        """The step's process group exists; False: its lease is already lost."""

    def check(self) -> bool:
        """Still allowed to run? False: the lease is lost, kill the step."""

    def finished(self, pgid: int) -> None:
        """The step's processes are gone."""

    def settle(self) -> bool:
        """The step ended: may its result count? False: the lease lapsed meanwhile."""


class _NoGuard:
    interval = 3600.0

    def started(self, pgid: int) -> bool:
        return True

    def check(self) -> bool:
        return True

    def finished(self, pgid: int) -> None:
        pass

    def settle(self) -> bool:
        return True


def run_step(job: RunJob, ctx: WorkerContext, guard: Guard | None = None) -> StepDone:
    """Run the step under `guard`; kill it as soon as the guard says it may not go on."""
    local = ctx.path_map.localize_run(job, f"{ctx.name} on {ctx.host}")
    if isinstance(local, str):
        return _refused(job, ctx, local)
    local_job, back = local
    if local_job.restore:
        # A cache hit: its outputs are left, nothing runs (worker/cache.py).
        outside = lambda path: outside_roots(path, ctx.roots, follow=False)  # noqa: E731
        done = materialize_step(local_job, ctx.host, ctx.name, ctx.cache, outside)
        return PathMap.restore_done(done, back)
    return PathMap.restore_done(_run_local(local_job, ctx, guard or _NoGuard()), back)


def _refused(job: RunJob, ctx: WorkerContext, error: str) -> StepDone:
    return StepDone(
        job.build, job.step, job.attempt, -1, 0.0, ctx.host, ctx.name, "", "", {}, error
    )


def _wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait until `proc` exits (True) or `timeout` passes (False).

    Popen.wait(timeout) polls with sleeps of up to 50 ms, so a step was noticed to have
    ended 25 ms late on average; a pidfd wakes the worker when it ends.
    """
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or the process is reaped
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    if not ready:
        return False
    proc.wait()
    return True


def _run_local(job: RunJob, ctx: WorkerContext, guard: Guard) -> StepDone:
    start = time.monotonic()
    cwd = os.path.join(job.root, job.workdir)

    def done(returncode: int, stdout: str = "", stderr: str = "", error: str = "", states=None):
        return StepDone(
            build=job.build,
            step=job.step,
            attempt=job.attempt,
            returncode=returncode,
            duration=time.monotonic() - start,
            host=ctx.host,
            worker=ctx.name,
            stdout=stdout,
            stderr=stderr,
            out_states=states or {},
            error=error,
        )

    outside = outside_roots(cwd, ctx.roots)
    if outside is not None:
        return done(-1, error=_refusal("working directory", outside, ctx))
    stale = wait_for_inputs(job.root, job.inputs, ctx.fs_wait, guard.check)
    if stale:
        return done(
            -1,
            error=f"input {stale[0]} is missing or differs from what was made, on {ctx.host} "
            f"after waiting {ctx.fs_wait:g} s"
            + (f" ({len(stale) - 1} more inputs too)" if len(stale) > 1 else ""),
        )
    if not os.path.isdir(cwd):
        return done(-1, error=f"working directory {job.workdir} does not exist on {ctx.host}")
    before = _input_stats(job)
    with (
        tempfile.TemporaryFile() as out_fh,
        tempfile.TemporaryFile() as err_fh,
    ):
        proc = subprocess.Popen(
            ["/bin/sh", "-c", job.command],
            cwd=cwd,
            env=step_environment(job, ctx),
            stdin=subprocess.DEVNULL,
            stdout=out_fh,
            stderr=err_fh,
            start_new_session=True,
        )
        try:
            lost = not guard.started(proc.pid)
            while not lost:
                if _wait_exit(proc, guard.interval):
                    break
                lost = not guard.check()
            if lost:
                _kill_group(proc)
            # A step that ended after its lease lapsed may have shared its seat: not a success.
            lost = lost or not guard.settle()
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            guard.finished(proc.pid)
        returncode = proc.returncode
        stdout = _read_capture(out_fh)
        stderr = _read_capture(err_fh)
    if lost:
        return done(returncode, stdout, stderr, LEASE_LOST)
    if returncode != 0:
        return done(returncode, stdout, stderr)
    changed = _changed_inputs(job, before)
    if changed:
        # As StepUp 4: a step must not change its inputs (its record would lie).
        return done(returncode, stdout, stderr, changed)
    states: dict[str, FileState] = {}
    missing = []
    for path in job.out:
        outside = outside_roots(os.path.join(job.root, path), ctx.roots, follow=False)
        if outside is not None:
            return done(returncode, stdout, stderr, _refusal("output", outside, ctx))
        state = file_state(os.path.join(job.root, path))
        if state is None:
            missing.append(path)
        else:
            states[path] = state
    if missing:
        error = "did not create declared output" + ("s " if len(missing) > 1 else " ")
        return done(returncode, stdout, stderr, error + ", ".join(missing), states)
    result = done(returncode, stdout, stderr, states=states)
    blobs = store_outputs(job, ctx.cache, states) if job.store else {}
    return replace(result, blobs=blobs) if blobs else result


def _input_stats(job: RunJob) -> dict[str, tuple[int, int, int] | None]:
    """The stat of each input file (not folders, which change as outputs are written)."""
    stats: dict[str, tuple[int, int, int] | None] = {}
    for path in job.inputs:
        if path.endswith("/"):
            continue
        try:
            st = os.stat(os.path.join(job.root, path))
        except OSError:
            stats[path] = None
            continue
        stats[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return stats


def _changed_inputs(job: RunJob, before: dict[str, tuple[int, int, int] | None]) -> str:
    """Why the step failed if an input changed or went while it ran, else ''."""
    after = _input_stats(job)
    for path, then in before.items():
        now = after.get(path)
        if then is not None and now is None:
            return f"input {path} was deleted while the step ran"
        if then is not None and now != then:
            return f"input {path} changed while the step ran"
    return ""


def fenced_out(result: StepDone) -> StepDone:
    """`result` of a step whose lease lapsed before its report could be vouched for."""
    return replace(result, error=LEASE_LOST, out_states={})


def lease_lost(job: RunJob, ctx: WorkerContext) -> StepDone:
    """The outcome of a step whose pool slots were lost before it could start."""
    return _refused(job, ctx, NOT_STARTED)


def check_files(job: CheckJob, ctx: WorkerContext) -> Checked:
    """Hash the requested paths, reusing known digests for unchanged files."""
    local = ctx.path_map.localize_check(job, f"{ctx.name} on {ctx.host}")
    if isinstance(local, str):
        return Checked(job.build, job.request, ctx.host, states=[], error=local)
    job = local
    for path in job.paths:
        outside = outside_roots(os.path.join(job.root, path), ctx.roots, follow=False)
        if outside is not None:
            error = _refusal("path", outside, ctx)
            return Checked(job.build, job.request, ctx.host, states=[], error=error)
    states = [
        file_state(os.path.join(job.root, path), known)
        for path, known in zip(job.paths, job.known, strict=True)
    ]
    return Checked(build=job.build, request=job.request, host=ctx.host, states=states)
