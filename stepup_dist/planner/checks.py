"""The hash checks of one build: what is to be asked, what is out, what came back.

A hash check asks a worker for the states of some paths: of a static file (is it there,
has it changed) or of the outputs of a step that may be skipped. Paths are batched into
requests of `CHECK_BATCH`; the answers for a step are gathered until all its outputs are in.
No Redis here, and no decisions: `skipping.py` decides what the answers mean.
"""

from dataclasses import dataclass, field

from ..messages import CheckJob, FileState

__all__ = ("CHECK_BATCH", "Checks", "Purpose")

CHECK_BATCH = 64
"""Paths per hash-check job: enough to amortize a job, small enough to spread over workers."""

Purpose = tuple[str, str]
"""Why a path is checked: ("static", path), ("skip", step key) or ("made", step key): an
output the step amended, hashed after it succeeded."""


@dataclass
class Checks:
    """Hash checks waiting to go out, out with workers, and their answers so far."""

    todo: list[tuple[Purpose, str, FileState | None]] = field(default_factory=list)
    """(purpose, path, the state known from the last build) not sent yet."""

    asked: dict[int, list[tuple[Purpose, str]]] = field(default_factory=dict)
    """Request number -> what it asked for, in order."""

    sent: dict[int, CheckJob] = field(default_factory=dict)
    """Request number -> its job, to send again when it was lost."""

    states: dict[str, dict[str, FileState | None]] = field(default_factory=dict)
    """Step being checked for a skip -> the states of its outputs answered so far."""

    hosts: dict[str, str] = field(default_factory=dict)
    """Step being checked -> the host that answered for it."""

    expected: dict[str, int] = field(default_factory=dict)
    """Step being checked -> how many paths it waits for (its outputs, and the inputs it
    amended and declares static itself, see skipping.own_statics)."""

    last_request: int = 0
    """The number of the last request made."""

    def ask(self, purpose: Purpose, path: str, known: FileState | None) -> None:
        self.todo.append((purpose, path, known))

    def begin(self, step: str, count: int) -> None:
        """Step `step` is checked for a skip: gather the states of `count` paths."""
        self.states[step] = {}
        self.expected[step] = count

    def complete(self, step: str) -> bool:
        """Whether every path asked for `step` has been answered."""
        return len(self.states.get(step, ())) == self.expected.get(step)

    def jobs(self, build: str, root: str) -> list[CheckJob]:
        """Batch what is to be asked into new requests."""
        todo, self.todo = self.todo, []
        made = []
        for start in range(0, len(todo), CHECK_BATCH):
            chunk = todo[start : start + CHECK_BATCH]
            self.last_request += 1
            request = self.last_request
            self.asked[request] = [(purpose, path) for purpose, path, _ in chunk]
            job = self.sent[request] = CheckJob(
                build=build,
                request=request,
                root=root,
                paths=[path for _, path, _ in chunk],
                known=[known for _, _, known in chunk],
            )
            made.append(job)
        return made

    def question(self, request: int) -> list[tuple[Purpose, str]] | None:
        """What request `request` asked, if it is still out."""
        return self.asked.get(request)

    def close(self, request: int) -> None:
        """Request `request` is answered (or given up): it is out no more."""
        self.asked.pop(request, None)
        self.sent.pop(request, None)

    def job(self, request: int) -> CheckJob | None:
        return self.sent.get(request)

    def out(self) -> list[CheckJob]:
        """Every request still out."""
        return list(self.sent.values())

    def answer(self, step: str, path: str, state: FileState | None, host: str) -> int | None:
        """Note the state of one output of `step`; returns how many are known, or None
        when the step is not being checked."""
        states = self.states.get(step)
        if states is None:
            return None
        states[path] = state
        self.hosts[step] = host
        return len(states)

    def finish(self, step: str) -> tuple[dict[str, FileState | None], str]:
        """The states gathered for `step`, and the host that answered; forgets both."""
        self.expected.pop(step, None)
        return self.states.pop(step, {}), self.hosts.pop(step, "")
