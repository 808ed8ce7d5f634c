"""`stepup-dist build --watch`: run, watch the files, run again what the changes outdated.

The planner, its server and its workers stay up between runs. After each run the watch
loop waits for a change (printed as it is seen), a key, or a signal:

- `r` runs what the changes made outdated (with `--auto`: once the files have been quiet
  for `QUIET` seconds, without a key);
- `f` runs everything from scratch, `t` checks every step again as a new build would;
- `g` writes the graph to `graph.txt`;
- `q` stops after the running steps, `j` when the current run completes, `d` drains the
  current run (queues nothing new) and keeps watching;
- any other key prints the one-line help.

Without a terminal there are no keys; SIGINT or SIGTERM stop the loop, during a run with
the drain of Ctrl-C.

From other terminals, `stepup-dist rebuild` does what `r` does, and `stepup-dist wait`
waits for the current run to end: the loop reads the build's inbox every `CONTROL_POLL`
seconds between runs, and keeps its phase in `.stepup/watch.json` (`phase.py`).
"""

import contextlib
import queue
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..errors import BrokerUnavailable, ReturnCode
from ..planner import graph_files
from ..planner.watch import Changes, next_run, watch_set
from ..planner.watcher import choose
from .keys import HELP, Keys
from .phase import PhaseWriter

if TYPE_CHECKING:
    from ..planner.core import Broker, Outcome
    from ..planner.loop import Planner

__all__ = ("QUIET", "watch_loop")

QUIET = 0.2
"""Seconds without a change before `--auto` runs (a burst of saves makes one run)."""

CONTROL_POLL = 0.2
"""Seconds between two looks at the inbox between runs (`stepup-dist rebuild`, `join`)."""

NOTHING = "nothing changed since the last run, which built everything: nothing to run"

_STOP_KEYS = {
    "q": "stopping once the running steps have finished",
    "j": "stopping when this run completes",
    "d": "draining: queueing nothing new, waiting for the running steps",
}


class _Session:
    """What the keys asked, between the key thread and the loop."""

    def __init__(self, planner: "Planner", reporter: Any):
        self.planner = planner
        self.reporter = reporter
        self.drained = False
        """`d` was pressed during this run: its interruption does not end the loop."""
        self.code = ReturnCode.INTERRUPTED
        """The exit code of the last run that completed."""
        self.phase: PhaseWriter | None = None
        """Where the loop is, for `stepup-dist wait` and `rebuild` elsewhere."""
        self.complete = False
        """The last run built everything: nothing failed, waits or was left undone."""
        self._said: queue.SimpleQueue[str] = queue.SimpleQueue()
        """Lines of the key thread, printed by the main thread (which owns the reporter:
        the status line counts the planner's graph)."""

    def act(self, key: str) -> bool:
        """In the key thread: the keys that act during a run. True when handled."""
        if key not in _STOP_KEYS:
            return False
        p = self.planner
        if key == "q":
            p.shutdown()
        elif key == "j":
            p.join()
        else:
            self.drained = True
            p.drain()
        self._said.put(f"{key}: {_STOP_KEYS[key]}")
        with contextlib.suppress(Exception):  # a wake-up only saves up to a second
            p.broker.wake(p.build)
        return True

    def flush(self) -> None:
        """Print what the key thread said (main thread)."""
        while not self._said.empty():
            self.reporter.line("KEYBOARD", self._said.get())


class _Speaking:
    """The planner's broker, with the key thread's lines printed before each wait for
    messages: on the main thread, between two rounds of the planner's loop."""

    def __init__(self, broker: Any, session: _Session):
        self._broker = broker
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._broker, name)

    def receive(self, build: str, timeout: float) -> Any:
        self._session.flush()
        return self._broker.receive(build, timeout)


@contextlib.contextmanager
def _term_signal() -> Iterator[None]:
    """SIGTERM as Ctrl-C: the drain, then the end of the loop."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def watch_loop(
    planner: "Planner",
    reporter: Any,
    summarize: Callable[["Outcome", float], ReturnCode],
    *,
    auto: bool,
    poll: float | None,
    keys_fd: int | None,
    phase: PhaseWriter | None = None,
) -> ReturnCode:
    """Run the build, then watch and run again until stopped; the last run's exit code."""
    session = _Session(planner, reporter)
    session.phase = phase
    planner.broker = cast("Broker", _Speaking(planner.broker, session))
    watcher, how = choose(str(planner.root), poll)
    reporter.line("WATCH", how)
    keys = Keys(keys_fd, session.act) if keys_fd is not None else None
    try:
        with _term_signal():
            try:
                return _loop(planner, reporter, summarize, session, watcher, keys, auto)
            except KeyboardInterrupt:  # between a run's end and the wait for changes
                reporter.line("INTERRUPT", "stopped watching")
                return session.code | ReturnCode.INTERRUPTED
    finally:
        if phase is not None:
            phase.close()
        if keys is not None:
            keys.close()
        watcher.close()


