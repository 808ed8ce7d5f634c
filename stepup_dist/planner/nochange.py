"""The no-change check: a build whose every step is skipped, decided without a server.

A build with an embedded server and local workers runs on a host that sees the project.
Before it starts the server and the workers, the planner plays the build once against a
`StatBroker`: a broker of this process that answers each hash check by `lstat` alone, from
the states `.stepup/graph.mpk` recorded. Everything else is the planner's own code, as in a
real build: plan.py is checked as a step and skipped from its record, its recorded calls
are replayed, every step is matched with its record, its outputs checked and its digest
compared.

The check stops (`WorkersNeeded`) as soon as a worker would be needed: a step must run, a
path's stat differs from its record (a hash must be computed: reading contents is a
worker's job), a path lies outside the project (a worker's `--root` decides on it), or the
planner would wait for anything. Nothing is written then, and nothing is printed: the
build starts its server and workers and runs from the start, as it did before this check.
When every step was skipped, the held lines are printed and the records saved, as the
build would have.

A record written by another host's worker holds that host's stat of each file: when it is
not this host's, the check stops and a worker hashes the file, as before; the skip then
records this host's stat, so the next build needs no worker.

Only `build` with the embedded server plays this check (`cli/build.py`): with `--redis` the
server and the workers are the cluster's, already up, and watch mode keeps its own.
"""

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import WireError
from ..hashing import NeedsReading, file_state
from ..messages import Checked, CheckJob, FileState, Message, Reply, StepDone
from .core import BuildOptions, Outcome, Reporter
from .graph import Step
from .loop import Planner
from .routing import Group
from .store import Record, Store

__all__ = ("HeldLines", "HeldStore", "StatBroker", "WorkersNeeded", "no_change")


class WorkersNeeded(Exception):
    """The build needs its server and workers; the message says why."""


@dataclass(frozen=True)
class _Ref:
    """A pool as the check names it (no slot is ever taken)."""

    id: str
    size: int
    units: int = 1


class StatBroker:
    """The planner's `Broker`, in this process: hash checks are answered by `lstat` against
    the recorded states; anything that needs a worker or a server raises `WorkersNeeded`."""

    def __init__(self, host: str | None = None):
        self.host = host or socket.gethostname()
        """Named in the answers, as a local worker names its host."""
        self.inbox: list[Message | WireError] = []
        """Answers to the checks submitted, for the next `receive`."""
        self.checked = 0
        """Paths looked at."""

    # Planner side

    def server_id(self) -> str:
        return "no-change-check"

    def keep_alive(self, build: str, lease: float) -> None:
        pass

    def report(self, report: object, ttl: float) -> None:
        pass

    def live_runs(self, build: str, tokens: list[str]) -> set[str]:
        return set(tokens)

    def local_queue(self, build: str) -> str:
        return f"local:{build}"

    def host_queue(self, queue: str, host: str) -> str:
        return f"{queue}@{host}"

    def groups(self, local: str | None = None) -> Sequence[Group]:
        return []

    def submit(self, jobs: list[tuple[Message, str, bool]], queue: str) -> list[str]:
        ids = []
        for message, _, _ in jobs:
            if not isinstance(message, CheckJob):
                raise WorkersNeeded(f"a step must run ({getattr(message, 'step', '?')})")
            self.inbox.append(self._check(message))
            ids.append(f"check-{message.request}")
        return ids

    def _check(self, job: CheckJob) -> Checked:
        states: list[FileState | None] = []
        for path, known in zip(job.paths, job.known, strict=True):
            if path.startswith(("/", "../")) or path == "..":
                raise WorkersNeeded(f"{path} lies outside the project")
            try:
                states.append(file_state(os.path.join(job.root, path), known, read=False))
            except NeedsReading:
                raise WorkersNeeded(f"{path} must be hashed") from None
            except OSError as exc:
                raise WorkersNeeded(f"{path}: {exc.strerror}") from None
        self.checked += len(states)
        return Checked(build=job.build, request=job.request, host=self.host, states=states)

    def withdraw_jobs(self, queue: str, job_ids: list[str]) -> list[str]:
        return []

    def job_states(self, job_ids: list[str]) -> list[str | None]:
        return ["finished"] * len(job_ids)

    def forget_build(self, build: str) -> None:
        # Only adopting a dead planner's steps forgets a build at its start: that needs the
        # server, which holds the dead build's inbox.
        raise WorkersNeeded(f"the steps of build {build} (gone) are to be adopted")

    def receive(self, build: str, timeout: float) -> list[Message | WireError]:
        messages, self.inbox = self.inbox, []
        if not messages and timeout > 0:
            # The planner would wait: for something only workers or a server can give.
            raise WorkersNeeded("the planner waits for workers")
        return messages

    def reply(self, reply_to: str, reply: Reply) -> None:
        raise WorkersNeeded("an API call is answered (a plan runs)")

    def wake(self, build: str) -> None:
        pass

    # Pools: named, never taken (a step that takes a slot runs)

    def plan_pool(self, build: str, name: str, size: int, units: int = 1) -> _Ref:
        return _Ref(f"plan:{build}:{name}", size, units)

    def cluster_pool(self, name: str, units: int = 1) -> _Ref | None:
        # The embedded server starts empty: it has no cluster pools.
        return None

    def host_pool(self, host: str, resource: str, capacity: int, units: int) -> _Ref:
        return _Ref(f"host:{host}:{resource}", capacity, units)

    def run_pool(self, build: str) -> _Ref:
        return _Ref(f"run:{build}", 0)

    def only_run_leases(self, sizes: list[int]) -> bool:
        return False

    def hosts(self) -> dict[str, dict[str, int]]:
        return {}

    def acquire(
        self, pools: list, token: str, lease: float, *, build: str, step: str = ""
    ) -> tuple[bool, str]:
        raise WorkersNeeded(f"a step must run ({step})")

    def acquire_many(
        self, requests: list[tuple[list, str]], lease: float, *, build: str
    ) -> list[tuple[bool, str]]:
        raise WorkersNeeded("steps must run")

    def renew(self, pool_ids: list[str], token: str, lease: float) -> bool:
        return True

    def release(self, pools: list, token: str) -> None:
        pass

    def withdraw(self, pools: list, build: str) -> None:
        pass


