"""The live status line of `stepup-dist build` on a terminal.

One line at the bottom of the terminal, for instance::

    12 done · 3 running · 40 queued · 5 skipped · 1 failed │ ETA 1m05s │
    workers 3 busy · 1 idle │ pools test 2/2 · matlab 1/4

(one line on the terminal, cut at its width).
Normal output lines are written above it: the line is erased (`\\r` and `ESC [K`), the
output written, and the line drawn again, so the two never mix. The counts come from the
planner's graph, for each output line and between two rounds of its loop, as long as
counting costs under 2 % of the time (a large graph is counted less often). A thread
redraws the line when it changed, every `MIN_TICK`, and reads the workers and pools from
the server every `POLL`, with a connection of its own (`broker/census.py`), so the planner
never waits for the server.

The ETA is rough: the seconds each remaining step ran last time (the mean of the known
durations for a step never run), divided among the workers, and at least the longest of
them. Of the steps that may yet be skipped (waiting for inputs or a hash check, or not
declared yet but in the last build), the share counted is that of the steps decided so far
that ran rather than were skipped.

The rendering (`render_status`, `estimate_eta`, `format_duration`, `truncate`) is pure.
"""

import getpass
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TextIO

from .errors import BrokerUnavailable
from .graph import StepStatus
from .report import ConsoleReporter

if TYPE_CHECKING:
    from .planner import Planner

__all__ = (
    "BuildReport",
    "Census",
    "Counts",
    "LiveReporter",
    "PoolWatch",
    "TickingBroker",
    "build_report",
    "estimate_eta",
    "format_duration",
    "render_status",
    "truncate",
)

ERASE = "\r\x1b[K"
"""Back to the start of the line, and clear it."""

MIN_TICK = 0.25
"""Seconds between two redraws of the status line, besides those around output lines."""

POLL = 1.0
"""Seconds between two reads of the server."""

_SEP = " │ "
_DOT = " · "


@dataclass(frozen=True)
class Counts:
    done: int = 0
    """Steps that succeeded in this build."""
    running: int = 0
    """Steps a worker reported it started."""
    queued: int = 0
    """Steps ready to run or be checked, waiting for a pool slot, or on the queue."""
    skipped: int = 0
    failed: int = 0
    pending: int = 0
    """Steps waiting for their inputs; shown only when there are any."""


@dataclass(frozen=True)
class PoolWatch:
    """A pool the build uses, as the progress line names it."""

    name: str
    size: int
    """Its size, for a pool of the plan; 0 for a cluster pool (its size lives on the server)."""


@dataclass(frozen=True)
class Census:
    """What the server says: workers of this prefix, and the slots held in the build's pools."""

    busy: int
    idle: int
    pools: tuple[tuple[str, int, int | None], ...] = ()
    """(name, slots held, size or None when unknown) of each watched pool."""


@dataclass(frozen=True)
class BuildReport:
    """What a planner tells the server about its build, for dashboards (unsigned: display only).

    Rewritten every few seconds while the build runs (`Planner`), and expiring after one
    lease when the planner is gone.
    """

    build: str
    folder: str
    """The project folder, as the planner names it."""
    user: str
    host: str
    """The host of the planner."""
    started: float
    """Unix time at which the build started."""
    counts: Counts
    eta: float | None
    """Seconds until the build ends, roughly (`estimate_eta`, the running steps as workers)."""
    hosts: tuple[tuple[str, int, int], ...] = ()
    """(host, steps that ended there, of which failed) of each host that ran a step."""
    pools: tuple[tuple[str, int], ...] = ()
    """(name, size) of each pool the plan defines."""


