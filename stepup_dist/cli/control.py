"""Reach the running build of a folder: `stepup-dist drain`, `join`, `shutdown`, `wait`,
`rebuild`, and the live part of `stepup-dist status`.

A build is found where its planner reports (`broker/reports.py`): on the server the
configuration names, or else on the build's embedded server, whose socket lives in the
folder's `.stepup/`. Its planner reads a `Control` message from its inbox within a second
(signed like every inbox message when a secret is configured); a watching build reads it
within `watching.CONTROL_POLL` between runs. `wait` and `rebuild` follow a watching build
through its phase file (`phase.py`) and the folder's lock.
"""

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..broker.broker import RedisBroker
from ..broker.connection import connect_config
from ..broker.keys import Keys
from ..broker.reports import read_reports
from ..broker.server import EmbeddedServer
from ..config import Config, redact
from ..errors import BrokerUnavailable, UserError
from ..messages import Control
from ..planner.store import STATE_DIR
from ..status import BuildReport
from . import phase

Clock = Callable[[], float]

POLL = 0.05
"""Seconds between two looks at a build's phase while waiting for it."""
START_WAIT = 10.0
"""Seconds `wait` and `rebuild` wait for a build that has not started yet (as StepUp's)."""

__all__ = (
    "RunningBuild",
    "build_running",
    "find_build",
    "rebuild",
    "send",
    "wait_for_end",
    "wait_for_run",
)


@dataclass(frozen=True)
class RunningBuild:
    broker: RedisBroker
    report: BuildReport
    """The build's last report (its id, counts, ETA)."""
    where: str
    """The server, for messages: `the embedded server` or its URL without password."""


def build_running(root: Path) -> bool:
    """True while a `stepup-dist build` holds the folder's lock (on this machine)."""
    lock = root / STATE_DIR / "lock"
    try:
        fh = open(lock)  # noqa: SIM115 (closed below, whatever happens)
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def wait_for_end(root: Path) -> None:
    """Block until the build of the folder (on this machine) has ended."""
    with contextlib.suppress(FileNotFoundError), open(root / STATE_DIR / "lock") as fh:
        fcntl.flock(fh, fcntl.LOCK_SH)
        fcntl.flock(fh, fcntl.LOCK_UN)


def find_build(config: Config, root: Path) -> RunningBuild:
    """The running build of `root` (resolved), or a one-line UserError saying why none."""
    root = root.resolve()
    folder = str(root)
    if config.redis_url is None:
        if not build_running(root):
            raise UserError(f"no build is running in {folder}")
        server = EmbeddedServer(root / STATE_DIR)
        config = config.embedded(server.url)
        where = "its embedded server"
    else:
        where = redact(config.redis_url)
    client = connect_config(config)
    keys = Keys.of(config)
    try:
        reports = [r for r in read_reports(client, keys) if r.folder == folder]
    except BrokerUnavailable as exc:
        raise UserError(f"cannot reach the build of {folder}: {exc}") from None
    if not reports:
        raise UserError(f"no running build of {folder} reports to {where}")
    report = max(reports, key=lambda r: r.started)
    return RunningBuild(RedisBroker(client, keys, config.keyring), report, where)


def send(config: Config, root: Path, action: str, clock: Clock = time.monotonic) -> RunningBuild:
    """Post `action` (drain, join, shutdown, rebuild) to the planner of the running build.
    A build that holds its folder's lock but has not reported yet (it started a moment ago,
    in the background) is waited for, up to `START_WAIT`."""
    deadline = clock() + START_WAIT
    while True:
        try:
            found = find_build(config, root)
            break
        except UserError:
            if clock() >= deadline or not build_running(root.resolve()):
                raise
            time.sleep(POLL)
    found.broker.post(found.report.build, Control(found.report.build, action))
    return found


def _await_start(root: Path, clock: Clock) -> None:
    """Wait for the folder's build to take its lock: a script starts it in the background
    just before it waits (`sb -w &; stepup wait`)."""
    deadline = clock() + START_WAIT
    while not build_running(root):
        if clock() >= deadline:
            raise UserError(f"no build is running in {root}")
        time.sleep(POLL)


def wait_for_run(
    root: Path,
    *,
    update: Path | None = None,
    delete: Path | None = None,
    clock: Clock = time.monotonic,
) -> str:
    """Block until the folder's build is between runs (a watching build) or has ended (one
    that does not watch). With `update` (`delete`), also until that path exists (is gone):
    StepUp's `wait -u` and `-d`. The watcher need not have reported the change: `rebuild`
    and the key `r` look at every path the build knows before they decide what to run."""
    root = root.resolve()
    _await_start(root, clock)
    while build_running(root):
        now = phase.read(root)
        if (
            now is not None
            and now.phase == "watching"
            and (update is None or os.path.lexists(update))
            and (delete is None or not os.path.lexists(delete))
        ):
            return f"the build of {root} is watching (run {now.runs} done, exit code {now.code})"
        time.sleep(POLL)
    return f"the build of {root} has ended"


def rebuild(config: Config, root: Path, clock: Clock = time.monotonic) -> str:
    """Ask the folder's watching build to run what changes made outdated (the key `r`);
    return once it has taken the request up (a run started, or nothing to run)."""
    root = root.resolve()
    _await_start(root, clock)
    deadline = clock() + START_WAIT
    while (before := phase.read(root)) is None:
        if not build_running(root):
            raise UserError(f"no build is running in {root}")
        if clock() >= deadline:
            raise UserError(
                f"the build of {root} does not watch: rebuild is for build --watch (-w)"
            )
        time.sleep(POLL)
    send(config, root, "rebuild")
    while build_running(root):
        now = phase.read(root)
        if now is None or now.build != before.build or now.rebuilds > before.rebuilds:
            return f"the build of {root} took up the rebuild"
        time.sleep(POLL)
    print(f"stepup-dist: warning: the build of {root} ended before it rebuilt", file=sys.stderr)
    return f"the build of {root} has ended"
