"""How far a build is, from the planner's graph: counts, a rough ETA, the pools in use, and
the report a planner leaves on the server for dashboards.

The ETA is rough: the seconds each remaining step ran last time (the mean of the known
durations for a step never run, plan.py's and other planning steps' left out), divided among
the workers, and at least the longest of them. On a first build there is none until a step
that is not a plan has finished. Of the steps that may yet be skipped (waiting for inputs
or a hash check, or not declared yet but in the last build), the share counted is that of
the steps decided so far that ran rather than were skipped.
"""

import getpass
import socket
import time
from collections import Counter
from collections.abc import Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

from ..status import BuildReport, Counts, PoolWatch
from .graph import StepStatus

if TYPE_CHECKING:
    from .core import PlannerCore
    from .store import Record

__all__ = ("build_report", "count", "estimate_eta")


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


_IN_FLIGHT = (StepStatus.READY, StepStatus.CHECKING, StepStatus.WAITING_POOL, StepStatus.QUEUED)
_MUST_RUN = frozenset(map(id, (StepStatus.WAITING_POOL, StepStatus.QUEUED)))
_ENDED = frozenset(map(id, (StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.FAILED)))
_STATUS = attrgetter("status")
_POOL = attrgetter("pool")


def count(planner: "PlannerCore", started: dict[str, float], workers: int, now: float) -> tuple:
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
    # A step that defines steps (plan.py) says nothing of how long the steps it defines take:
    # on a first build its second of planning made seven steps of 3 s look like 1 s.
    measured = [r.duration for r in planner.records.values() if r.duration and not _plans(r)]
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


def _plans(record: "Record") -> bool:
    """Whether the step of `record` defined steps (a plan.py)."""
    return any(method == "step" for method, _ in record.calls)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment and no passwd entry
        return "?"


def build_report(planner: "PlannerCore", started: float) -> BuildReport:
    """The planner's report of its build (main thread only): counts, ETA and hosts."""
    counts, eta, _ = count(planner, {}, max(1, len(planner.jobs.running)), time.monotonic())
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
