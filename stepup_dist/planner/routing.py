"""Where the planner sends each job: to a queue whose live workers serve the build's folder.

Workers take steps from one queue per group (`docs/routing.md`): the local workers of a
build from that build's own queue, workers started with `--root` from the queue of their
folders (registered on the server with those folders), workers that serve any folder from
`steps`. A job goes only to a group that covers the build's folder and has live workers, so
no worker refuses a job for serving other folders. Among several, the one with the fewest
of this build's unstarted jobs per worker gets the next job (the build's own workers first
when even). When none covers the folder, jobs are held, a `WAITING` line says what the
connected workers serve, and after `give_up` seconds the build ends with its steps stuck.

No Redis here: the planner hands in what `Broker.groups()` read.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ("Group", "Router", "covers")

REFRESH_IDLE = 5.0
"""Seconds between reads of the worker registry while jobs can be sent."""
REFRESH_WAITING = 1.0
"""Seconds between reads while no connected worker serves the build."""
QUEUE_DEPTH = 1.0
"""Unstarted runs kept out per serving worker; the rest wait in the planner, best first."""
WAITING_GRACE = 2.0
"""Seconds without a serving worker before it is said (workers may be starting)."""


class Group(Protocol):
    @property
    def queue(self) -> str: ...
    @property
    def roots(self) -> tuple[str, ...]: ...
    @property
    def workers(self) -> int: ...
    @property
    def idle(self) -> int: ...


def covers(roots: Sequence[str], folder: str) -> bool:
    """True when a worker serving `roots` (none: any folder) serves `folder`."""
    if not roots:
        return True
    return any(folder == root or folder.startswith(root.rstrip("/") + "/") for root in roots)


@dataclass
class Router:
    """The queues one build's jobs may go to, and how many of its jobs wait in each."""

    folder: str
    """The build's folder, as the planner names it (symlinks resolved)."""

    local: str | None = None
    """The queue of the build's own local workers (`build -wN`); None with `-w0`."""

    local_workers: int = 0
    """How many local workers serve `local`."""

    give_up: float | None = None
    """Seconds to wait for a serving worker before the build ends; None: no limit."""

    groups: list[Group] = field(default_factory=list)
    """The groups the server knew at the last read, serving this folder or not."""

    unstarted: dict[str, str] = field(default_factory=dict)
    """Job key -> queue, for the jobs sent and not yet started."""

    waiting: Counter[str] = field(default_factory=Counter)
    """Queue -> how many of `unstarted` went there."""

    read_at: float = -1e18
    """When the registry was last read (monotonic seconds)."""

    unserved_since: float | None = None
    """Since when no live group serves the folder while jobs wait (monotonic)."""

    told: str = ""
    """The last WAITING text printed, so that a change is printed once."""

    def due(self, now: float) -> bool:
        """Time to read the registry again."""
        every = REFRESH_WAITING if self.unserved_since is not None else REFRESH_IDLE
        return now - self.read_at >= every

    def update(self, groups: Sequence[Group], now: float) -> None:
        self.groups = list(groups)
        self.read_at = now

    def candidates(self) -> list[tuple[str, int]]:
        """(queue, live workers) of every group that may take this build's jobs."""
        found = [
            (g.queue, g.workers)
            for g in self.groups
            if g.workers > 0 and g.queue != self.local and covers(g.roots, self.folder)
        ]
        if self.local is not None and self.local_workers > 0:
            found.insert(0, (self.local, self.local_workers))
        return found

    def pick(
        self, *, prefer_local: bool = False, found: list[tuple[str, int]] | None = None
    ) -> str | None:
        """The queue for the next job, or None when no live worker serves the folder.
        `found`: the candidates, when the caller picks for many jobs at once."""
        found = self.candidates() if found is None else found
        if not found:
            return None
        if prefer_local and self.local is not None and found[0][0] == self.local:
            return self.local
        # min() keeps the first of equals: the local workers, then the order read.
        return min(found, key=lambda qw: (self.waiting[qw[0]] + 1) / qw[1])[0]

    def room(self, outgoing: int) -> int | None:
        """How many more runs to send now, `outgoing` of them on their way already; None:
        no limit (no live worker serves the folder yet: jobs wait in the planner anyway).

        Workers take jobs first in, first out, so a job sent now runs after every job
        waiting: the planner keeps about one unstarted job per serving worker out
        (`QUEUE_DEPTH`), enough that no worker waits for the next, and holds back the
        rest, to send the most urgent first as workers start theirs (`priority.py`).
        """
        found = self.candidates()
        if not found:
            return None
        limit = max(1, round(QUEUE_DEPTH * sum(workers for _, workers in found)))
        return max(0, limit - len(self.unstarted) - outgoing)

    def stranded(self) -> dict[str, list[str]]:
        """Queue -> keys of this build's unstarted jobs that wait in a queue no live worker
        serves any more, while another group could take them (to be moved there)."""
        found = self.candidates()
        live = {queue for queue, _ in found}
        if not found:
            return {}
        moved: dict[str, list[str]] = {}
        for key, queue in self.unstarted.items():
            if queue not in live:
                moved.setdefault(queue, []).append(key)
        return moved

    def sent(self, key: str, queue: str) -> None:
        self.started(key)
        self.unstarted[key] = queue
        self.waiting[queue] += 1

    def started(self, key: str) -> None:
        queue = self.unstarted.pop(key, None)
        if queue is not None:
            self.waiting[queue] -= 1

    def waiting_text(self, now: float, held: int) -> str | None:
        """A WAITING line to print now, if the situation is new; tracks `unserved_since`."""
        if self.candidates() or not (held or self.unstarted):
            self.unserved_since = None
            self.told = ""
            return None
        if self.unserved_since is None:
            self.unserved_since = now
        if now - self.unserved_since < WAITING_GRACE:
            return None
        text = f"steps of {self.folder}: no connected worker serves this folder ({self.served()})"
        if text == self.told:
            return None
        self.told = text
        return text

    def gave_up(self, now: float) -> bool:
        return (
            self.give_up is not None
            and self.unserved_since is not None
            and now - self.unserved_since >= max(self.give_up, WAITING_GRACE)
        )

    def served(self) -> str:
        """What the connected workers serve, for messages."""
        live = [g for g in self.groups if g.workers > 0]
        total = sum(g.workers for g in live)
        if not total:
            return "no worker is connected"
        parts = []
        for g in live:
            what = ", ".join(g.roots) if g.roots else "any folder"
            parts.append(f"{g.workers} serve{'s' if g.workers == 1 else ''} {what}")
        noun = "worker is" if total == 1 else "workers are"
        return f"{total} {noun} connected: " + "; ".join(parts)
