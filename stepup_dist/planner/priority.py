"""Which ready steps run first: those on the longest remaining path (the critical path).

A step's tail time is its expected duration plus the longest tail time among the steps that
use its outputs, as in StepUp 4: the critical path from it to the end of the build. The
expected duration is the step's `duration=` hint, else what it took when it last succeeded
(this build or the last one, `store.Record.duration`), else `DEFAULT_DURATION`. The edges
are those of this build's graph and, for steps the plan has not defined (yet) in this
build, those of the last build's records: a plan that defines its steps as it goes still
puts a long chain first from its second run on.

Ordering matters only where more steps are ready than workers can take: jobs on an RQ
queue are taken first in, first out, so the planner holds back runs beyond what the
workers can start soon (`Router.room`) and sends the best of the rest as room comes free.
Holding back costs a round trip per step or so; it is worth it only while some step waits
for its inputs (it may become ready with a longer tail than the jobs queued by then). With
none, sending every ready run at once, best first, puts them in the same order.
No Redis here, no I/O: the planner hands in its graph and records.
"""

import heapq
import itertools
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .graph import Graph, Step, StepStatus
from .store import Record

__all__ = ("DEFAULT_DURATION", "Priorities", "RunQueue")

DEFAULT_DURATION = 1.0
"""Seconds assumed for a step with neither a hint nor a recorded duration (as StepUp 4)."""

PENDING_EVERY = 0.5
"""Seconds between two scans for steps that wait for their inputs."""
REFRESH_SHARE = 20.0
"""Tail times are recomputed at most once per this many times the last computation took
(at most 5 % of the planner's time goes to them on a huge graph that keeps growing)."""


@dataclass
class Priorities:
    """Tail times of the steps of one build, recomputed when the graph has grown."""

    graph: Graph
    records: Mapping[str, Record]
    """Steps that succeeded in this build (their measured durations)."""
    old_records: Mapping[str, Record]
    """Steps of the last build (durations, and edges of steps not defined yet)."""
    use_durations: bool = True
    """Hints and recorded durations count; without (`build --no-duration`) every step
    counts as `DEFAULT_DURATION`: the longest chain of steps goes first."""
    tails: dict[str, float] = field(default_factory=dict)
    """Step key -> tail time, as of the last computation."""
    generation: int = 0
    """Bumped by each computation (a `RunQueue` re-sorts when it changes)."""
    _shape: tuple[int, int] = (-1, -1)
    _next_at: float = 0.0
    _pending: bool = True
    _pending_at: float = -1e18

    def steps_wait_for_inputs(self) -> bool:
        """Whether some step (not optional) waits for its inputs; read again at most every
        `PENDING_EVERY` seconds (or 20 times the cost of a scan), True meanwhile if it was."""
        now = time.monotonic()
        if now >= self._pending_at:
            self._pending = any(
                s.status is StepStatus.PENDING and not s.optional for s in self.graph.steps.values()
            )
            self._pending_at = now + max(PENDING_EVERY, REFRESH_SHARE * (time.monotonic() - now))
        return self._pending

    def pending_defined(self) -> None:
        """A step that waits for its inputs was defined."""
        self._pending = True

    def duration(self, key: str) -> float:
        if not self.use_durations:
            return DEFAULT_DURATION
        step = self.graph.steps.get(key)
        if step is not None and step.duration is not None:
            return step.duration
        for records in (self.records, self.old_records):
            record = records.get(key)
            if record is not None and record.duration > 0:
                return record.duration
        return DEFAULT_DURATION

    def tail(self, key: str) -> float:
        """The tail time of a step (a step newer than the last computation: its duration)."""
        tail = self.tails.get(key)
        return self.duration(key) if tail is None else tail

    def refresh(self, force: bool = False) -> bool:
        """Recompute the tail times if the graph changed (and enough time passed since the
        last computation); True when it did."""
        shape = (len(self.graph.steps), len(self.graph.files))
        now = time.monotonic()
        if shape == self._shape or (not force and now < self._next_at):
            return False
        self._shape = shape
        self.tails = self._compute()
        self.generation += 1
        self._next_at = now + REFRESH_SHARE * (time.monotonic() - now)
        return True

    def _successors(self) -> Mapping[str, set[str]]:
        """Step key -> the keys of the steps that use one of its outputs."""
        users: dict[str, set[str]] = {}
        for path, node in self.graph.files.items():
            if node.consumers:
                users[path] = set(node.consumers)
        made: dict[str, list[str]] = {}
        for key, step in self.graph.steps.items():
            made[key] = step.out + step.vol
        for key, rec in self.old_records.items():
            if key in self.graph.steps:
                continue
            for path in itertools.chain(rec.inp, rec.amended[0]):
                users.setdefault(path, set()).add(key)
            made[key] = [*rec.out, *rec.vol, *rec.amended[1], *rec.amended[2]]
        return {
            key: set().union(*(users.get(path, ()) for path in paths)) - {key}
            for key, paths in made.items()
        }

    def _compute(self) -> dict[str, float]:
        after = self._successors()
        tails: dict[str, float] = {}
        # Iterative depth-first post-order: a chain of thousands of steps would overflow
        # Python's stack. A cycle (a plan error, reported elsewhere) counts its back edge 0.
        entered: set[str] = set()
        for start in after:
            if start in tails:
                continue
            stack: list[tuple[str, Iterator[str]]] = [(start, iter(after.get(start, ())))]
            entered.add(start)
            while stack:
                key, todo = stack[-1]
                nxt = next((k for k in todo if k not in tails and k not in entered), None)
                if nxt is not None:
                    entered.add(nxt)
                    stack.append((nxt, iter(after.get(nxt, ()))))
                    continue
                stack.pop()
                longest = max((tails.get(k, 0.0) for k in after.get(key, ())), default=0.0)
                tails[key] = self.duration(key) + longest
        return tails


