"""Where the planner sends each job: to a queue that a live worker able to run it reads.

Workers take steps from one queue per group (`docs/routing.md`): the local workers of a
build from that build's own queue, workers started with `--root` from the queue of their
folders (registered on the server with those folders), workers that serve any folder from
`steps`. A worker with `--resources` also reads its group's queue for its host,
`{queue}.host.{host}`. The rule: a job goes only to a group with live workers that covers
the build's folder, and a step placed on a host for its resources only to the host queue of
such a group with a live worker on that host (`Group.hosts`). So no job waits in a queue
that no live worker reads, and no worker refuses a job for serving other folders. Among
several, the one with the fewest of this build's unstarted jobs per worker gets the next
job (the build's own workers first when even). When a group's last worker leaves, its
unstarted jobs are `stranded`: the planner takes them back. When none covers the folder,
jobs are held, a `WAITING` line says what the connected workers serve (again every
`WAITING_REPEAT` seconds while it lasts), and after `give_up` seconds the build ends with
its steps stuck.

No Redis here: the planner hands in what `Broker.groups()` read, and the time.
"""

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ("SECRET_DIFFERS", "Group", "Router", "covers", "secret_differs")

REFRESH_IDLE = 5.0
"""Seconds between reads of the worker registry while jobs can be sent."""
REFRESH_WAITING = 1.0
"""Seconds between reads while jobs wait for a worker that can take them."""
QUEUE_DEPTH = 1.0
"""Unstarted runs kept out per serving worker; the rest wait in the planner, best first."""
WAITING_GRACE = 2.0
"""Seconds without a serving worker before it is said (workers may be starting)."""
WAITING_REPEAT = 60.0
"""Seconds between two WAITING lines that say the same: a person who comes back to the
terminal sees that the build still waits, and why."""


SECRET_DIFFERS = "their secret differs"
"""Why a group's workers refuse every job of this build (`Router.refusing`)."""

_SECRET_REASONS = ("bad signature", ": not signed", "this worker has no secret")
"""The reasons a worker gives (`signing.unseal`, `Broker.open_job`) when its secret is not
the planner's."""


def secret_differs(error: str) -> bool:
    """True when a refusal report says that the worker's secret is not this build's: it
    refuses every job of the build, not just this one."""
    return error.startswith("refused by worker") and any(r in error for r in _SECRET_REASONS)


class Group(Protocol):
    @property
    def queue(self) -> str: ...
    @property
    def roots(self) -> tuple[str, ...]: ...
    @property
    def workers(self) -> int: ...
    @property
    def idle(self) -> int: ...
    @property
    def hosts(self) -> Collection[str]: ...


def covers(roots: Sequence[str], folder: str) -> bool:
    """True when a worker serving `roots` (none: any folder) serves `folder`."""
    if not roots:
        return True
    return any(folder == root or folder.startswith(root.rstrip("/") + "/") for root in roots)


@dataclass(frozen=True)
class _Known:
    """A group the planner knows of before the registry does (its own local workers)."""

    queue: str
    roots: tuple[str, ...]
    workers: int
    idle: int
    hosts: frozenset[str]


