"""Reach the running build of a folder: `stepup-dist drain`, `join`, `shutdown`, and the
live part of `stepup-dist status`.

A build is found where its planner reports (`broker/reports.py`): on the server the
configuration names, or else on the build's embedded server, whose socket lives in the
folder's `.stepup/`. Its planner reads a `Control` message from its inbox within a second
(signed like every inbox message when a secret is configured).
"""

import contextlib
import fcntl
from dataclasses import dataclass, replace
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

__all__ = ("RunningBuild", "build_running", "find_build", "send", "wait_for_end")


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
        # The build's embedded server takes no password and no TLS (cli/build.py).
        config = replace(
            config,
            redis_url=server.url,
            redis_password=None,
            tls_ca=None,
            tls_cert=None,
            tls_key=None,
        )
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


def send(config: Config, root: Path, action: str) -> RunningBuild:
    """Post `action` (drain, join, shutdown) to the planner of the running build."""
    found = find_build(config, root)
    found.broker.post(found.report.build, Control(found.report.build, action))
    return found
