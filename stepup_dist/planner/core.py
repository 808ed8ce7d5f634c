"""What the planner's helper modules (finish, plan_calls, progress, recovery, results,
skipping, watch) know of the Planner: `PlannerCore`, the state and the calls they use, and
the Broker and Reporter it talks to and the Outcome it builds.

The Planner (loop.py) imports the helpers and hands itself to them; they import only this
module, so the arrows go one way: loop -> helpers -> core. mypy checks that the Planner is a
`PlannerCore` wherever it passes itself.
"""

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import WireError
from ..messages import FileState, Message, Reply, StepDone
from ..status import BuildReport
from .checks import Checks
from .graph import Graph, Step
from .jobs import Jobs
from .pools import PoolBroker, PoolKeeper
from .priority import RunQueue
from .routing import Group, Router
from .store import Record, Store

__all__ = ("Broker", "BuildOptions", "Outcome", "PlannerCore", "Reporter", "StepCacheView")


class Broker(PoolBroker, Protocol):
    def server_id(self) -> str: ...
    def keep_alive(self, build: str, lease: float) -> None: ...
    def report(self, report: BuildReport, ttl: float) -> None: ...
    def live_runs(self, build: str, tokens: list[str]) -> set[str]: ...
    def local_queue(self, build: str) -> str: ...
    def host_queue(self, queue: str, host: str) -> str: ...
    def groups(self, local: str | None = None) -> Sequence[Group]: ...
    def submit(self, jobs: list[tuple[Message, str, bool]], queue: str) -> list[str]: ...
    def withdraw_jobs(self, queue: str, job_ids: list[str]) -> list[str]: ...
    def job_states(self, job_ids: list[str]) -> list[str | None]: ...
    def receive(self, build: str, timeout: float) -> list[Message | WireError]: ...
    def reply(self, reply_to: str, reply: Reply) -> None: ...
    def wake(self, build: str) -> None: ...
    def forget_build(self, build: str) -> None: ...


class StepCacheView(Protocol):
    """The shared step cache as the helpers use it (planner/cache.py's StepCache)."""

    def is_hit(self, key: str) -> bool: ...
    def hit_done(self, p: "PlannerCore", step: Step, result: StepDone) -> bool: ...
    def stored(self, p: "PlannerCore", step: Step, result: StepDone) -> None: ...
    def release(self, p: "PlannerCore", key: str) -> None: ...


class Reporter(Protocol):
    def line(self, status: str, text: str, host: str = "") -> None: ...
    def done(self, step: Step, result: StepDone, status: str) -> None: ...


@dataclass(frozen=True)
class BuildOptions:
    """How a build runs its plan: StepUp 4's `stepup build` flags that the planner acts on."""

    keep_going: bool = True
    """A failed step drains the build when False (StepUp 4's default, `-k` keeps going)."""
    targets: tuple[str, ...] = ()
    """Outputs to build (normalized paths): with targets or `target_dirs`, a step runs only
    when it makes one, when a step that runs needs it, or when it runs a plan."""
    target_dirs: tuple[str, ...] = ()
    """Folders (ending with a slash) whose steps are all targets."""
    step_env: tuple[tuple[str, str], ...] = ()
    """Variables every step gets unless it declares them (`SOURCE_DATE_EPOCH`)."""
    durations: bool = True
    """Hints and recorded durations order the work (`--no-duration`: every step alike)."""
    clean: bool = True
    """A successful build removes the outputs of steps the plan no longer defines."""
    explain: bool = False
    """Say why each step with a record runs again (`-e/--explain-rerun`)."""
    defer_cap: int | None = None
    """Times a step may stop to wait for amended inputs before it fails (None: no cap)."""

    @property
    def restricted(self) -> bool:
        """Whether targets restrict what runs."""
        return bool(self.targets or self.target_dirs)


@dataclass
class Outcome:
    succeeded: int = 0
    skipped: int = 0
    cached: int = 0
    """Steps whose outputs the shared step cache left instead of a run (not in `succeeded`)."""
    failed: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    """One line per step that could not run: what it waits for."""
    plan_errors: list[str] = field(default_factory=list)
    interrupted: bool = False
    """Stopped by Ctrl-C after the running steps finished."""
    cancelled: bool = False
    """Stopped by a second Ctrl-C: the running steps were cancelled, their leases given up."""
    not_run: int = 0
    """Steps of an interrupted build that did not run to the end (cancelled ones included)."""
    signalled: bool = False
    """Ctrl-C or SIGTERM came (StepUp 4's INTERRUPTED bit); `interrupted` is set too."""
    failure_drain: bool = False
    """A step failed without `keep_going`: the build was drained (`interrupted` is set
    too), but nobody asked it to stop: a watching build keeps watching."""
    causes: list[str] = field(default_factory=list)
    """The pending steps by root cause: `3 steps wait for a.txt, which ...`."""
    warnings: list[str] = field(default_factory=list)
    """What the build warned about at its end (a target no step makes)."""
    asked: bool = False
    """The interruption was asked for (`q` or `stepup-dist shutdown` in watch mode), not a
    Ctrl-C: the exit code is that of the steps that ran, not `INTERRUPTED`."""


class PlannerCore(Protocol):
    """The Planner as its helper modules see it (loop.Planner is one)."""

    broker: Broker
    reporter: Reporter
    root: Path
    build: str
    options: BuildOptions
    lease: float
    reconnect: float
    environ: dict[str, str]
    store: Store
    server: str
    graph: Graph
    records: dict[str, Record]
    old_records: dict[str, Record]
    old_files: dict[str, FileState]
    outcome: Outcome
    jobs: Jobs
    checks: Checks
    slots: PoolKeeper
    pools: dict[str, int]
    router: Router
    ready: deque[Step]
    runs: RunQueue
    trees: dict[str, bool]
    last_save: float

    @property
    def cache(self) -> StepCacheView | None:
        """The shared step cache; None when it is off."""

    def has_pool(self, name: str) -> bool: ...
    def declare_static(self, path: str, stat: Any) -> None: ...
    def defer(self, patterns: list[str]) -> None: ...
    def undefer(self, paths: list[str], lazy: bool = False) -> bool: ...
    def declare_step(self, step: Step) -> None: ...
    def amend(
        self, key: str, inp: list[str], out: list[str], vol: list[str], env: list[str]
    ) -> bool: ...
    def queue_run(self, step: Step) -> None: ...
    def hold(self, entries: list[tuple[tuple[Message, str, bool], str | None]]) -> None: ...
    def forget_unsent(self) -> None: ...
    def env_values(self, step: Step) -> dict[str, str | None]: ...
    def handle(self, message: Message | WireError) -> None: ...
    def fail(self, step: Step) -> None: ...
    def plan_error(self, message: str) -> None: ...
    def became_available(self, path: str, state: FileState | None) -> None: ...
