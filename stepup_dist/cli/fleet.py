"""The workers that `stepup-dist workers` started from a folder: local processes, Slurm jobs.

Each one is recorded in `.stepup/workers.json`, so that `workers list` and `workers stop`
find them again from the same folder, and only them::

    {"version": 1,
     "workers": [{"kind": "slurm", "id": "4242", "since": 1764140000.0,
                  "server": "redis://stepup:***@head:6379", "prefix": "stepup",
                  "token": "", "stopping": false}, ...]}

`kind` is `slurm` (`id` is the job id) or `local` (`id` is the pid; `token` is the process's
start time from /proc, so that a pid the kernel handed to another process is not taken for a
worker). The file is read and written under a lock, and written whole to a temporary file
that is renamed over the old one. Workers that have ended are shown by one `workers list`,
then forgotten.

Stopping never cuts a step short: a local worker gets SIGTERM, a running Slurm job gets
SIGTERM to its batch script, which relays it to the workers alone; a pending job is
cancelled. A worker already told to stop is not told again: a second SIGTERM makes RQ
abandon the running step.
"""

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..broker.connection import connect_config
from ..broker.keys import Keys
from ..broker.queue import queue_status
from ..config import Config, redact, to_environ
from ..errors import ConfigError, UserError
from ..planner.store import STATE_DIR
from . import slurm

__all__ = ("Entry", "WorkerState", "default_roots", "list_text", "start_local", "stop", "submit")

_VERSION = 1
_REGISTER_WAIT = 20.0
"""Seconds `workers --local` waits for its workers to show up on the server."""


@dataclass(frozen=True)
class Entry:
    """One worker (local) or one job of workers (Slurm), as recorded."""

    kind: str
    """`local` or `slurm`."""
    id: str
    """The pid, or the Slurm job id."""
    since: float
    """When it was started or submitted (seconds since the epoch)."""
    server: str
    """The server it serves, password hidden."""
    prefix: str
    """The key prefix it serves."""
    token: str = ""
    """A local worker's start time (clock ticks since boot), to tell a reused pid apart."""
    stopping: bool = False
    """Told to stop after its running step."""


@dataclass(frozen=True)
class WorkerState:
    """An entry and what it is doing now."""

    entry: Entry
    state: str
    """RUNNING, ENDED, or for a Slurm job any state `squeue` shows (PENDING, ...)."""
    where: str
    """The host or node, or why a Slurm job is pending."""


def _folder(directory: Path) -> Path:
    folder = directory / STATE_DIR
    folder.mkdir(exist_ok=True)
    return folder


def _load(path: Path) -> list[Entry]:
    try:
        data = json.loads(path.read_text())
        return [Entry(**item) for item in data["workers"]]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is damaged ({exc}); delete it to forget its workers") from None


