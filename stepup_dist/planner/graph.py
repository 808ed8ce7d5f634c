"""The build graph: steps, the files they consume and produce, and when a step is ready.

Pure bookkeeping: no I/O, no Redis. The planner drives it.
"""

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import PlanError
from ..messages import FileState
from ..paths import parent

__all__ = ("INP_DIGEST", "FileNode", "Graph", "Step", "StepStatus")

INP_DIGEST = "STEPUP_STEP_INP_DIGEST"
"""The variable that gives a step the digest of its inputs (as StepUp 4 gives it)."""


class StepStatus(enum.Enum):
    PENDING = "pending"
    """Waiting for inputs."""
    READY = "ready"
    """All inputs available; not yet checked or dispatched."""
    CHECKING = "checking"
    """A worker is hashing its outputs to decide whether it can be skipped."""
    WAITING_POOL = "waiting_pool"
    """Must run, but its pool has no free slot."""
    QUEUED = "queued"
    """On the queue (holding its pool slots)."""
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"
    FAILED = "failed"


DONE = (StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.FAILED)


@dataclass
class Step:
    """One node of work: a shell command with declared inputs and outputs."""

    key: str
    command: str
    workdir: str
    inp: list[str]
    """Declared and amended inputs, root-relative."""
    out: list[str]
    vol: list[str]
    env: list[str]
    """Names of environment variables the step depends on."""
    pool: str | None
    creator: str | None
    """Key of the step whose API calls defined this one (None for the root plan)."""
    resources: dict[str, int] = field(default_factory=dict)
    """Units of host resources it needs while it runs (`gpu: 1`), on one host."""
    status: StepStatus = StepStatus.PENDING
    missing: set[str] = field(default_factory=set)
    """Inputs not yet available."""
    calls: list[list[Any]] = field(default_factory=list)
    """API calls of this step that defined other things: replayed when it is skipped."""
    amended: list[list[str]] = field(default_factory=lambda: [[], [], [], []])
    """[inp, out, vol, env] added by `amend()`; also included in the lists above."""
    declared: tuple = ()
    """(inp, out, vol, env) as the step was defined, set by `Graph.add_step`."""
    skip_blocked: bool = False
    """Skipping was ruled out (for instance an amended input of the last run is gone)."""
    rerun: bool = False
    """It amended inputs that were not available yet: run it again once they are."""
    attempt: int = 0
    inp_digest: str = ""
    """The digest of its inputs when it was last sent to run (`INP_DIGEST`, hex)."""
    defers: int = 0
    """Times in a row it stopped to wait for amended inputs (`build --defer-cap`)."""
    optional: bool = False
    """Runs only once a step that must run needs one of its outputs (then it is False)."""
    env_overrides: dict[str, str] = field(default_factory=dict)
    """Values of variables for its command (StepUp 4's `env_overrides`); it depends on them."""
    duration: float | None = None
    """How long the plan said it takes, in seconds (StepUp 4's `duration=` hint), if it did."""

    def definition(self) -> tuple:
        return (
            self.command,
            self.workdir,
            self.declared,
            self.pool,
            self.resources,
            sorted(self.env_overrides.items()),
        )


@dataclass
class FileNode:
    """A path some step consumes or produces, or that a plan declared static."""

    path: str
    producer: str | None = None
    """Key of the step that makes it."""
    static: bool = False
    state: FileState | None = None
    available: bool = False
    consumers: set[str] = field(default_factory=set)