def format_duration(seconds: float) -> str:
    """45s, 3m05s, 2h03m."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def estimate_eta(
    waiting: Sequence[float | None],
    running: Sequence[tuple[float | None, float]],
    workers: int,
    measured: Sequence[float] = (),
    undecided: Sequence[float | None] = (),
    run_share: float = 1.0,
) -> float | None:
    """Seconds until the build ends, roughly; None when no duration is known at all.

    `waiting`: the expected duration of each step that must still run (None: never
    measured); `running`: (expected duration, seconds it has run so far) of each running
    step; `measured`: durations of the steps this build ran, to guess the unknown ones;
    `undecided`: expected durations of steps that may yet be skipped, of which `run_share`
    is expected to run.
    """
    known = [d for d in (*waiting, *undecided) if d is not None]
    known += [d for d, _ in running if d is not None]
    known += measured
    if not known:
        return None if waiting or running or undecided else 0.0
    mean = sum(known) / len(known)
    left = [mean if d is None else d for d in waiting]
    # A step that runs longer than last time is assumed to be nearly done.
    left += [max(0.0, (mean if d is None else d) - ran) for d, ran in running]
    left += [run_share * (mean if d is None else d) for d in undecided]
    if not left:
        return 0.0
    # Never sooner than the longest step alone takes.
    return max(sum(left) / max(1, workers), *left)


def truncate(text: str, width: int) -> str:
    """At most `width - 1` characters (the last column would wrap on some terminals)."""
    room = max(1, width - 1)
    return text if len(text) <= room else text[: room - 1] + "…"


def render_status(counts: Counts, census: Census | None, eta: float | None, width: int) -> str:
    """The status line, cut to the terminal's width."""
    parts = [
        f"{counts.done} done",
        f"{counts.running} running",
        f"{counts.queued} queued",
    ]
    if counts.pending:
        parts.append(f"{counts.pending} pending")
    parts += [f"{counts.skipped} skipped", f"{counts.failed} failed"]
    sections = [_DOT.join(parts)]
    # The ETA before the server's part: a narrow terminal cuts the pools first.
    if eta is not None:
        sections.append(f"ETA {format_duration(eta)}")
    if census is not None:
        sections.append(f"workers {census.busy} busy{_DOT}{census.idle} idle")
        if census.pools:
            pools = (
                f"{name} {held}/{'?' if size is None else size}"
                for name, held, size in census.pools
            )
            sections.append("pools " + _DOT.join(pools))
    return truncate(_SEP.join(sections), width)


@dataclass(frozen=True)
class _Snapshot:
    counts: Counts
    eta: float | None
    at: float
    """time.monotonic() of the count."""


_IN_FLIGHT = (StepStatus.READY, StepStatus.CHECKING, StepStatus.WAITING_POOL, StepStatus.QUEUED)
_MUST_RUN = frozenset(map(id, (StepStatus.WAITING_POOL, StepStatus.QUEUED)))
_ENDED = frozenset(map(id, (StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.FAILED)))
_STATUS = attrgetter("status")
_POOL = attrgetter("pool")


def _count(planner: "Planner", started: dict[str, float], workers: int, now: float) -> tuple:
    """Counts, ETA and the pools in use, from the planner's graph (main thread only).

    The loops over every step run in C (Counter, map, set operations); only steps still to
    run are looked at one by one.
    """
    steps = planner.graph.steps
    old = planner.old_records
    running_keys = planner.jobs.running
    # Enum members hash in Python; their ids hash in C.
    ids = list(map(id, map(_STATUS, steps.values())))
    by_id = Counter(ids)
    tally = {status: by_id.get(id(status), 0) for status in StepStatus}
    pools = set(map(_POOL, steps.values()))
    pools.discard(None)
    waiting: list[float | None] = []
    undecided: list[float | None] = []
    open_steps = [(key, i) for key, i in zip(steps, ids, strict=True) if i not in _ENDED]
    for key, i in open_steps:
        if key in running_keys:
            continue
        record = old.get(key)
        duration = record.duration or None if record is not None else None
        (waiting if i in _MUST_RUN else undecided).append(duration)
    # Steps of the last build that the plan has not declared (yet).
    undecided += [old[key].duration or None for key in old.keys() - steps.keys()]
    running = []
    for key in running_keys:
        record = old.get(key)
        expected = record.duration or None if record is not None else None
        running.append((expected, now - started.get(key, now)))
    measured = [r.duration for r in planner.records.values() if r.duration]
    # Of the steps that may yet be skipped, as many will run as of those decided so far.
    ran = tally[StepStatus.SUCCEEDED] + tally[StepStatus.FAILED] + len(running) + len(waiting)
    decided = ran + tally[StepStatus.SKIPPED]
    share = ran / decided if decided else 1.0
    in_flight = sum(tally[s] for s in _IN_FLIGHT)
    counts = Counts(
        done=tally[StepStatus.SUCCEEDED],
        running=len(running_keys),
        queued=max(0, in_flight - len(running_keys)),
        skipped=tally[StepStatus.SKIPPED],
        failed=tally[StepStatus.FAILED],
        pending=tally[StepStatus.PENDING],
    )
    eta = estimate_eta(waiting, running, workers, measured, undecided, share)
    plan_pools = planner.pools
    watch = [PoolWatch(name, size) for name, size in sorted(plan_pools.items())]
    watch += [PoolWatch(name, 0) for name in sorted(pools - set(plan_pools))]
    return counts, eta, watch


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment and no passwd entry
        return "?"