@dataclass
class HeldLines:
    """A `Reporter` that keeps the lines of the check, to print once it succeeded."""

    held: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    """(method, arguments) of each call, in order."""

    def line(self, status: str, text: str, host: str = "") -> None:
        self.held.append(("line", (status, text, host)))

    def done(self, step: Step, result: StepDone, status: str) -> None:
        self.held.append(("done", (step, result, status)))

    def replay(self, reporter: Reporter) -> None:
        for method, args in self.held:
            getattr(reporter, method)(*args)


class HeldStore(Store):
    """The build's `Store`, whose save waits until the check has succeeded (a check that
    stops leaves `.stepup/` as it found it)."""

    def __init__(self, root: Path):
        super().__init__(root)
        self._held: tuple[dict[str, Record], dict[str, FileState]] | None = None

    def save(self, records: dict[str, Record], files: dict[str, FileState]) -> None:
        self._held = (records, files)

    def commit(self) -> None:
        """Write what the check's last save held."""
        if self._held is not None:
            super().save(*self._held)
            self._held = None

    def done(self, key: str, record: Record, files: dict[str, FileState]) -> None:
        raise WorkersNeeded(f"step {key} reported (it ran)")

    def forget(self, key: str) -> None:
        raise WorkersNeeded(f"step {key} failed")


def no_change(
    root: Path,
    *,
    build: str,
    local_workers: int,
    lease: float,
    give_up: float | None = None,
    limits: Mapping[str, int] | None = None,
    options: BuildOptions | None = None,
) -> tuple[Outcome, HeldLines] | str:
    """Play the build against a `StatBroker`. When every step was skipped, save its records
    and return its outcome and the lines to print; else why the build needs its server and
    workers, having written nothing."""
    store = HeldStore(root)
    if not store.path.is_file():
        return "no records: a first build"
    held = HeldLines()
    planner = Planner(
        StatBroker(),
        held,
        root,
        lease=lease,
        build=build,
        local_workers=local_workers,
        give_up=give_up,
        limits=limits,
        options=options,
        store=store,
    )
    try:
        outcome = planner.run()
    except WorkersNeeded as exc:
        return str(exc)
    if outcome.interrupted:
        raise KeyboardInterrupt
    if outcome.succeeded or outcome.failed or outcome.stuck or outcome.plan_errors:
        # Not a clean skip of everything: the real build says what happened, with workers.
        return "not every step was skipped"
    store.commit()
    return outcome, held