def _loop(
    planner: "Planner",
    reporter: Any,
    summarize: Callable[["Outcome", float], ReturnCode],
    session: _Session,
    watcher: Any,
    keys: Keys | None,
    auto: bool,
) -> ReturnCode:
    changes = Changes()
    start = time.monotonic()
    _tell(session, phase="running", runs=1)
    outcome = _run(planner, session)
    code = _summarize(session, summarize, outcome, time.monotonic() - start)
    while True:
        if (
            planner.stopping
            or outcome.cancelled
            or (outcome.interrupted and not session.drained and not outcome.failure_drain)
        ):
            return code
        _tell(session, phase="watching", code=int(code))
        session.drained = False
        try:
            files, folders = watch_set(planner)
            watcher.watch(files, folders)
            for what, path in changes.look(planner, None):
                reporter.line(what, path)
            how = _wait(planner, reporter, session, watcher, keys, changes, auto)
        except KeyboardInterrupt:
            reporter.line("INTERRUPT", "stopped watching")
            return code | ReturnCode.INTERRUPTED
        if how is None:
            return code
        if how == "f":
            reporter.line("KEYBOARD", "f: discarding the hashes, running everything from scratch")
        elif how == "t":
            reporter.line("KEYBOARD", "t: checking every step again, skipping what is unchanged")
        planner.new_run(*next_run(planner, how, changes))
        if hasattr(reporter, "new_run"):  # StepUp's logs of the output start again
            reporter.new_run()
        told = session.phase.phase if session.phase is not None else None
        _tell(
            session,
            phase="running",
            runs=told.runs + 1 if told else 0,
            rebuilds=told.rebuilds + 1 if told else 0,
        )
        start = time.monotonic()
        outcome = _run(planner, session)
        code = _summarize(session, summarize, outcome, time.monotonic() - start)


def _tell(session: _Session, **changes: object) -> None:
    """Say where the loop is, in the phase file."""
    if session.phase is not None:
        session.phase.set(**changes)


def _summarize(
    session: _Session,
    summarize: Callable[["Outcome", float], ReturnCode],
    outcome: "Outcome",
    elapsed: float,
) -> ReturnCode:
    """Print a run's summary whole, and keep its exit code: a signal waits until after."""
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        session.code = summarize(outcome, elapsed)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    return session.code


def _run(planner: "Planner", session: _Session) -> "Outcome":
    """One run; drained by a key with nothing left undone, it counts as complete."""
    outcome = planner.run()
    session.flush()
    if outcome.interrupted and not outcome.not_run and (planner.stopping or session.drained):
        outcome.interrupted = False
    # `q`, `d` (or `stepup-dist shutdown`) stop on purpose: the steps that did not run are
    # counted, but the exit code is that of what ran, not Ctrl-C's 130.
    outcome.asked = (
        outcome.interrupted and (planner.stopping or session.drained) and not outcome.cancelled
    )
    session.complete = not (
        outcome.interrupted
        or outcome.cancelled
        or outcome.failed
        or outcome.stuck
        or outcome.plan_errors
    )
    return outcome


def _wait(
    planner: "Planner",
    reporter: Any,
    session: _Session,
    watcher: Any,
    keys: Keys | None,
    changes: Changes,
    auto: bool,
) -> str | None:
    """Wait for what starts the next run ('r', 'f' or 't'); None to stop watching."""
    last_change = time.monotonic() if changes else None
    renew_at = 0.0
    look_at = 0.0
    while True:
        if planner.stopping:
            session.flush()
            return None
        now = time.monotonic()
        if now >= renew_at:
            planner.idle()
            renew_at = now + planner.lease / 3
            look_at = now + CONTROL_POLL
        elif now >= look_at:
            with contextlib.suppress(BrokerUnavailable):  # idle() reconnects, in time
                planner.take_controls()
            look_at = now + CONTROL_POLL
        waits = [renew_at - now, look_at - now]
        if auto and changes and last_change is not None:
            waits.append(last_change + QUIET - now)
        due = watcher.due()
        if due is not None:
            waits.append(due)
        fds = [fd for fd in (watcher.fileno(), keys and keys.fileno()) if fd is not None]
        select.select(fds, [], [], max(0.0, min(waits)))
        hints = watcher.read()
        if hints is None or hints:
            lines = changes.look(planner, hints)
            for what, path in lines:
                reporter.line(what, path)
            if lines:
                last_change = time.monotonic()
        session.flush()
        pressed = keys.take() if keys is not None else []
        if planner.rebuild_asked:
            # `stepup-dist rebuild`, now or during the last run: as the key r.
            planner.rebuild_asked = False
            pressed.insert(0, "r")
        for key in pressed:
            if key == "r" and not changes:
                # Look at every path first: a change not reported yet (polling) counts.
                for what, path in changes.look(planner, None):
                    reporter.line(what, path)
                if not changes and session.complete:
                    # As a run would: every step skipped, at the cost of a stat per path.
                    reporter.line("KEYBOARD", f"r: {NOTHING}")
                    if session.phase is not None:
                        _tell(session, rebuilds=session.phase.phase.rebuilds + 1)
                    continue
            how = _key(planner, reporter, key)
            if how is not None:
                return how
        if planner.stopping:
            session.flush()
            return None
        if auto and changes and last_change is not None and time.monotonic() - last_change >= QUIET:
            return "r"


def _key(planner: "Planner", reporter: Any, key: str) -> str | None:
    """A key pressed between runs: the run it asks for, or None."""
    if key in ("r", "f", "t"):
        if key == "r":
            reporter.line("KEYBOARD", "r: running what the changes made outdated")
        return key
    if key == "g":
        (Path(planner.root) / "graph.txt").write_text(
            graph_files.text(graph_files.of_graph(planner.graph))
        )
        reporter.line("KEYBOARD", "g: wrote the graph to graph.txt")
        return None
    reporter.line("KEYBOARD", f"unknown key {key!r}; {HELP}")
    return None


def stdin_keys() -> int | None:
    """The descriptor to read keys from: stdin when it is a terminal."""
    try:
        return sys.stdin.fileno() if sys.stdin.isatty() else None
    except (ValueError, OSError):
        return None