@dataclass
class RunQueue:
    """Ready steps that must run and wait for room to be sent, longest tail first.

    A step leaves when it is taken (`take`) or when it is no longer READY (drained, failed):
    such entries are dropped as they come up.
    """

    priorities: Priorities
    _heap: list[tuple[float, int, Step]] = field(default_factory=list)
    _members: set[str] = field(default_factory=set)
    _order: Iterator[int] = field(default_factory=itertools.count)
    _generation: int = 0

    def __len__(self) -> int:
        return len(self._members)

    def __bool__(self) -> bool:
        return bool(self._members)

    def push(self, step: Step) -> None:
        if step.key in self._members:
            return
        self._members.add(step.key)
        # Equal tails: first come, first served.
        heapq.heappush(self._heap, (-self.priorities.tail(step.key), next(self._order), step))

    def may_take(self, room: int | None) -> bool:
        """Whether `take` would hand out a step now (the queue is not empty)."""
        return room is None or room > 0 or not self.priorities.steps_wait_for_inputs()

    def take(self, n: int, room: int | None = None) -> list[Step]:
        """Up to `n` READY steps, longest tail first; at most `room` (None: no limit) while
        steps wait for their inputs."""
        if room is not None and self.priorities.steps_wait_for_inputs():
            n = min(n, room)
        if n <= 0 or not self._heap:
            return []
        if len(self._heap) > n:
            # Only when some must wait does the order matter (and is worth computing).
            self.priorities.refresh()
        if self.priorities.generation != self._generation:
            self._generation = self.priorities.generation
            tail = self.priorities.tail
            self._heap = [(-tail(s.key), i, s) for _, i, s in self._heap]
            heapq.heapify(self._heap)
        taken: list[Step] = []
        while self._heap and len(taken) < n:
            _, _, step = heapq.heappop(self._heap)
            self._members.discard(step.key)
            if step.status is StepStatus.READY:
                taken.append(step)
        return taken

    def clear(self) -> None:
        self._heap.clear()
        self._members.clear()

    def keys(self) -> list[str]:
        """The keys waiting, in no particular order."""
        return list(self._members)