@dataclass
class Router:
    """The queues one build's jobs may go to, and how many of its jobs wait in each."""

    folder: str
    """The build's folder, as the planner names it (symlinks resolved)."""

    local: str | None = None
    """The queue of the build's own local workers (`build -wN`); None with `-w0`."""

    local_workers: int = 0
    """How many local workers serve `local` (a candidate for plain jobs from the start:
    they are the build's own processes, and it ends when they have all exited)."""

    give_up: float | None = None
    """Seconds to wait for a serving worker before the build ends; None: no limit."""

    groups: list[Group] = field(default_factory=list)
    """The groups the server knew at the last read, serving this folder or not."""

    unstarted: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Job key -> (queue, host or None), for the jobs sent and not yet started."""

    waiting: Counter[str] = field(default_factory=Counter)
    """Queue -> how many of `unstarted` went there."""

    refusing: dict[str, str] = field(default_factory=dict)
    """Queue -> why its workers refuse this build's jobs (`SECRET_DIFFERS`): the group
    counts as serving nothing for this build until its workers have all left (restarted
    with the right secret, they come back as a group that serves)."""

    read_at: float = -1e18
    """When the registry was last read (monotonic seconds)."""

    unserved_since: float | None = None
    """Since when no live group serves the folder while jobs wait (monotonic)."""

    told: dict[str, tuple[str, float]] = field(default_factory=dict)
    """What each WAITING line (by topic: `folder`, or a step) last said, and when: a change
    is printed at once, the same text every `WAITING_REPEAT` seconds."""

    def due(self, now: float, waiting: bool = False) -> bool:
        """Time to read the registry again (sooner while jobs wait: `waiting`, or no worker
        serves the folder)."""
        every = REFRESH_WAITING if waiting or self.unserved_since is not None else REFRESH_IDLE
        return now - self.read_at >= every

    def update(self, groups: Sequence[Group], now: float) -> None:
        self.groups = list(groups)
        self.read_at = now
        live = {g.queue for g in self.groups if g.workers > 0}
        self.refusing = {q: why for q, why in self.refusing.items() if q in live}

    def refuse(self, queue: str, why: str) -> bool:
        """The workers of `queue` refuse this build's jobs for `why`: True when news."""
        new = queue not in self.refusing
        self.refusing[queue] = why
        return new

    def _mine(self) -> Group | None:
        """The build's own group as the registry knows it (the hosts it reads)."""
        return next((g for g in self.groups if g.queue == self.local), None)

    def candidates(self, host: str | None = None) -> list[tuple[str, int]]:
        """(queue, live workers) of every group that may take this build's jobs; with
        `host`, of every group that reads its host queue on `host` (a step placed there)."""
        found = [
            (g.queue, g.workers)
            for g in self.groups
            if g.workers > 0
            and g.queue != self.local
            and g.queue not in self.refusing
            and covers(g.roots, self.folder)
            and (host is None or host in g.hosts)
        ]
        if self.local is None or self.local in self.refusing:
            return found
        if host is None and self.local_workers > 0:
            found.insert(0, (self.local, self.local_workers))
        elif host is not None:
            mine = self._mine()
            if mine is not None and mine.workers > 0 and host in mine.hosts:
                found.insert(0, (self.local, mine.workers))
        return found

    def hosts(self) -> set[str]:
        """The hosts on which a live worker that serves this folder reads its host queue:
        where a step that needs host resources may be placed."""
        return {
            host
            for g in self.groups
            if g.workers > 0
            and g.queue not in self.refusing
            and (g.queue == self.local or covers(g.roots, self.folder))
            for host in g.hosts
        }

    def pick(
        self, *, host: str | None = None, found: list[tuple[str, int]] | None = None
    ) -> str | None:
        """The queue for the next job (placed on `host`, if any), or None when no live
        worker can take it. `found`: the candidates, when the caller picks for many."""
        found = self.candidates(host) if found is None else found
        if not found:
            return None
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

    def stranded(self) -> dict[tuple[str, str | None], list[str]]:
        """(queue, host) -> keys of this build's unstarted jobs that wait where no live
        worker that can take them reads any more: to be taken back, and sent elsewhere or
        held."""
        live: dict[str | None, set[str]] = {}
        moved: dict[tuple[str, str | None], list[str]] = {}
        for key, (queue, host) in self.unstarted.items():
            if host not in live:
                live[host] = {q for q, _ in self.candidates(host)}
            if queue not in live[host]:
                moved.setdefault((queue, host), []).append(key)
        return moved

    def sent(self, key: str, queue: str, host: str | None = None) -> None:
        self.started(key)
        self.unstarted[key] = (queue, host)
        self.waiting[queue] += 1

    def started(self, key: str) -> None:
        sent = self.unstarted.pop(key, None)
        if sent is not None:
            self.waiting[sent[0]] -= 1

    def waiting_text(self, now: float, held: int) -> str | None:
        """A WAITING line to print now (a new situation, or the same after
        `WAITING_REPEAT`); tracks `unserved_since`."""
        if self.candidates() or not (held or self.unstarted):
            self.unserved_since = None
            self.told.pop("folder", None)
            return None
        if self.unserved_since is None:
            self.unserved_since = now
        if now - self.unserved_since < WAITING_GRACE:
            return None
        what = f"steps of {self.folder}: {self.unserved()}"
        return self.say("folder", f"{what} ({self.served()})", now, what)

    def unserved(self) -> str:
        """Why no connected worker takes this build's jobs: none serves the folder, or those
        that do refuse them (and why)."""
        refusing = [
            g
            for g in self.groups
            if g.workers > 0
            and g.queue in self.refusing
            and (g.queue == self.local or covers(g.roots, self.folder))
        ]
        if not refusing:
            return "no connected worker serves this folder"
        causes = sorted({self.refusing[g.queue] for g in refusing})
        return (
            f"workers of {', '.join(_what(g, self.local) for g in refusing)} refuse this "
            f"build's jobs: {'; '.join(causes)}"
        )

    def say(self, topic: str, text: str, now: float, cause: str | None = None) -> str | None:
        """`text`, if its `cause` (by default the text) is new for `topic`, or was said
        `WAITING_REPEAT` seconds ago."""
        cause = text if cause is None else cause
        last = self.told.get(topic)
        if last is not None and last[0] == cause and now - last[1] < WAITING_REPEAT:
            return None
        self.told[topic] = (cause, now)
        return text

    def gave_up(self, now: float) -> bool:
        return (
            self.give_up is not None
            and self.unserved_since is not None
            and now - self.unserved_since >= max(self.give_up, WAITING_GRACE)
        )

    def served(self) -> str:
        """What the connected workers serve and offer, for messages."""
        live: list[Group] = [g for g in self.groups if g.workers > 0]
        if self.local is not None and self.local_workers and self._mine() is None:
            # Started, not registered yet.
            live.insert(0, _Known(self.local, (), self.local_workers, 0, frozenset()))
        total = sum(g.workers for g in live)
        if not total:
            return "no worker is connected"
        parts = []
        for g in live:
            what = _what(g, self.local)
            hosts = f" (resources on {', '.join(sorted(g.hosts))})" if g.hosts else ""
            parts.append(f"{g.workers} serve{'s' if g.workers == 1 else ''} {what}{hosts}")
        noun = "worker is" if total == 1 else "workers are"
        return f"{total} {noun} connected: " + "; ".join(parts)


def _what(group: Group, local: str | None) -> str:
    """What a group serves, for messages."""
    return "this build" if group.queue == local else ", ".join(group.roots) or "any folder"