class Graph:
    """Steps and files of one build."""

    def __init__(self) -> None:
        self.steps: dict[str, Step] = {}
        self.files: dict[str, FileNode] = {}
        self.woken: list[Step] = []
        """Optional steps that became needed while READY: the planner queues them."""

    def _node(self, path: str) -> FileNode:
        node = self.files.get(path)
        if node is None:
            node = self.files[path] = FileNode(path)
        return node

    def add_static(self, path: str) -> FileNode:
        node = self._node(path)
        if node.producer is not None:
            raise PlanError(f"static path {path} is already an output of step {node.producer!r}")
        node.static = True
        return node

    def add_step(self, step: Step) -> Step:
        """Insert a new step; an identical redefinition returns the existing one."""
        step.declared = (tuple(step.inp), tuple(step.out), tuple(step.vol), tuple(step.env))
        old = self.steps.get(step.key)
        if old is not None:
            if old.definition() != step.definition():
                raise PlanError(f"step {step.key!r} is defined twice with different arguments")
            return old
        # Validate everything before changing anything: the planner goes on after a PlanError.
        for path in step.inp:
            if path in step.out or path in step.vol:
                raise PlanError(f"step {step.key!r} lists {path} as both input and output")
        for path in step.out + step.vol:
            node = self.files.get(path)
            if node is not None and node.static:
                raise PlanError(f"output {path} of step {step.key!r} is declared static")
            if node is not None and node.producer is not None:
                raise PlanError(
                    f"two steps declare output {path}: {node.producer!r} and {step.key!r}"
                )
        for path in step.out + step.vol:
            self._node(path).producer = step.key
        # As in StepUp, the folder of each output is an input: a static folder, or one that
        # another step makes (the step waits for it); the root folder needs nothing.
        for path in step.out + step.vol:
            directory = parent(path)
            if directory not in (None, "./") and directory not in step.inp + step.out:
                step.inp.append(directory)
        self.steps[step.key] = step
        self.add_inputs(step, step.inp)
        if step.optional and any(
            not self.steps[c].optional
            for path in step.out + step.vol
            for c in self.files[path].consumers
            if c in self.steps
        ):
            self.need(step)
        return step

    def check_amend(
        self, step: Step, inp: Iterable[str], out: Iterable[str], vol: Iterable[str]
    ) -> None:
        """Raise PlanError for an amend() that cannot be applied, before changing anything."""
        new_out = {*out, *vol}
        for path in inp:
            node = self.files.get(path)
            if path in new_out or (node is not None and node.producer == step.key):
                raise PlanError(f"step {step.key!r} lists {path} as both input and output")
        for path in new_out:
            node = self.files.get(path)
            if node is not None and node.static:
                raise PlanError(f"output {path} of step {step.key!r} is declared static")
            if node is not None and node.producer not in (None, step.key):
                raise PlanError(
                    f"two steps declare output {path}: {node.producer!r} and {step.key!r}"
                )

    def need(self, step: Step) -> None:
        """An optional step is needed: it runs, and so do the optional steps it needs."""
        todo = [step]
        while todo:
            current = todo.pop()
            if not current.optional:
                continue
            current.optional = False
            if current.status is StepStatus.READY:
                self.woken.append(current)
            for path in current.inp:
                node = self.files.get(path)
                maker = self.steps.get(node.producer) if node and node.producer else None
                if maker is not None and maker.optional:
                    todo.append(maker)

    def add_inputs(self, step: Step, paths: Iterable[str]) -> None:
        """Make `step` consume `paths` (already listed in step.inp)."""
        for path in paths:
            node = self._node(path)
            if node.producer == step.key:
                raise PlanError(f"step {step.key!r} lists {path} as both input and output")
            node.consumers.add(step.key)
            maker = self.steps.get(node.producer) if node.producer else None
            if maker is not None and maker.optional and not step.optional:
                self.need(maker)
            if not node.available:
                step.missing.add(path)
                if step.status is StepStatus.READY:
                    step.status = StepStatus.PENDING

    def add_outputs(self, step: Step, out: Iterable[str], vol: Iterable[str]) -> None:
        """Outputs amended by a running step."""
        for path in [*out, *vol]:
            node = self._node(path)
            if node.static:
                raise PlanError(f"output {path} of step {step.key!r} is declared static")
            if node.producer not in (None, step.key):
                raise PlanError(
                    f"two steps declare output {path}: {node.producer!r} and {step.key!r}"
                )
            node.producer = step.key

    def make_available(self, path: str, state: FileState | None) -> list[Step]:
        """Record that `path` exists with `state`; return the steps that became ready."""
        node = self._node(path)
        node.state = state
        node.available = True
        ready = []
        for key in sorted(node.consumers):
            step = self.steps[key]
            step.missing.discard(path)
            if not step.missing and step.status is StepStatus.PENDING:
                step.status = StepStatus.READY
                ready.append(step)
        return ready

    def input_states(self, step: Step) -> dict[str, FileState]:
        return {p: s for p in step.inp if (s := self.files[p].state) is not None}

    def find_cycle(self, keys: Iterable[str]) -> list[str] | None:
        """A cycle among the given (stuck) steps, as a list of step keys, or None."""
        stuck = set(keys)

        def waits_for(key: str) -> list[str]:
            result = []
            for path in sorted(self.steps[key].missing):
                producer = self.files[path].producer
                if producer in stuck:
                    result.append(producer)
            return result

        color: dict[str, int] = {}
        for start in sorted(stuck):
            if start in color:
                continue
            stack = [(start, iter(waits_for(start)))]
            trail = [start]
            color[start] = 1
            while stack:
                key, it = stack[-1]
                nxt = next(it, None)
                if nxt is None:
                    color[key] = 2
                    stack.pop()
                    trail.pop()
                elif color.get(nxt) == 1:
                    return [*trail[trail.index(nxt) :], nxt]
                elif nxt not in color:
                    color[nxt] = 1
                    stack.append((nxt, iter(waits_for(nxt))))
                    trail.append(nxt)
        return None
