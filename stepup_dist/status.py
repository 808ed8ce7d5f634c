"""What is known of a build's progress, as plain values: the counts the status line shows,
what the server says of workers and pools, and the report a planner leaves for dashboards.
"""

from dataclasses import dataclass

__all__ = ("BuildReport", "Census", "Counts", "PoolWatch")


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