def build_report(planner: "Planner", started: float) -> BuildReport:
    """The planner's report of its build (main thread only): counts, ETA and hosts."""
    counts, eta, _ = _count(planner, {}, max(1, len(planner.jobs.running)), time.monotonic())
    ended: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    steps = planner.graph.steps
    for key, host in planner.jobs.hosts.items():
        step = steps.get(key)
        if step is None or step.status not in (StepStatus.SUCCEEDED, StepStatus.FAILED):
            continue
        ended[host] += 1
        if step.status is StepStatus.FAILED:
            failed[host] += 1
    return BuildReport(
        build=planner.build,
        folder=str(planner.root.absolute()),
        user=_user(),
        host=socket.gethostname(),
        started=started,
        counts=counts,
        eta=eta,
        hosts=tuple((host, ended[host], failed[host]) for host in sorted(ended)),
        pools=tuple(sorted(planner.pools.items())),
    )


class LiveReporter(ConsoleReporter):
    """Console output with the status line kept below it (for a terminal)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        local_workers: int = 0,
        width: Callable[[], int] | None = None,
    ):
        super().__init__(stream, quiet=quiet)
        self._lock = threading.Lock()
        self._shown = False
        self._local_workers = local_workers
        self._width = width or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self._planner: Planner | None = None
        self._started: dict[str, float] = {}
        self._snapshot = _Snapshot(Counts(), None, time.monotonic())
        self._census: Census | None = None
        self._pools: list[PoolWatch] = []
        self._next_count = 0.0
        self._drawn = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # Output

    def write(self, text: str) -> None:
        self._recount(time.monotonic())
        with self._lock:
            if self._shown:
                self.stream.write(ERASE)
                self._shown = False
            self.stream.write(text)
            if not self._stop.is_set():
                self._draw()
            self.stream.flush()

    def _draw(self, *, changed_only: bool = False) -> None:
        """Draw the status line where the cursor is (the lock is held)."""
        snap = self._snapshot
        eta = None if snap.eta is None else max(0.0, snap.eta - (time.monotonic() - snap.at))
        line = render_status(snap.counts, self._census, eta, self._width())
        if changed_only and self._shown and line == self._drawn:
            return
        self.stream.write((ERASE if self._shown else "") + line)
        self.stream.flush()
        self._shown = True
        self._drawn = line

    def line(self, status: str, text: str, host: str = "") -> None:
        if status == "START":
            self._started[text] = time.monotonic()
        super().line(status, text, host)

    # Counting (main thread) and reading the server (a thread)

    def watch(self, planner: "Planner", read: Callable[[str, list[PoolWatch]], Census]) -> None:
        """Count `planner`'s steps from now on, and read the server in a thread of its own."""
        self._planner = planner
        self._thread = threading.Thread(
            target=self._poll, args=(read, planner.build), name="progress", daemon=True
        )
        self._thread.start()

    def tick(self) -> None:
        """Count the steps again (called between rounds of the planner; the thread draws)."""
        self._recount(time.monotonic())

    def _recount(self, now: float) -> bool:
        """Count the steps, unless that would cost too much time (main thread only).

        An output line redraws the status line anyway, so it is counted again for each one,
        as long as counting takes under 2 % of the time: a large graph is counted less often.
        """
        planner = self._planner
        if planner is None or now < self._next_count or self._stop.is_set():
            return False
        census = self._census
        workers = census.busy + census.idle if census is not None else self._local_workers
        counts, eta, pools = _count(planner, self._started, workers, now)
        self._pools = pools
        self._snapshot = _Snapshot(counts, eta, now)
        done = time.monotonic()
        self._next_count = done + 50 * (done - now)
        return True

    def _poll(self, read: Callable[[str, list[PoolWatch]], Census], build: str) -> None:
        """Redraw every `MIN_TICK` when the line changed; read the server every `POLL`."""
        next_read = time.monotonic() + POLL
        while not self._stop.wait(MIN_TICK):
            census = self._census
            if time.monotonic() >= next_read:
                try:
                    census = read(build, list(self._pools))
                except BrokerUnavailable:
                    census = None  # shown without workers and pools until the server answers
                next_read = time.monotonic() + POLL
            with self._lock:
                if self._stop.is_set():
                    return
                self._census = census
                self._draw(changed_only=True)

    def close(self) -> None:
        """Stop reading the server and erase the status line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self._shown:
                self.stream.write(ERASE)
                self.stream.flush()
                self._shown = False


class TickingBroker:
    """The planner's broker, with the status line counted before each wait for messages."""

    def __init__(self, broker: Any, tick: Callable[[], None]):
        self._broker = broker
        self._tick = tick

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def receive(self, build: str, timeout: float) -> Any:
        self._tick()
        return self._broker.receive(build, timeout)
