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

The counts and the ETA come from `planner/progress.py`.

The rendering (`render_status`, `format_duration`, `truncate`) is pure.
"""

import math
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import BrokerUnavailable, GrantMissing
from ..planner.progress import count
from ..status import Census, Counts, PoolWatch
from .console import ConsoleReporter

if TYPE_CHECKING:
    from ..planner.loop import Planner

__all__ = ("LiveReporter", "TickingBroker", "format_duration", "render_status", "truncate")

ERASE = "\r\x1b[K"
"""Back to the start of the line, and clear it."""

MIN_TICK = 0.25
"""Seconds between two redraws of the status line, besides those around output lines."""

POLL = 1.0
"""Seconds between two reads of the server."""

_SEP = " │ "
_DOT = " · "


def format_duration(seconds: float) -> str:
    """45s, 3m05s, 2h03m."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


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
        self._refused: str | None = None
        """A missing grant the reading thread met, for the main thread to tell once."""
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
        refused, self._refused = self._refused, None
        if refused is not None:
            self.line("WARNING", f"the status line shows no workers and pools: {refused}")
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
        counts, eta, pools = count(planner, self._started, workers, now)
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
                next_read = time.monotonic() + POLL
                try:
                    census = read(build, list(self._pools))
                except GrantMissing as exc:
                    # No retry helps: stop reading, and say why once.
                    census, next_read = None, math.inf
                    self._refused = str(exc)
                except BrokerUnavailable:
                    census = None  # shown without workers and pools until the server answers
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