def _save(path: Path, entries: Sequence[Entry]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    data = {"version": _VERSION, "workers": [asdict(e) for e in entries]}
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _recorded(directory: Path) -> Iterator[list[Entry]]:
    """The entries, to read and change in place; saved when the block ends, even by an
    error, so that what was started before a failure is not lost."""
    folder = _folder(directory)
    with open(folder / "workers.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = folder / "workers.json"
        entries = _load(path)
        before = list(entries)
        try:
            yield entries
        finally:
            if entries != before:
                _save(path, entries)


def default_roots(directory: Path) -> tuple[str, ...]:
    """What workers serve when neither --root nor STEPUP_DIST_ROOTS says: this folder."""
    return () if os.environ.get("STEPUP_DIST_ROOTS") else (str(directory.resolve()),)


def _need_server(config: Config, how: str) -> str:
    return config.server(f"workers {how}")


def _environ(config: Config, resources: str | None) -> dict[str, str]:
    """The workers' environment: ours, with the configuration's settings winning. The URL,
    which may hold a password, goes here rather than on a command line that `ps` shows."""
    env = {**os.environ, **to_environ(config)}
    if resources:
        from ..config import parse_resources

        parse_resources(resources)  # a typo is the user's one-line error now, not the job's
        env["STEPUP_DIST_RESOURCES"] = resources
    return env


def _token(pid: int) -> str | None:
    """The process's start time if it lives (and is no zombie), else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        try:  # no /proc here: liveness only
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ""
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields 3... follow it.
    fields = text.rsplit(")", 1)[1].split()
    return None if fields[0] in "ZX" else fields[19]


def _local_alive(entry: Entry) -> bool:
    token = _token(int(entry.id))
    return token is not None and token == entry.token


def _last_line(path: Path) -> str:
    lines = [x for x in path.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1].strip() if lines else "no output"


def start_local(config: Config, directory: Path, count: int, resources: str | None) -> str:
    """Start `count` detached workers; return once they serve (or one has failed)."""
    url = _need_server(config, "--local")
    client = connect_config(config)  # an unreachable server is one line now
    env = _environ(config, resources)
    log_path = _folder(directory) / "workers-local.log"
    procs = []
    with _recorded(directory) as entries, open(log_path, "ab") as log:
        for _ in range(count):
            proc = subprocess.Popen(
                [sys.executable, "-m", "stepup_dist.worker"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=directory,
                start_new_session=True,  # Ctrl-C in this terminal must not reach them
            )
            procs.append(proc)
            token = _token(proc.pid) or ""
            entry = Entry("local", str(proc.pid), time.time(), redact(url), config.prefix, token)
            entries.append(entry)
    # A worker's default name is HOST.PID.
    waiting = {f"{socket.gethostname()}.{proc.pid}" for proc in procs}
    deadline = time.monotonic() + _REGISTER_WAIT
    while waiting and time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise UserError(
                    f"worker {proc.pid} exited with code {proc.returncode}: {_last_line(log_path)}"
                )
        waiting -= {w["name"] for w in queue_status(client, Keys.of(config))["workers"]}
        time.sleep(0.1)
    pids = " ".join(str(p.pid) for p in procs)
    text = f"started {count} local worker{'s' * (count != 1)} (pids {pids}), log {log_path}"
    if waiting:
        text += f"; {len(waiting)} not serving yet after {_REGISTER_WAIT:.0f} s"
    return text


def submit(config: Config, directory: Path, count: int, options: slurm.SubmitOptions) -> str:
    """Submit `count` Slurm jobs of workers and record them."""
    url = _need_server(config, "--slurm")
    if url.startswith("unix://"):
        raise ConfigError(
            "workers on Slurm's nodes cannot reach a unix:// server; give a redis:// "
            "or rediss:// URL that the nodes can reach"
        )
    env = _environ(config, options.resources)
    # The workers run the stepup-worker of this installation, which must be on a path
    # every node mounts; STEPUP_WORKER in the environment wins.
    here = Path(sys.executable).parent / "stepup-worker"
    if "STEPUP_WORKER" not in env and here.exists():
        env["STEPUP_WORKER"] = str(here)
    output = _folder(directory).resolve() / "slurm-workers-%j.out"
    jobs: list[str] = []
    with _recorded(directory) as entries:
        for i in range(count):
            try:
                job = slurm.submit(options, output, env)
            except UserError as exc:
                if not jobs:
                    raise
                raise UserError(f"{exc} (after {i} of {count} jobs: {' '.join(jobs)})") from None
            jobs.append(job)
            entries.append(Entry("slurm", job, time.time(), redact(url), config.prefix))
    plural = "s" * (count != 1)
    return f"submitted {count} Slurm job{plural} of workers: {' '.join(jobs)}; output {output}"


def _states(entries: Sequence[Entry]) -> list[WorkerState]:
    jobs = slurm.job_states([e.id for e in entries if e.kind == "slurm"])
    host = socket.gethostname()
    result = []
    for entry in entries:
        if entry.kind == "slurm":
            job = jobs[entry.id]
            result.append(WorkerState(entry, job.state, job.where))
        else:
            alive = _local_alive(entry)
            result.append(WorkerState(entry, "RUNNING" if alive else slurm.ENDED, host))
    return result


def _ended(state: WorkerState) -> bool:
    return state.state in slurm.FINISHED


def list_text(directory: Path, as_json: bool = False) -> str:
    """The recorded workers and their states; those that ended are forgotten hereafter."""
    if not (directory / STATE_DIR / "workers.json").exists():
        states = []
    else:
        with _recorded(directory) as entries:
            states = _states(entries)
            entries[:] = [s.entry for s in states if not _ended(s)]
    if as_json:
        rows = [
            {**asdict(s.entry), "state": s.state, "where": s.where, "ended": _ended(s)}
            for s in states
        ]
        return json.dumps(rows, indent=2)
    if not states:
        return f"no workers started from {directory.resolve()}"
    now = time.time()
    lines = [f"{'KIND':<6} {'ID':>10} {'STATE':<20} {'AGE':>8}  WHERE"]
    for s in states:
        state = s.state + (" (stopping)" if s.entry.stopping and not _ended(s) else "")
        age = _age(now - s.entry.since)
        lines.append(f"{s.entry.kind:<6} {s.entry.id:>10} {state:<20} {age:>8}  {s.where}")
    return "\n".join(lines)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def stop(directory: Path) -> str:
    """Tell every recorded worker to stop after its running step; say what was done."""
    if not (directory / STATE_DIR / "workers.json").exists():
        return f"no workers started from {directory.resolve()}"
    with _recorded(directory) as entries:
        states = [s for s in _states(entries) if not _ended(s)]
        jobs = [s for s in states if s.entry.kind == "slurm"]
        pending = [s.entry for s in jobs if s.state in slurm.PENDING]
        # A COMPLETING job is ending already, and scancel would complain about it.
        running = [
            s.entry
            for s in jobs
            if s.state not in slurm.PENDING and s.state != "COMPLETING" and not s.entry.stopping
        ]
        local = [s.entry for s in states if s.entry.kind == "local" and not s.entry.stopping]
        slurm.cancel([e.id for e in pending], drain=False)
        slurm.cancel([e.id for e in running], drain=True)
        for entry in local:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.id), signal.SIGTERM)
        told = running + local
        entries[:] = [
            replace(s.entry, stopping=True) if s.entry in told else s.entry
            for s in states
            if s.entry not in pending
        ]
    already = [s.entry for s in states if s.entry.stopping]
    lines = []
    for what, group in (
        ("cancelled pending Slurm jobs", pending),
        ("Slurm jobs whose workers stop after their running step", running),
        ("local workers that stop after their running step", local),
        ("already stopping", already),
    ):
        if group:
            lines.append(f"{what}: {' '.join(e.id for e in group)}")
    return "\n".join(lines) or f"no workers running from {directory.resolve()}"
